"""Reading the KPI rows: each alarm's milestones joined to its elder's team (`server.kpi`
does the arithmetic). Test alarms are left out here; cancellations are flagged."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.alarm_lifecycle import AlarmState
from server.kpi import AlarmTimes
from server.schema import alarms, elders


async def read_alarm_times(engine: AsyncEngine, since_ms: int, until_ms: int) -> list[AlarmTimes]:
    """Alarms the server received in [since_ms, until_ms), oldest first."""
    query = (
        sa.select(
            elders.c.team_id,
            alarms.c.received_at_ms,
            alarms.c.first_notified_at_ms,
            alarms.c.accepted_at_ms,
            alarms.c.arrived_at_ms,
            alarms.c.state,
        )
        .select_from(alarms.join(elders, alarms.c.elder_id == elders.c.id))
        .where(
            alarms.c.received_at_ms >= since_ms,
            alarms.c.received_at_ms < until_ms,
            alarms.c.is_test == sa.false(),
        )
        .order_by(alarms.c.received_at_ms, alarms.c.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        AlarmTimes(
            team_id=r.team_id,
            received_ms=r.received_at_ms,
            first_notified_ms=r.first_notified_at_ms,
            accepted_ms=r.accepted_at_ms,
            arrived_ms=r.arrived_at_ms,
            cancelled_before_accept=(
                r.state == AlarmState.CANCELLED.value and r.accepted_at_ms is None
            ),
        )
        for r in rows
    ]
