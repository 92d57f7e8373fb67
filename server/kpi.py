"""The promises, measured: how fast alarms are accepted and whether help arrives inside the
service circle. Pure: rows in, figures out.

Answer-time targets for social alarms (as in EN 50134-7 / the UK TEC code): 97.5 % answered
within 60 s and 99 % within 180 s. Here "answered" is a qualified person accepting the alarm
(by link, reply code or the console), counted from the moment the server received it. The
denominator is every alarm that needed an answer: alarms the elder cancelled before anyone
accepted, and test alarms, are left out; an alarm never accepted counts as a miss.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from server.escalation import SERVICE_CIRCLE_S


@dataclass(frozen=True)
class AlarmTimes:
    team_id: str
    received_ms: int
    first_notified_ms: int | None
    accepted_ms: int | None
    arrived_ms: int | None
    cancelled_before_accept: bool = False


@dataclass(frozen=True)
class TeamKpi:
    team_id: str
    alarms: int
    accepted_60s: float | None
    accepted_180s: float | None
    arrived_in_circle: float | None
    first_notification_p50_s: float | None
    accept_p50_s: float | None


def team_kpis(rows: Iterable[AlarmTimes], circle_s: float = SERVICE_CIRCLE_S) -> list[TeamKpi]:
    by_team: dict[str, list[AlarmTimes]] = {}
    for r in rows:
        if not r.cancelled_before_accept:
            by_team.setdefault(r.team_id, []).append(r)
    return [_kpi(team, alarms, circle_s) for team, alarms in sorted(by_team.items())]


def _kpi(team_id: str, alarms: list[AlarmTimes], circle_s: float) -> TeamKpi:
    n = len(alarms)
    accept_s = [(a.accepted_ms - a.received_ms) / 1000 for a in alarms if a.accepted_ms]
    accepted = [a for a in alarms if a.accepted_ms is not None]
    arrived_in = [
        a
        for a in accepted
        if a.arrived_ms is not None and (a.arrived_ms - (a.accepted_ms or 0)) / 1000 <= circle_s
    ]
    first_s = [(a.first_notified_ms - a.received_ms) / 1000 for a in alarms if a.first_notified_ms]
    return TeamKpi(
        team_id,
        n,
        _share(sum(1 for s in accept_s if s <= 60), n),
        _share(sum(1 for s in accept_s if s <= 180), n),
        _share(len(arrived_in), len(accepted)),
        _median(first_s),
        _median(accept_s),
    )


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
