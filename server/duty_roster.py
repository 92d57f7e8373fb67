"""Who of a team is on duty at an instant: weekly rules, rotations and one-off overrides.

Modelled on GoAlert's schedules: a team's roster is a set of *rules* ("Mon–Fri 08:00–20:00,
whoever the day rotation names"), each naming a member or a *rotation* (participants taking
turns, handing over every N days or weeks at a fixed local time), plus *overrides* for
holidays and sick days (add a member, remove one, or replace one by another for a span of
time). Times of day are the team's local time (`zoneinfo`, default Asia/Shanghai), so a
roster written once keeps working across daylight-saving changes elsewhere. Pure: the
instant is passed in as epoch milliseconds.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_TIME_ZONE = "Asia/Shanghai"
ALL_WEEK = frozenset(range(7))


@dataclass(frozen=True)
class Rotation:
    """Participants take turns; the turn changes every `shift_days` at `start`'s local time.

    ``start`` is a local datetime at which ``participants[0]`` begins a turn; instants before
    it count backwards (the order is periodic), so a roster never has a hole at its start.
    """

    id: str
    participants: tuple[str, ...]
    start: datetime  # naive, the team's local time
    shift_days: int = 7

    def __post_init__(self) -> None:
        if not self.participants:
            raise ValueError(f"rotation {self.id}: no participants")
        if self.shift_days < 1:
            raise ValueError(f"rotation {self.id}: shift_days must be ≥ 1")

    def on_turn(self, local: datetime) -> str:
        elapsed = local.replace(tzinfo=None) - self.start
        turns = elapsed // timedelta(days=self.shift_days)
        return self.participants[turns % len(self.participants)]


@dataclass(frozen=True)
class Rule:
    """On `weekdays` (0 = Monday) from `start` to `end` local time, `member` or `rotation`
    is on duty. `end` ≤ `start` crosses midnight (a night shift 20:00–08:00 belongs to the
    weekday it starts on); `start` == `end` is the whole day."""

    weekdays: frozenset[int] = ALL_WEEK
    start: time = time(0, 0)
    end: time = time(0, 0)
    member: str | None = None
    rotation: str | None = None

    def __post_init__(self) -> None:
        if (self.member is None) == (self.rotation is None):
            raise ValueError("a roster rule names exactly one of member or rotation")
        if not self.weekdays <= ALL_WEEK:
            raise ValueError("weekdays are 0 (Monday) … 6 (Sunday)")

    def active(self, local: datetime) -> bool:
        t, day = local.time(), local.weekday()
        if self.start == self.end:
            return day in self.weekdays
        if self.start < self.end:
            return day in self.weekdays and self.start <= t < self.end
        # crosses midnight: the evening part today, or the morning part of yesterday's shift
        return (day in self.weekdays and t >= self.start) or (
            (day - 1) % 7 in self.weekdays and t < self.end
        )


class OverrideKind(enum.StrEnum):
    ADD = "add"  # `member` is on duty too
    REMOVE = "remove"  # `member` is off (ill, on leave)
    REPLACE = "replace"  # `replaces` is off and `member` takes their place


@dataclass(frozen=True)
class Override:
    kind: OverrideKind
    member: str
    start_ms: int
    end_ms: int
    replaces: str | None = None

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError("an override must end after it starts")
        if (self.kind is OverrideKind.REPLACE) != (self.replaces is not None):
            raise ValueError("`replaces` goes with a replace override, and only with it")

    def covers(self, at_ms: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms


@dataclass(frozen=True)
class DutyRoster:
    """One team's roster. `order` ranks members when several are on duty (the first is
    "the on-duty member", the second "the next on-duty member")."""

    team_id: str
    rules: tuple[Rule, ...]
    rotations: tuple[Rotation, ...] = ()
    overrides: tuple[Override, ...] = ()
    order: tuple[str, ...] = ()
    time_zone: str = DEFAULT_TIME_ZONE
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.time_zone))
        known = {r.id for r in self.rotations}
        for rule in self.rules:
            if rule.rotation is not None and rule.rotation not in known:
                raise ValueError(f"team {self.team_id}: unknown rotation {rule.rotation!r}")

    def on_duty(self, at_ms: int) -> list[str]:
        """Member ids on duty at `at_ms`, in `order` (members not listed there last, by id)."""
        local = datetime.fromtimestamp(at_ms / 1000, self._zone)
        rotations = {r.id: r for r in self.rotations}
        members: set[str] = set()
        for rule in self.rules:
            if rule.active(local):
                members.add(rule.member or rotations[rule.rotation or ""].on_turn(local))
        for o in self.overrides:
            if not o.covers(at_ms):
                continue
            if o.kind is OverrideKind.ADD:
                members.add(o.member)
            elif o.kind is OverrideKind.REMOVE:
                members.discard(o.member)
            elif o.replaces in members:
                members.discard(o.replaces)
                members.add(o.member)
        rank = {m: i for i, m in enumerate(self.order)}
        return sorted(members, key=lambda m: (rank.get(m, len(rank)), m))


def always_on_duty(team_id: str, members: Sequence[str]) -> DutyRoster:
    """A roster where every listed member is on duty all the time, in the given order (a
    small team without shifts, and the directory's default)."""
    return DutyRoster(team_id, tuple(Rule(member=m) for m in members), order=tuple(members))
