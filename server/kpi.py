"""The promises, measured: how fast alarms are accepted and whether help arrives inside the
service circle. Pure: rows in, figures out (`server.kpi_store` reads the rows).

Answer-time targets for social alarms (as in EN 50134-7 / the UK TEC code): 97.5 % answered
within 60 s and 99 % within 180 s. Here "answered" is a qualified person accepting the alarm
(by link, reply code or the console), counted from the moment the server received it. The
denominator is every alarm that needed an answer: alarms the elder cancelled before anyone
accepted, and test alarms, are left out; an alarm never accepted counts as a miss.

The operator's answer is measured the same way, as the telecare standard measures calls
answered by the alarm-receiving centre: time from receipt to the first time an operator
answered or handled the alarm (`alarms.operator_at_ms`: a triage outcome, an
acknowledgement, an answered voice call), against the same 60 s / 180 s targets, over the
same alarms; here an alarm counts unless the elder cancelled it before any operator
answered. Alarms closed by the operator without a visit (accidental press, talked and no
help needed, or resolved as a false alarm or by phone, nobody arriving) and alarms for which
the operator called an ambulance are counted.

Calls per alarm: voice calls (either direction; installers' test calls left out) over the
same alarms an operator should answer, and the share of those alarms with at least one
answered call (the operator and the home talked).

Arrival is promised inside the service circle: the helper at the door at most
`SERVICE_CIRCLE_S` (20 min) after accepting. Its share is over accepted alarms; an accepted
alarm with no recorded arrival counts as a miss.

Welfare checks (`server.welfare`: a missed daily check-in, inactivity) are not emergencies:
nobody accepts them, so they are left out of every figure above and have their own: the time
to close a welfare check, from receipt to the dispatcher resolving it (median and 90th
percentile over those closed), and how many are still open. A check the hub cancelled (the
elder checked in late) is left out, as an alarm cancelled before acceptance is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from server.escalation import SERVICE_CIRCLE_S

ACCEPT_TARGETS = ((60, 0.975), (180, 0.99))
"""(seconds, share): the answer-time promises."""
ARRIVAL_TARGET = 0.95
"""The share of accepted alarms whose helper should arrive inside the service circle: the
centre's own aim (no standard sets one), drawn as the console's target line."""
ALL_TEAMS = "all"


@dataclass(frozen=True)
class AlarmTimes:
    """One alarm's milestones, epoch ms; ``None`` when that milestone never happened."""

    team_id: str
    received_ms: int
    first_notified_ms: int | None
    accepted_ms: int | None
    arrived_ms: int | None
    cancelled_before_accept: bool = False
    operator_ms: int | None = None
    """When an operator first answered or handled the alarm."""
    closed_by_operator: bool = False
    """Closed by the operator, nobody arriving (`server.kpi_store` decides)."""
    ambulance_called: bool = False
    calls: int = 0
    """Voice calls of the alarm, either direction."""
    call_answered: bool = False
    """At least one of them was answered."""
    welfare: bool = False
    """A welfare check (`server.welfare`): its own figures, none of the emergency ones."""
    closed_ms: int | None = None
    """When it was resolved (the welfare check's close)."""


@dataclass(frozen=True)
class TeamKpi:
    """One team's (or ``all`` teams') figures; shares are 0…1, times seconds after receipt."""

    team_id: str
    alarms: int
    accepted_60s: float | None
    accepted_180s: float | None
    arrived_in_circle: float | None
    first_notification_p50_s: float | None
    accept_p50_s: float | None
    arrival_p50_s: float | None = None
    first_notification_p90_s: float | None = None
    accept_p90_s: float | None = None
    arrival_p90_s: float | None = None
    accepted: int = 0
    arrived: int = 0
    cancelled_before_accept: int = 0
    operator_alarms: int = 0
    """The alarms an operator should have answered (all but those cancelled before)."""
    operator_answered: int = 0
    operator_60s: float | None = None
    operator_180s: float | None = None
    operator_p50_s: float | None = None
    operator_p90_s: float | None = None
    closed_by_operator: int = 0
    ambulance_called: int = 0
    voice_calls: int = 0
    """Over `operator_alarms`, as the two figures below."""
    calls_per_alarm: float | None = None
    answered_call_alarms: int = 0
    answered_call_share: float | None = None
    welfare_checks: int = 0
    """Welfare checks received, those the hub cancelled left out."""
    welfare_closed: int = 0
    welfare_close_p50_s: float | None = None
    welfare_close_p90_s: float | None = None


@dataclass(frozen=True)
class DayKpi:
    day: str  # ISO date in the report's time zone
    overall: TeamKpi
    teams: list[TeamKpi]


