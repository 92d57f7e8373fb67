"""When a console sign-in may be tried: per-source throttling plus a per-account delay.

A hard per-account lock (the old rule: five failures from anywhere lock the account
everywhere) lets an outsider who knows a dispatcher's username keep them out while on duty.
So an account's failures only ever *delay* further tries, growing from 1 s to a short cap,
and not at all from an address the account has signed in from before (its own control room):
there only that address's own failures count. What stops a guesser is the per-source limit
(a few failures per address per window) together with the delay, which bounds the tries an
account can be given from new addresses.

Pure: the store reads the history and applies the verdict in one serialised step
(`ConsoleStore.claim_sign_in`), so concurrent tries cannot all pass one check.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Refusal(enum.StrEnum):
    SOURCE = "source"
    """This address used up its failures in the window."""
    ACCOUNT = "account"
    """This account failed lately from elsewhere: wait the delay before trying again."""


@dataclass(frozen=True)
class SignInLimits:
    per_source: int
    """Failures from one address within `window_ms` before that address is refused."""
    window_ms: int
    """How long a failure counts (ms)."""
    account_free: int
    """An account's failures within the window before it is delayed."""
    account_delay_max_ms: int
    """The account's delay doubles from 1 s with each further failure, up to this (ms)."""

    def account_delay_ms(self, failures: int) -> int:
        """The wait (ms) after an account's latest failure, given its failures in the window."""
        if failures < self.account_free:
            return 0
        doublings = min(failures - self.account_free, 40)  # 2**40 s is past any cap
        return min(1000 * 2**doublings, self.account_delay_max_ms)


@dataclass(frozen=True)
class History:
    """What the store read, within the window (times in epoch ms, oldest first)."""

    source_failures: Sequence[int]
    """This address's failures, for any account."""
    account_failures: Sequence[int]
    """This account's failures, from any address."""
    known_source: bool
    """This address signed in to this account before (the account's delay does not apply)."""


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    retry_after_s: int
    """Whole seconds, at least 1."""


def _seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))


class SignInThrottle:
    """The verdict on one sign-in try: None (try it: counted as a failure unless it
    succeeds) or `Refused` with the reason and when to come back."""

    def __init__(self, limits: SignInLimits) -> None:
        self.limits = limits

    def verdict(self, history: History, now_ms: int) -> Refused | None:
        limits = self.limits
        recent = [t for t in history.source_failures if t > now_ms - limits.window_ms]
        if len(recent) >= limits.per_source:
            frees_at = recent[len(recent) - limits.per_source] + limits.window_ms
            return Refused(Refusal.SOURCE, _seconds(frees_at - now_ms))
        if history.known_source:
            return None
        failures = [t for t in history.account_failures if t > now_ms - limits.window_ms]
        delay_ms = limits.account_delay_ms(len(failures))
        # no delay, no wait: a try made at once may carry a later time than ours
        if delay_ms and now_ms < failures[-1] + delay_ms:
            return Refused(Refusal.ACCOUNT, _seconds(failures[-1] + delay_ms - now_ms))
        return None
