"""One incident per elder: a press, a fall and a vital-sign alarm of one event arrive within
minutes of each other, and the operator should see one thing happening to one person, not
three strangers in the queue. The rule is pure (`group_incidents`); the alarms stay separate
rows of `alarms`, each with its own ladder, responder and outcome, and the incident is
worked out whenever it is shown (no table: nothing to keep in step).

The rule: an elder's alarms, in the order received, belong to one incident while each
arrives within `window_ms` of the one before (`console_incident_window_s`). Test alarms
(an installer's self-test) never join real ones."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.schema import alarms

LOOK_AROUND_MS = 24 * 3600 * 1000
"""How far either side of an alarm its incident is looked for (a chain of alarms each a few
minutes after the last is cut there)."""


class Grouped(Protocol):
    """What the rule needs of an alarm."""

    @property
    def alarm_id(self) -> str: ...
    @property
    def elder_id(self) -> str: ...
    @property
    def received_at_ms(self) -> int: ...
    @property
    def is_test(self) -> bool: ...


A = TypeVar("A", bound=Grouped)


def group_incidents(found: Iterable[A], window_ms: int) -> list[tuple[A, ...]]:
    """The alarms as incidents, each in the order received; incidents in the order of their
    first alarm. An alarm joins the incident of the same elder (and the same test-ness)
    whose latest alarm was received at most `window_ms` (ms) before it."""
    assert window_ms >= 0, "an incident window is a duration"
    ordered = sorted(found, key=lambda a: (a.elder_id, a.is_test, a.received_at_ms, a.alarm_id))
    groups: list[list[A]] = []
    for a in ordered:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and last.elder_id == a.elder_id
            and last.is_test == a.is_test
            and a.received_at_ms - last.received_at_ms <= window_ms
        ):
            groups[-1].append(a)
        else:
            groups.append([a])
    return sorted((tuple(g) for g in groups), key=lambda g: (g[0].received_at_ms, g[0].alarm_id))


def since_first_ms(incident: Sequence[Grouped], now_ms: int) -> int:
    """How long ago (ms, never negative) the incident's first alarm was received."""
    return max(0, now_ms - min(a.received_at_ms for a in incident))


@dataclass(frozen=True)
class IncidentAlarm:
    """One alarm of an incident as the alarm page lists it."""

    alarm_id: str
    elder_id: str
    received_at_ms: int
    is_test: bool
    kind: str
    severity: str
    state: str
    claimed_by: str | None


async def incident_of(
    engine: AsyncEngine, alarm_id: str, elder_id: str, received_at_ms: int, window_ms: int
) -> tuple[IncidentAlarm, ...]:
    """The incident `alarm_id` belongs to (itself included, in the order received), among
    the elder's alarms of the day around it, open or closed."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                alarms.c.id,
                alarms.c.received_at_ms,
                alarms.c.is_test,
                alarms.c.kind,
                alarms.c.severity,
                alarms.c.state,
                alarms.c.claimed_by,
            ).where(
                alarms.c.elder_id == elder_id,
                alarms.c.received_at_ms.between(
                    received_at_ms - LOOK_AROUND_MS, received_at_ms + LOOK_AROUND_MS
                ),
            )
        )
        found = [
            IncidentAlarm(
                r.id,
                elder_id,
                r.received_at_ms,
                bool(r.is_test),
                r.kind,
                r.severity,
                r.state,
                r.claimed_by,
            )
            for r in rows
        ]
    for incident in group_incidents(found, window_ms):
        if any(a.alarm_id == alarm_id for a in incident):
            return incident
    return ()