@dataclass(frozen=True)
class KpiReport:
    since_ms: int
    until_ms: int
    time_zone: str
    overall: TeamKpi
    teams: list[TeamKpi]
    days: list[DayKpi]

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["targets"] = {
            "accepted_within_s": {str(s): share for s, share in ACCEPT_TARGETS},
            "service_circle_s": SERVICE_CIRCLE_S,
        }
        return doc


def team_kpis(rows: Iterable[AlarmTimes], circle_s: float = SERVICE_CIRCLE_S) -> list[TeamKpi]:
    """Per team, sorted by team id."""
    by_team: dict[str, list[AlarmTimes]] = {}
    for r in rows:
        by_team.setdefault(r.team_id, []).append(r)
    return [_kpi(team, alarms, circle_s) for team, alarms in sorted(by_team.items())]


def kpi_report(
    rows: Iterable[AlarmTimes],
    since_ms: int,
    until_ms: int,
    time_zone: str = "UTC",
    circle_s: float = SERVICE_CIRCLE_S,
) -> KpiReport:
    """Overall, per team and per day (the day the server received the alarm, in
    `time_zone`) for the alarms received in [since_ms, until_ms)."""
    zone = ZoneInfo(time_zone)
    kept = [r for r in rows if since_ms <= r.received_ms < until_ms]
    by_day: dict[str, list[AlarmTimes]] = {}
    for r in kept:
        by_day.setdefault(_day(r.received_ms, zone), []).append(r)
    days = [
        DayKpi(day, _kpi(ALL_TEAMS, alarms, circle_s), team_kpis(alarms, circle_s))
        for day, alarms in sorted(by_day.items())
    ]
    return KpiReport(
        since_ms,
        until_ms,
        time_zone,
        _kpi(ALL_TEAMS, kept, circle_s),
        team_kpis(kept, circle_s),
        days,
    )


def days_start_ms(now_ms: int, days: int, time_zone: str) -> int:
    """The start (epoch ms) of the window "the last `days` days": local midnight of the day
    `days - 1` days before today in `time_zone`, so today is the last of exactly `days`
    calendar days (not `days + 1` partial ones)."""
    zone = ZoneInfo(time_zone)
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    return int(datetime(first.year, first.month, first.day, tzinfo=zone).timestamp() * 1000)


def _day(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).date().isoformat()


def _kpi(team_id: str, every: list[AlarmTimes], circle_s: float) -> TeamKpi:
    checks = [a for a in every if a.welfare and not a.cancelled_before_accept]
    close_s = [_since(a.received_ms, a.closed_ms) for a in checks if a.closed_ms is not None]
    rows = [a for a in every if not a.welfare]
    alarms = [a for a in rows if not a.cancelled_before_accept]
    n = len(alarms)
    accepted = [a for a in alarms if a.accepted_ms is not None]
    accept_s = [_since(a.received_ms, a.accepted_ms) for a in accepted]
    arrived = [a for a in accepted if a.arrived_ms is not None]
    in_circle = [a for a in arrived if _since(a.accepted_ms, a.arrived_ms) <= circle_s]
    first_s = [
        _since(a.received_ms, a.first_notified_ms)
        for a in alarms
        if a.first_notified_ms is not None
    ]
    arrival_s = [_since(a.received_ms, a.arrived_ms) for a in arrived]
    # the operator's answer: every alarm but those the elder cancelled before any operator
    calls = [a for a in rows if not (a.cancelled_before_accept and a.operator_ms is None)]
    operator_s = [_since(a.received_ms, a.operator_ms) for a in calls if a.operator_ms is not None]
    n_calls, talked = sum(a.calls for a in calls), sum(1 for a in calls if a.call_answered)
    return TeamKpi(
        team_id,
        n,
        _share(sum(1 for s in accept_s if s <= 60), n),
        _share(sum(1 for s in accept_s if s <= 180), n),
        _share(len(in_circle), len(accepted)),
        _quantile(first_s, 0.5),
        _quantile(accept_s, 0.5),
        _quantile(arrival_s, 0.5),
        _quantile(first_s, 0.9),
        _quantile(accept_s, 0.9),
        _quantile(arrival_s, 0.9),
        len(accepted),
        len(arrived),
        len(rows) - n,
        len(calls),
        len(operator_s),
        _share(sum(1 for s in operator_s if s <= 60), len(calls)),
        _share(sum(1 for s in operator_s if s <= 180), len(calls)),
        _quantile(operator_s, 0.5),
        _quantile(operator_s, 0.9),
        sum(1 for a in rows if a.closed_by_operator),
        sum(1 for a in rows if a.ambulance_called),
        voice_calls=n_calls,
        calls_per_alarm=_share(n_calls, len(calls)),
        answered_call_alarms=talked,
        answered_call_share=_share(talked, len(calls)),
        welfare_checks=len(checks),
        welfare_closed=len(close_s),
        welfare_close_p50_s=_quantile(close_s, 0.5),
        welfare_close_p90_s=_quantile(close_s, 0.9),
    )


