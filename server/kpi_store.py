"""Reading the KPI rows: each alarm's milestones joined to its elder's team (`server.kpi`
does the arithmetic). Test alarms are left out here; cancellations and alarms the operator
closed without a visit are flagged; each alarm's voice calls are counted (installers' test
calls left out); welfare checks are marked, with when they were resolved."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState
from server.kpi import AlarmTimes
from server.schema import alarms, elders, voice_calls
from server.triage import CLOSING, TriageOutcome
from server.welfare import is_welfare

CLOSED_BY_PHONE = frozenset({"false_alarm", "by_phone"})
"""Resolution codes (`alarms.outcome`) of an alarm the operator closed without a visit."""


def closed_by_operator(
    state: str, arrived_at_ms: int | None, triage_outcome: str | None, outcome: str | None
) -> bool:
    """Closed by the operator with nobody arriving: a closing triage outcome, or resolved
    as a false alarm or by phone."""
    if AlarmState(state) not in FINAL_STATES or arrived_at_ms is not None:
        return False
    return triage_outcome in {o.value for o in CLOSING} or outcome in CLOSED_BY_PHONE


async def read_alarm_times(engine: AsyncEngine, since_ms: int, until_ms: int) -> list[AlarmTimes]:
    """Alarms the server received in [since_ms, until_ms), oldest first."""
    per_alarm = (  # each alarm's voice calls, installers' test calls left out
        sa.select(
            voice_calls.c.alarm_id,
            sa.func.count().label("calls"),
            sa.func.count(voice_calls.c.answered_at_ms).label("answered"),
        )
        .where(voice_calls.c.is_test == sa.false())
        .group_by(voice_calls.c.alarm_id)
        .subquery()
    )
    query = (
        sa.select(
            elders.c.team_id,
            alarms.c.received_at_ms,
            alarms.c.first_notified_at_ms,
            alarms.c.accepted_at_ms,
            alarms.c.arrived_at_ms,
            alarms.c.state,
            alarms.c.operator_at_ms,
            alarms.c.triage_outcome,
            alarms.c.outcome,
            alarms.c.kind,
            alarms.c.resolved_at_ms,
            per_alarm.c.calls,
            per_alarm.c.answered,
        )
        .select_from(
            alarms.join(elders, alarms.c.elder_id == elders.c.id).outerjoin(
                per_alarm, per_alarm.c.alarm_id == alarms.c.id
            )
        )
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
            operator_ms=r.operator_at_ms,
            closed_by_operator=closed_by_operator(
                r.state, r.arrived_at_ms, r.triage_outcome, r.outcome
            ),
            ambulance_called=(
                r.triage_outcome == TriageOutcome.AMBULANCE_CALLED.value or r.outcome == "ambulance"
            ),
            calls=r.calls or 0,
            call_answered=bool(r.answered),
            welfare=is_welfare(r.kind),
            closed_ms=r.resolved_at_ms,
        )
        for r in rows
    ]
