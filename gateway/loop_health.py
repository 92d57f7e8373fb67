"""Whether the hub's supervised loops are healthy, and when to tell systemd so: the decisions
behind the watchdog. Pure; the clock is passed in.

A loop (see `gateway.hub`) is unhealthy when
- it failed ``max_failures`` times in a row without then running ``calm_s`` (``keep_running``
  restarts it forever, but a fresh process may fare better, and systemd logs the restart);
- it promised to check in again within some seconds (the next pass of a periodic loop, the
  end of one message's handling) and has not: it is stuck (a hung disk, a lock never freed);
- it ended (``keep_running`` ends only when cancelled).
A loop that waits on the outside world (the broker, the server) has promised nothing and is
healthy: restarting the hub would not bring the server back. A blocked event loop needs no
rule: the pings come from a task on that loop, so they stop by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from carehub.clock import Clock

STUCK_AFTER_S = 60.0
"""Longest honest pass of a loop or handling of one message (pruning a month of records on
an SD card takes seconds); beyond it, on top of the loop's own period, the loop is stuck."""


@dataclass
class _Loop:
    started_at: float | None = None
    failures: int = 0
    """In a row: cleared once the loop has run `calm_s` since its last start."""
    due_by: float | None = None
    ended: bool = False
    trouble: str | None = None
    """A problem the loop reports itself (its store keeps failing), until it clears it."""


class LoopHealth:
    """Fed by `gateway.loop_guard.keep_running` (started, failed, ended) and by the loops
    themselves (promise, idle); read by the watchdog."""

    def __init__(self, clock: Clock, max_failures: int = 5, calm_s: float = 60.0) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.calm_s = calm_s
        self._loops: dict[str, _Loop] = {}

    def _loop(self, name: str) -> _Loop:
        return self._loops.setdefault(name, _Loop())

    def expect(self, *names: str) -> None:
        """The loops that must all run before the hub is ready."""
        for name in names:
            self._loop(name)

    def started(self, name: str) -> None:
        loop = self._loop(name)
        loop.started_at, loop.due_by, loop.ended = self.clock.monotonic(), None, False

    def failed(self, name: str) -> None:
        loop, now = self._loop(name), self.clock.monotonic()
        if loop.started_at is not None and now - loop.started_at >= self.calm_s:
            loop.failures = 0
        loop.failures += 1
        loop.started_at, loop.due_by = None, None  # waiting for its restart

    def ended(self, name: str) -> None:
        self._loop(name).ended = True

    def promise(self, name: str, within_s: float) -> None:
        """The loop will check in again (promise or idle) within `within_s` seconds."""
        self._loop(name).due_by = self.clock.monotonic() + within_s

    def trouble(self, name: str, what: str | None) -> None:
        """The loop runs but cannot do its work (`what`), or can again (None): a fresh
        process may fare better, and systemd logs the restart."""
        self._loop(name).trouble = what

    def idle(self, name: str) -> None:
        """The loop waits on the outside world, for as long as it takes."""
        self._loop(name).due_by = None

    def all_started(self) -> bool:
        return bool(self._loops) and all(
            loop.started_at is not None for loop in self._loops.values()
        )

    def problems(self) -> list[str]:
        """What is wrong, one short phrase per loop; empty when healthy."""
        now = self.clock.monotonic()
        found = []
        for name, loop in self._loops.items():
            calm = loop.started_at is not None and now - loop.started_at >= self.calm_s
            if loop.ended:
                found.append(f"loop {name} ended")
            elif loop.trouble is not None:
                found.append(f"loop {name}: {loop.trouble}")
            elif loop.failures >= self.max_failures and not calm:
                found.append(f"loop {name} failed {loop.failures} times in a row")
            elif loop.due_by is not None and now > loop.due_by:
                found.append(f"loop {name} stuck for {now - loop.due_by:.0f} s past its due time")
        return found


class PingSchedule:
    """When to send ``WATCHDOG=1``: every half of ``WatchdogSec=``, and only while healthy,
    so a hub whose loops are dead or stuck misses its pings and systemd restarts it."""

    def __init__(self, watchdog_s: float) -> None:
        assert watchdog_s > 0
        self.every_s = watchdog_s / 2
        self._last: float | None = None

    def due(self, now: float, healthy: bool) -> bool:
        """True when a ping is to be sent now (and it is then counted as sent)."""
        if not healthy:
            return False
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True

    def next_check_s(self) -> float:
        """How long the shell may sleep between decisions (well within a ping period)."""
        return min(1.0, self.every_s / 4)