def _since(start_ms: int | None, end_ms: int | None) -> float:
    assert start_ms is not None and end_ms is not None
    return (end_ms - start_ms) / 1000


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _quantile(xs: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (the median of an even count is the mean
    of the middle two)."""
    if not xs:
        return None
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def render_table(report: KpiReport) -> str:
    """The human report: one line per team and overall, then one line per day (overall)."""
    since = datetime.fromtimestamp(report.since_ms / 1000, UTC).astimezone(
        ZoneInfo(report.time_zone)
    )
    until = datetime.fromtimestamp(report.until_ms / 1000, UTC).astimezone(
        ZoneInfo(report.time_zone)
    )
    head = (
        f"{'team':<16} {'alarms':>6} {'≤60s':>7} {'≤180s':>7} {'circle':>7} "
        f"{'notify p50':>10} {'accept p50/p90':>15} {'arrive p50':>10}"
    )
    out = [
        f"alarms received {since:%Y-%m-%d %H:%M} – {until:%Y-%m-%d %H:%M} ({report.time_zone});"
        f" targets: ≤60 s 97.5 %, ≤180 s 99 %, arrival within {SERVICE_CIRCLE_S // 60} min"
        " of acceptance",
        "",
        head,
    ]
    out += [_line(k.team_id, k) for k in [*report.teams, report.overall]]
    if report.days:
        out += ["", head.replace("team", "day ", 1)]
        out += [_line(d.day, d.overall) for d in report.days]
    out += [
        "",
        "welfare checks (the duty dispatcher, no ladder), time to close:",
        f"{'team':<16} {'checks':>6} {'closed':>6} {'open':>5} {'close p50/p90':>15}",
    ]
    out += [_welfare_line(k.team_id, k) for k in [*report.teams, report.overall]]
    out += ["", "voice calls (either direction) on the alarms an operator should answer:"]
    out += [f"{'team':<16} {'alarms':>6} {'calls':>6} {'per alarm':>9} {'answered call':>13}"]
    out += [_calls_line(k.team_id, k) for k in [*report.teams, report.overall]]
    out += [_calls_line(d.day, d.overall) for d in report.days]
    out += [
        "",
        "answered by an operator (a triage outcome, an acknowledgement or an answered call):",
        f"{'team':<16} {'alarms':>6} {'≤60s':>7} {'≤180s':>7} {'answer p50/p90':>15} "
        f"{'closed, no visit':>16} {'ambulance':>9}",
    ]
    out += [_operator_line(k.team_id, k) for k in [*report.teams, report.overall]]
    return "\n".join(out)


def _welfare_line(label: str, k: TeamKpi) -> str:
    close = f"{_s(k.welfare_close_p50_s)}/{_s(k.welfare_close_p90_s)}"
    still_open = k.welfare_checks - k.welfare_closed
    return f"{label:<16} {k.welfare_checks:>6} {k.welfare_closed:>6} {still_open:>5} {close:>15}"


def _calls_line(label: str, k: TeamKpi) -> str:
    per = "–" if k.calls_per_alarm is None else f"{k.calls_per_alarm:.2f}"
    return (
        f"{label:<16} {k.operator_alarms:>6} {k.voice_calls:>6} {per:>9} "
        f"{_pct(k.answered_call_share):>13}"
    )


def _operator_line(label: str, k: TeamKpi) -> str:
    answer = f"{_s(k.operator_p50_s)}/{_s(k.operator_p90_s)}"
    return (
        f"{label:<16} {k.operator_alarms:>6} {_pct(k.operator_60s):>7} {_pct(k.operator_180s):>7} "
        f"{answer:>15} {k.closed_by_operator:>16} {k.ambulance_called:>9}"
    )


def _line(label: str, k: TeamKpi) -> str:
    accept = f"{_s(k.accept_p50_s)}/{_s(k.accept_p90_s)}"
    return (
        f"{label:<16} {k.alarms:>6} {_pct(k.accepted_60s):>7} {_pct(k.accepted_180s):>7} "
        f"{_pct(k.arrived_in_circle):>7} {_s(k.first_notification_p50_s):>10} {accept:>15} "
        f"{_s(k.arrival_p50_s):>10}"
    )


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f}%"


def _s(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.0f}s"
