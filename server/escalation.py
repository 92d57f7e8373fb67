"""Who is told about an alarm, and when the next person is: escalation policies as data and
one pure function that walks them.

A policy is an ordered list of steps, each "notify X, then wait N seconds for an
acceptance"; the ladder runs `repeat` more times after its last step. X is one of:

- the contracted team's on-duty member of rank r (0 = first on duty, 1 = the next one);
- the on-duty members of backup teams whose base is inside the service circle;
- the duty dispatcher.

A step with nobody to notify (nobody on duty, everyone declined or unreachable) is skipped
at once, so "nobody on duty" reaches the dispatcher without waiting. The dispatcher owns
every alarm nobody has accepted, from the first second: the console shows it whatever step
the ladder is at. Pure: time is passed in (epoch ms), the shell stores the position and
the due time of the next step as a row, so any server process can take the next step.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from carehub.alarm_lifecycle import AlarmKind, Severity

SERVICE_CIRCLE_S = 20 * 60
"""The promise: help at the elder's door within 20 minutes of acceptance."""


class Target(enum.StrEnum):
    TEAM_ON_DUTY = "team_on_duty"
    BACKUP_TEAMS = "backup_teams"
    DISPATCHER = "dispatcher"


@dataclass(frozen=True)
class Step:
    target: Target
    wait_s: float
    rank: int = 0
    """With `team_on_duty`: which on-duty member (0 = the first in the roster's order)."""


@dataclass(frozen=True)
class EscalationPolicy:
    id: str
    steps: tuple[Step, ...]
    repeat: int = 1
    """How many more times the whole ladder runs after its last step."""

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"policy {self.id}: no steps")
        if any(s.wait_s <= 0 for s in self.steps):
            raise ValueError(f"policy {self.id}: every step waits a positive time")
        if self.repeat < 0:
            raise ValueError(f"policy {self.id}: repeat must be ≥ 0")

    @property
    def length(self) -> int:
        """Steps in the whole walk, repeats included."""
        return len(self.steps) * (self.repeat + 1)


URGENT = EscalationPolicy(
    "urgent",
    (
        Step(Target.TEAM_ON_DUTY, 60, rank=0),
        Step(Target.TEAM_ON_DUTY, 60, rank=1),
        Step(Target.BACKUP_TEAMS, 60),
        Step(Target.DISPATCHER, 120),
    ),
    repeat=2,
)
"""Button presses, falls and critical vital signs."""
NOTICE = EscalationPolicy(
    "notice",
    (
        Step(Target.TEAM_ON_DUTY, 10 * 60, rank=0),
        Step(Target.TEAM_ON_DUTY, 10 * 60, rank=1),
        Step(Target.DISPATCHER, 30 * 60),
    ),
    repeat=0,
)
"""Vital-sign warnings: the doctor should look today, not run now."""


def self_test_ladder(policy: EscalationPolicy) -> EscalationPolicy:
    """What a self-test's alarm climbs: the policy's first step, once. The installer proves
    the first SMS arrives; nobody further up the ladder is disturbed."""
    return EscalationPolicy(f"{policy.id}:test", policy.steps[:1], repeat=0)


def default_policy(kind: AlarmKind, severity: Severity) -> EscalationPolicy:
    if kind is AlarmKind.VITALS and severity is Severity.WARNING:
        return NOTICE
    return URGENT


@dataclass(frozen=True)
class Candidates:
    """Who could be notified for one alarm right now."""

    team_on_duty: Sequence[str]
    """The contracted team's on-duty members, in roster order."""
    backups_on_duty: Sequence[str] = ()
    """On-duty members of backup teams inside the service circle, nearest team first."""
    excluded: frozenset[str] = frozenset()
    """Members who declined this alarm or whose messages could not be delivered."""


@dataclass(frozen=True)
class Notify:
    """Take step `position`: notify `members` (and the dispatcher, if `dispatcher`), then
    move on at `due_ms` unless someone accepts."""

    position: int
    members: tuple[str, ...]
    dispatcher: bool
    due_ms: int
    skipped: int = 0
    """Steps passed over on the way because nobody could be notified at them."""


@dataclass(frozen=True)
class Exhausted:
    """The ladder has run out (repeats included): the alarm stays with the dispatcher."""

    position: int


def step_at(policy: EscalationPolicy, position: int) -> Step:
    return policy.steps[position % len(policy.steps)]


@dataclass(frozen=True)
class StepNumber:
    """A ladder position as people count it: step 1.. of the policy, in pass 1.. (a pass
    after the first is a repeat). The one definition every view uses (queue, timeline,
    responder page), so they never disagree."""

    step: int
    round: int


def step_number(policy: EscalationPolicy, position: int) -> StepNumber:
    """`position`: the 0-based position a step was taken at (`Notify.position`, the
    notification's ``position``, ``escalations.position - 1``)."""
    size = len(policy.steps)
    return StepNumber(position % size + 1, position // size + 1)


def take_step(
    policy: EscalationPolicy, position: int, candidates: Candidates, now_ms: int
) -> Notify | Exhausted:
    """The first step at or after `position` that has someone to notify."""
    for pos in range(position, policy.length):
        step = step_at(policy, pos)
        members, dispatcher = _recipients(step, candidates)
        if members or dispatcher:
            return Notify(
                pos, members, dispatcher, now_ms + int(step.wait_s * 1000), pos - position
            )
    return Exhausted(policy.length)


def _recipients(step: Step, c: Candidates) -> tuple[tuple[str, ...], bool]:
    if step.target is Target.DISPATCHER:
        return (), True
    if step.target is Target.BACKUP_TEAMS:
        return tuple(m for m in c.backups_on_duty if m not in c.excluded), False
    # rank in the roster's order, not among those left: after the first declines, the
    # "next on-duty member" step still reaches the second, not the third
    team = c.team_on_duty
    if step.rank < len(team) and team[step.rank] not in c.excluded:
        return (team[step.rank],), False
    return (), False


def move_on_early(current: Sequence[str], excluded: frozenset[str], dispatcher: bool) -> bool:
    """After a decline or a failed delivery: take the next step now when every member of
    the current step is out (a step that also told the dispatcher keeps its wait: a person
    is on it)."""
    return bool(current) and not dispatcher and all(m in excluded for m in current)


# ---------------------------------------------------------------- the service circle


@dataclass(frozen=True)
class GeoPoint:
    lat: float
    lon: float


TravelTime = Callable[[GeoPoint, GeoPoint], float]

URBAN_SPEED_KMH = 25.0
DETOUR_FACTOR = 1.4
"""Streets are not straight lines: road distance ≈ 1.3–1.5 × great-circle distance in cities."""


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, h)))


def estimated_travel_s(a: GeoPoint, b: GeoPoint) -> float:
    """Seconds by car or e-bike across a city: the default, replaceable by a routing service."""
    return haversine_km(a, b) * DETOUR_FACTOR / URBAN_SPEED_KMH * 3600


def backup_teams_in_circle(
    elder: GeoPoint,
    bases: Sequence[tuple[str, GeoPoint]],
    circle_s: float = SERVICE_CIRCLE_S,
    travel: TravelTime = estimated_travel_s,
) -> list[str]:
    """Team ids whose base can reach the elder within the circle, nearest first."""
    timed = [(travel(base, elder), team_id) for team_id, base in bases]
    return [team_id for t, team_id in sorted(timed) if t <= circle_s]
