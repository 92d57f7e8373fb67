"""Enrollment codes and the enrollment rate limit: plain decisions, no I/O.

An installer reads a code aloud or types it on the hub, so it is short, upper-case and
grouped (``K7QF-M2XR-9PTA``), from an alphabet without look-alikes (no 0/O, 1/I/L). Twelve
characters of 31 give 59 bits: with the rate limit (a few attempts per client and a few
hundred per window for everyone) guessing one live code in its 30 minutes is hopeless, so a
fast hash (SHA-256) is enough to store it.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS, GROUP_CHARS = 3, 4


def new_code() -> str:
    """A fresh code, e.g. ``K7QF-M2XR-9PTA`` (shown once; only its hash is stored)."""
    chars = [secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_CHARS)]
    return "-".join("".join(chars[i : i + GROUP_CHARS]) for i in range(0, len(chars), GROUP_CHARS))


def normalise(code: str) -> str:
    """What is hashed: case and dashes do not matter (``k7qf m2xr…`` typed by hand works)."""
    return code.replace("-", "").replace(" ", "").upper()


def code_hash(code: str) -> str:
    return hashlib.sha256(b"carehub-enroll\0" + normalise(code).encode()).hexdigest()


class CodeRefusal(enum.StrEnum):
    """Why a code did not enroll a hub (each answered with its own status and message)."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


def why_refused(used_at_ms: int | None, expires_at_ms: int | None, now_ms: int) -> CodeRefusal:
    """After the atomic redemption found nothing: the code's stored row says why
    (`expires_at_ms` None: no such code)."""
    if expires_at_ms is None:
        return CodeRefusal.UNKNOWN
    if used_at_ms is not None:
        return CodeRefusal.USED
    assert expires_at_ms <= now_ms, "a live unused code is redeemed, not refused"
    return CodeRefusal.EXPIRED


@dataclass(frozen=True)
class EnrollLimits:
    """At most `per_client` attempts from one address and `total` from everyone within
    `window_ms` (successful ones count too: a hub enrolls once)."""

    per_client: int
    total: int
    window_ms: int


def retry_after_s(
    by_client: list[int], everyone: list[int], limits: EnrollLimits, now_ms: int
) -> int | None:
    """None when another attempt may be made now; else the seconds until it may.

    `by_client` and `everyone` are the times (epoch ms) of the attempts within the window,
    oldest first: a limit frees up when its oldest counted attempt leaves the window."""
    waits = []
    for times, limit in ((by_client, limits.per_client), (everyone, limits.total)):
        if len(times) >= limit:
            frees_at = times[len(times) - limit] + limits.window_ms
            waits.append(frees_at - now_ms)
    if not waits:
        return None
    return max(1, -(-max(waits) // 1000))  # whole seconds, rounded up, at least 1
