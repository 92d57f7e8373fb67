"""The server said it is busy: ``503`` with ``Retry-After`` to maintenance traffic.

A server under overload refuses heartbeats, fault reports and config reads before doing
any work for them, so that alarms never queue behind them (`server.admission`). The hub
honours that for its maintenance traffic only: the next heartbeat, fault upload and config
read wait at least that long; alarms and alarm reports are never held by it.
"""

from __future__ import annotations

from carehub.clock import Clock
from gateway.store import KEPT_KINDS, OutboxKind

MAX_RETRY_AFTER_S = 300.0
"""A longer ``Retry-After`` is cut to this: no answer silences a hub's heartbeats for long."""


class ServerBusy:
    """Until when (hub monotonic clock) maintenance traffic waits."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._until = 0.0

    def told(self, retry_after_s: float) -> None:
        """The server answered ``503`` with ``Retry-After: retry_after_s`` (seconds)."""
        wait = min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        self._until = max(self._until, self.clock.monotonic() + wait)

    def wait_s(self) -> float:
        """Seconds maintenance traffic still waits (0: none)."""
        return max(0.0, self._until - self.clock.monotonic())

    def holds(self, kind: OutboxKind) -> bool:
        """Whether an outbox entry of `kind` waits now: never an alarm or alarm report."""
        return kind not in KEPT_KINDS and self.wait_s() > 0

    def next_heartbeat_s(self, interval_s: float) -> float:
        """Seconds to the next heartbeat: its interval, or longer if the server asked."""
        return max(interval_s, self.wait_s())
