"""The statements every part of the dispatch wing writes with, inside its caller's
transaction: the alarm row a message needs, the alarm's events, its ladder's status, and
who is out of the current step. No transaction is opened here; the writer is
`server.dispatch.queue.MessageQueue.write`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState
from server.db import none_of
from server.escalation import move_on_early
from server.hot_sql import HotStatement
from server.schema import alarms, elders, escalations, notifications
from server.store import INSERT_EVENT

KEEP_OR_SET_POLICY = sa.func.coalesce(
    sa.bindparam("p_policy", type_=escalations.c.policy_id.type), escalations.c.policy_id
)
"""A ladder's policy in an UPDATE: ``p_policy`` when one was chosen, else the one it has."""
_SET_LADDER = HotStatement(
    escalations.update()
    .where(escalations.c.alarm_id == sa.bindparam("p_alarm"))
    .values(
        status=sa.bindparam("p_status"),
        due_at_ms=sa.bindparam("p_due"),
        updated_at_ms=sa.bindparam("p_now"),
        policy_id=KEEP_OR_SET_POLICY,
    )
)
_ALARM_ROW = HotStatement(
    sa.select(
        alarms.c.id,
        alarms.c.hub_id,
        alarms.c.state,
        alarms.c.kind,
        alarms.c.severity,
        alarms.c.accepted_by,
        alarms.c.arrived_at_ms,
        alarms.c.is_test,
        alarms.c.received_at_ms,
        alarms.c.triage_outcome,
        elders.c.name,
        elders.c.short_address,
        elders.c.team_id,
        elders.c.lat,
        elders.c.lon,
        elders.c.id.label("elder_id"),
    )
    .join(elders, elders.c.id == alarms.c.elder_id)
    .where(alarms.c.id == sa.bindparam("p_alarm"))
)
"""Built once, with bound parameters: building a statement costs more CPU than SQLite
takes to run it (issue 22's lean write path); run without SQLAlchemy's execution layer on
SQLite (`server.hot_sql`)."""


class LadderStatus:
    RUNNING = "running"
    ACCEPTED = "accepted"  # waiting for arrival
    ARRIVED = "arrived"
    OVERDUE = "overdue"  # accepted, no arrival in the circle: with the dispatcher
    EXHAUSTED = "exhausted"  # nobody accepted after every repeat: with the dispatcher
    CLOSED = "closed"  # the alarm is resolved or cancelled


async def event(
    conn: AsyncConnection,
    alarm: Any,
    kind: str,
    now_ms: int,
    actor: str,
    detail: str = "",
    state: AlarmState | None = None,
) -> None:
    await INSERT_EVENT.execute(
        conn,
        {
            "alarm_id": alarm.id,
            "hub_id": alarm.hub_id,
            "kind": kind,
            "state": state.value if state else None,
            "at_ms": now_ms,
            "detail": detail[:400],
            "actor": actor[:80],
        },
    )


async def set_ladder(
    conn: AsyncConnection,
    alarm_id: str,
    status: str,
    due_ms: int | None,
    now_ms: int,
    policy_id: str | None = None,
) -> None:
    await _SET_LADDER.execute(
        conn,
        {
            "p_alarm": alarm_id,
            "p_status": status,
            "p_due": due_ms,
            "p_now": now_ms,
            "p_policy": policy_id or None,
        },
    )


async def excluded(conn: AsyncConnection, alarm_id: str) -> set[str]:
    rows = (
        await conn.execute(
            sa.select(notifications.c.doctor_id).where(
                notifications.c.alarm_id == alarm_id,
                notifications.c.purpose.like("step-%"),
                sa.or_(
                    notifications.c.response == "declined",
                    notifications.c.status.in_(["failed", "undelivered"]),
                ),
            )
        )
    ).scalars()
    return set(rows)


async def member_out(conn: AsyncConnection, alarm_id: str, now_ms: int) -> None:
    """A member of the current step declined or cannot be reached: when the whole step
    is out, the next step is due now."""
    ladder = (
        await conn.execute(sa.select(escalations).where(escalations.c.alarm_id == alarm_id))
    ).first()
    if ladder is None or ladder.status != LadderStatus.RUNNING:
        return
    if move_on_early(ladder.members, frozenset(await excluded(conn, alarm_id)), ladder.dispatcher):
        await conn.execute(
            escalations.update()
            .where(escalations.c.alarm_id == alarm_id)
            .values(due_at_ms=now_ms, updated_at_ms=now_ms)
        )


async def went_out(conn: AsyncConnection, alarm_id: str) -> bool:
    """Whether a ladder step texted anyone about the alarm: a family told it is over
    must have been able to hear of it (an operator-first alarm closed in its window,
    or cancelled by the elder then, closes without a single SMS)."""
    sent = await conn.execute(
        sa.select(notifications.c.id)
        .where(notifications.c.alarm_id == alarm_id, notifications.c.purpose.like("step-%"))
        .limit(1)
    )
    return sent.first() is not None


def mark_operator_answer(alarm_id: str, at_ms: int) -> sa.Update:
    """The statement recording an operator's first answer (`DispatchStore.operator_answered`),
    for callers inside their own transaction."""
    return (
        alarms.update()
        .where(alarms.c.id == alarm_id, alarms.c.operator_at_ms.is_(None))
        .values(operator_at_ms=at_ms)
    )


CODE_HELD = sa.or_(
    none_of(alarms.c.state, [s.value for s in FINAL_STATES]),
    notifications.c.created_at_ms > sa.bindparam("p_held_since"),
    alarms.c.updated_at_ms > sa.bindparam("p_held_since"),
)
"""`server.reply_codes.holds` in SQL, for a notifications ⋈ alarms row; bound with
`code_held_since`."""


def code_held_since(now_ms: int, hold_ms: int) -> dict[str, int]:
    """`CODE_HELD`'s parameter: a code is held while its alarm is open, or for `hold_ms`
    after its message or its alarm last changed."""
    return {"p_held_since": now_ms - hold_ms}


async def alarm_row(conn: AsyncConnection, alarm_id: str) -> Any:
    """An alarm with what messages about it need from its elder (one query for every
    step, answer and assignment)."""
    return (await _ALARM_ROW.execute(conn, {"p_alarm": alarm_id})).one()


class AlarmRow:
    """An alarm row with its acceptor, for the notice helpers."""

    def __init__(self, row: Any, accepted_by: str | None) -> None:
        self._row = row
        self.accepted_by = accepted_by

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def alarm_ref(alarm_id: str) -> str:
    """The short reference printed in texts and used in links."""
    return alarm_id[-6:].upper()
