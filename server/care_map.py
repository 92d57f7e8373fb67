"""The care organisation as the escalation engine sees it: teams with their rosters, bases,
backup teams and policies; members with their phones; the district's dispatch team.
Pure: built from directory rows, asked "who could be notified for this alarm, now?".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from carehub.alarm_lifecycle import AlarmKind, Severity
from server.duty_roster import DutyRoster
from server.escalation import (
    NOTICE,
    SERVICE_CIRCLE_S,
    URGENT,
    Candidates,
    EscalationPolicy,
    GeoPoint,
    TravelTime,
    backup_teams_in_circle,
    estimated_travel_s,
)
from server.triage import PARALLEL, TriagePolicy


@dataclass(frozen=True)
class Member:
    id: str
    team_id: str
    name: str
    phone: str
    language: str
    role: str = "doctor"


@dataclass(frozen=True)
class TeamView:
    id: str
    name: str
    roster: DutyRoster
    kind: str = "care"
    base: GeoPoint | None = None
    backups: tuple[str, ...] = ()
    policies: dict[str, str] = field(default_factory=dict)
    """``urgent``/``notice``, or ``<kind>_<severity>`` (e.g. ``fall_critical``) → policy id."""
    triage: TriagePolicy = PARALLEL


def alarm_class(kind: AlarmKind, severity: Severity) -> str:
    """``notice`` for vital-sign warnings, ``urgent`` for everything else."""
    return "notice" if kind is AlarmKind.VITALS and severity is Severity.WARNING else "urgent"


def policy_keys(kind: AlarmKind, severity: Severity) -> tuple[str, str]:
    """The keys a team's ``policies`` table is read with, most specific first: the alarm's
    kind and severity (``fall_critical``, ``vitals_warning`` …), then its class."""
    return f"{kind.value}_{severity.value}", alarm_class(kind, severity)


@dataclass(frozen=True)
class CareMap:
    teams: dict[str, TeamView]
    members: dict[str, Member]
    policies: dict[str, EscalationPolicy] = field(default_factory=dict)
    circle_s: float = SERVICE_CIRCLE_S
    travel: TravelTime = estimated_travel_s

    def policy_for(self, team_id: str, kind: AlarmKind, severity: Severity) -> EscalationPolicy:
        team = self.teams.get(team_id)
        for key in policy_keys(kind, severity):
            chosen = team.policies.get(key) if team else None
            if chosen and chosen in self.policies:
                return self.policies[chosen]
        return NOTICE if alarm_class(kind, severity) == "notice" else URGENT

    def policy(self, policy_id: str) -> EscalationPolicy:
        return self.policies.get(policy_id) or {URGENT.id: URGENT, NOTICE.id: NOTICE}.get(
            policy_id, URGENT
        )

    def triage_for(self, team_id: str) -> TriagePolicy:
        """The team's triage policy (parallel for a team the map does not know)."""
        team = self.teams.get(team_id)
        return team.triage if team is not None else PARALLEL

    def on_duty(self, team_id: str, now_ms: int) -> list[str]:
        team = self.teams.get(team_id)
        if team is None:
            return []
        return [m for m in team.roster.on_duty(now_ms) if m in self.members]

    def candidates(
        self, team_id: str, elder: GeoPoint | None, excluded: Iterable[str], now_ms: int
    ) -> Candidates:
        """Who could be told about an alarm of an elder of `team_id`, now.

        Backup teams are those listed for the team whose base reaches the elder inside the
        service circle; where the elder's or a base's location is unknown, the backup team
        is asked anyway (better asked in vain than not asked)."""
        team = self.teams.get(team_id)
        backups: list[str] = []
        if team is not None:
            known = [
                (b, self.teams[b].base)
                for b in team.backups
                if b in self.teams and self.teams[b].base is not None and elder is not None
            ]
            near = (
                backup_teams_in_circle(
                    elder,
                    [(b, base) for b, base in known if base is not None],
                    self.circle_s,
                    self.travel,
                )
                if elder is not None
                else []
            )
            unknown = [b for b in team.backups if b in self.teams and b not in dict(known)]
            for b in near + unknown:
                backups += [m for m in self.on_duty(b, now_ms) if m not in backups]
        return Candidates(
            team_on_duty=tuple(self.on_duty(team_id, now_ms)),
            backups_on_duty=tuple(backups),
            excluded=frozenset(excluded),
        )

    def dispatchers_on_duty(self, now_ms: int) -> list[str]:
        """On-duty members of every dispatch team (usually one per district)."""
        out: list[str] = []
        for team in self.teams.values():
            if team.kind == "dispatch":
                out += [m for m in self.on_duty(team.id, now_ms) if m not in out]
        return out
