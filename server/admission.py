"""Alarms first: which lane a request travels in, and whether the server admits it now.

One server process is CPU-bound long before its database is: in a storm (a district's
power returns) every hub flushes its fault reports and a heartbeat at once, and an alarm
queued behind them waited a minute (`docs/benchmarks.md`). So requests are sorted into
lanes before any work is done for them:

- ``alarm``: alarm uploads, alarm reports, the hubs' alarm-update long-polls, the
  provider's delivery callbacks, the console's alarm pages, accept links: never refused;
- ``maintenance``: heartbeats, fault reports, daily summaries, hub config and the
  console's other reads: refused with ``503`` and ``Retry-After`` while the server is
  overloaded, before any token lookup or SQL, so hubs come back later instead of
  queueing in front of alarms;
- ``other``: everything else (health checks, enrollment, the console's alarm board and
  login, admin API): admitted, not counted.

Overloaded means measurably so: more maintenance requests in flight than a bound, or an
event-loop lag above a limit on several ticks in a row, seen within the last `hold_s`
(the loop is the process's one CPU; lag is how far behind it runs). `Admission` is the
decision, with an injected clock; `server.alarms_first` is the ASGI shell that asks it
and measures the lag.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from carehub import api_contract as api
from carehub.clock import Clock


class Lane(StrEnum):
    ALARM = "alarm"
    MAINTENANCE = "maintenance"
    OTHER = "other"


class Overload(StrEnum):
    """Why maintenance is refused now."""

    IN_FLIGHT = "maintenance_in_flight"
    LOOP_LAG = "loop_lag"


CONSOLE = "/console"
_ALARM_PATHS = frozenset({api.ALARMS_PATH, api.ALARM_REPORTS_PATH, api.ALARM_UPDATES_PATH})
_ALARM_PREFIXES = ("/twilio/", "/r/", f"{CONSOLE}/alarms/")
"""Delivery callbacks and inbound SMS, responders' accept links, the console's alarm pages."""
_MAINTENANCE_POSTS = frozenset({api.HUB_HEARTBEAT_PATH, api.FAULTS_PATH, api.SUMMARIES_PATH})
_MAINTENANCE_GETS = frozenset({api.HUB_CONFIG_PATH})
_CONSOLE_MAINTENANCE_READS = tuple(
    f"{CONSOLE}/{page}" for page in ("health", "elders/", "audit", "accounts", "households", "kpi")
)
"""The console's reads that are not the alarm board (which, its event stream, login and
the alarm sound stay admitted: they are how the dispatcher sees an alarm)."""


def lane_of(method: str, path: str) -> Lane:
    """The lane of a request, from its method and path alone (nothing is read or looked up)."""
    if path in _ALARM_PATHS or path.startswith(_ALARM_PREFIXES):
        return Lane.ALARM
    if method == "POST" and path in _MAINTENANCE_POSTS:
        return Lane.MAINTENANCE
    if method == "GET" and path in _MAINTENANCE_GETS:
        return Lane.MAINTENANCE
    if method == "GET" and path.startswith(_CONSOLE_MAINTENANCE_READS):
        # an event stream is opened once and lives long: not counted as in flight
        return Lane.OTHER if path.endswith("/events") else Lane.MAINTENANCE
    return Lane.OTHER


@dataclass(frozen=True)
class AdmissionLimits:
    """When maintenance is refused, and for how long a refused hub stays away."""

    enabled: bool = True
    max_maintenance_in_flight: int = 16
    """Per server process: maintenance requests being answered at once."""
    loop_lag_s: float = 0.15
    """Event-loop lag (s) above which the process counts as overloaded..."""
    lag_ticks: int = 3
    """...on this many ticks of the lag monitor in a row: one stall (a collection, a busy
    neighbour on the machine) is not an overload; a backlog keeps the loop late."""
    hold_s: float = 5.0
    """Overloaded this long (s) after the last lag above `loop_lag_s`."""
    retry_after_s: int = 20
    """A refusal's ``Retry-After`` is drawn from [this, twice this] (s): refused hubs come
    back spread out, not in step."""


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    retry_after_s: int = 0
    reason: Overload | None = None


ADMITTED = Verdict(True)


class Admission:
    """Counts maintenance in flight, remembers recent loop lag, and admits or refuses."""

    def __init__(
        self, limits: AdmissionLimits, clock: Clock, rng: random.Random | None = None
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.rng = rng or random.Random()
        self.in_flight = 0
        self.refused = 0
        self._late_ticks = 0
        self._lagging_until = -math.inf
        self._last_refused = -math.inf

    def note_lag(self, lag_s: float) -> None:
        """The loop ran `lag_s` late on one tick of the lag monitor."""
        if lag_s <= self.limits.loop_lag_s:
            self._late_ticks = 0
            return
        self._late_ticks += 1
        if self._late_ticks >= self.limits.lag_ticks:
            self._lagging_until = self.clock.monotonic() + self.limits.hold_s

    def overload(self) -> Overload | None:
        if self.in_flight >= self.limits.max_maintenance_in_flight:
            return Overload.IN_FLIGHT
        if self.clock.monotonic() < self._lagging_until:
            return Overload.LOOP_LAG
        return None

    def admit(self, lane: Lane) -> Verdict:
        """Alarms and other lanes always; maintenance unless overloaded. An admitted
        maintenance request must be followed by `done`."""
        if lane is not Lane.MAINTENANCE:
            return ADMITTED
        reason = self.overload() if self.limits.enabled else None
        if reason is None:
            self.in_flight += 1
            return ADMITTED
        self.refused += 1
        self._last_refused = self.clock.monotonic()
        base = self.limits.retry_after_s
        return Verdict(False, base + self.rng.randint(0, base), reason)

    def done(self) -> None:
        """An admitted maintenance request was answered (or failed)."""
        self.in_flight -= 1

    def refused_within(self, seconds: float) -> bool:
        """Whether maintenance was refused in the last `seconds`: a hub whose heartbeat we
        turned away is not offline."""
        return self.clock.monotonic() - self._last_refused < seconds
