"""Finding an elder from the console (a relative phones in: "my mother, Wang, in building
3") and the elder's alarm history, so the operator sees at once whether this is the
fourth fall this month. Names and short addresses only: the card behind each result is
the audited view of the medical data."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.console.checklists import CHECKLIST_EVENT, ChecklistRecord, decode
from server.schema import alarm_events, alarms, elders

MAX_RESULTS = 20
HISTORY_ROWS = 20
MAX_QUERY = 80


@dataclass(frozen=True)
class Found:
    id: str
    name: str
    short_address: str
    team_id: str


@dataclass(frozen=True)
class PastAlarm:
    id: str
    kind: str
    severity: str
    state: str
    outcome: str | None
    received_at_ms: int
    repeat_count: int
    is_test: bool
    checklist: ChecklistRecord | None = None  # as recorded with the outcome


def like_pattern(query: str) -> str:
    """`query` as a LIKE pattern that matches it anywhere, its own % and _ taken literally."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def find_elders(engine: AsyncEngine, query: str, team_id: str | None) -> list[Found]:
    """Elders whose name, short address or id contains `query` (case-insensitive), only
    `team_id`'s when it is given; at most `MAX_RESULTS`, by name."""
    query = query.strip()[:MAX_QUERY]
    if not query:
        return []
    pattern = like_pattern(query.lower())
    where = sa.or_(
        *(
            sa.func.lower(column).like(pattern, escape="\\")
            for column in (elders.c.name, elders.c.short_address, elders.c.id)
        )
    )
    select = sa.select(elders.c.id, elders.c.name, elders.c.short_address, elders.c.team_id)
    if team_id is not None:
        select = select.where(elders.c.team_id == team_id)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select.where(where).order_by(elders.c.name, elders.c.id).limit(MAX_RESULTS)
        )
        return [Found(r.id, r.name, r.short_address, r.team_id) for r in rows]


async def alarm_history(engine: AsyncEngine, elder_id: str) -> list[PastAlarm]:
    """The elder's latest alarms, newest first (at most `HISTORY_ROWS`), each with the
    checklist recorded when it was resolved."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                alarms.c.id,
                alarms.c.kind,
                alarms.c.severity,
                alarms.c.state,
                alarms.c.outcome,
                alarms.c.received_at_ms,
                alarms.c.repeat_count,
                alarms.c.is_test,
            )
            .where(alarms.c.elder_id == elder_id)
            .order_by(alarms.c.received_at_ms.desc(), alarms.c.id)
            .limit(HISTORY_ROWS)
        )
        found = rows.all()
        recorded = await conn.execute(
            sa.select(alarm_events.c.alarm_id, alarm_events.c.detail)
            .where(
                alarm_events.c.alarm_id.in_([r.id for r in found]),
                alarm_events.c.kind == CHECKLIST_EVENT,
            )
            .order_by(alarm_events.c.at_ms, alarm_events.c.id)
        )
        checklists = {e.alarm_id: decode(e.detail) for e in recorded}  # the latest stands
    return [
        PastAlarm(
            r.id,
            r.kind,
            r.severity,
            r.state,
            r.outcome,
            r.received_at_ms,
            int(r.repeat_count or 0),
            bool(r.is_test),
            checklists.get(r.id),
        )
        for r in found
    ]
