"""The ladder: one row per alarm with the due time of its next step; advancing it, taking
a step, holding it for the operator's triage, raising it to the urgent policy.

Exactly-once steps across processes: a worker claims due ladders with
``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL; on SQLite one process, one writer), takes
the step, inserts its notifications and moves the ladder on in the same transaction, so a
crash before the commit leaves the ladder due and a step is never skipped. Who is next is
decided by `server.escalation` and `server.triage`; this module only reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from carehub.alarm_lifecycle import FINAL_STATES, AlarmKind, AlarmState, Severity
from server.care_map import CareMap
from server.dispatch.queue import Message, MessageQueue
from server.dispatch.rows import (
    KEEP_OR_SET_POLICY,
    LadderStatus,
    alarm_ref,
    alarm_row,
    event,
    excluded,
    mark_operator_answer,
    set_ladder,
    went_out,
)
from server.escalation import Exhausted, GeoPoint, Notify, self_test_ladder, take_step
from server.hot_sql import HotStatement
from server.schema import alarm_events, alarms, escalations
from server.sms_text import (
    AlarmSummary,
    compose_alarm,
    compose_arrival_overdue,
    compose_cancelled,
)
from server.store import POLICY_PENDING, new_ladder
from server.triage import TriageOutcome, first_step_due_ms
from server.welfare import LADDERLESS_KIND_VALUES

# Built once with bound parameters: building a statement costs more CPU than SQLite takes
# to run it (issue 22's lean write path); the hot ones run without SQLAlchemy's execution
# layer on SQLite (`server.hot_sql`).
_NEXT_DUE = HotStatement(sa.select(sa.func.min(escalations.c.due_at_ms)))
_DUE = HotStatement(
    sa.select(escalations)
    .where(escalations.c.due_at_ms <= sa.bindparam("p_now"))
    .order_by(escalations.c.due_at_ms)
    .limit(sa.bindparam("p_limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
)
_LADDERLESS = (
    sa.select(alarms.c.id)
    .outerjoin(escalations, escalations.c.alarm_id == alarms.c.id)
    .where(
        escalations.c.alarm_id.is_(None),
        alarms.c.state.in_([AlarmState.RECEIVED.value, AlarmState.DISPATCHED.value]),
        alarms.c.kind.not_in(LADDERLESS_KIND_VALUES),  # welfare checks: no ladder
    )
    .limit(500)
)
_STEP_TAKEN = HotStatement(
    escalations.update()
    .where(escalations.c.alarm_id == sa.bindparam("p_alarm"))
    .values(
        position=sa.bindparam("p_position"),
        due_at_ms=sa.bindparam("p_due"),
        members=sa.bindparam("p_members", type_=escalations.c.members.type),
        dispatcher=sa.bindparam("p_dispatcher"),
        updated_at_ms=sa.bindparam("p_now"),
        policy_id=KEEP_OR_SET_POLICY,
    )
)


@dataclass(frozen=True)
class Advanced:
    """What `Ladders.advance_due` did: the messages to send, whether it stopped at its limit
    (more may be due), and the earliest due time left."""

    messages: list[Message]
    full: bool
    next_due_ms: int | None


class Ladders(MessageQueue):
    """The escalation ladders over the message queue their steps fill."""

    async def start_ladders(self, now_ms: int) -> int:
        """Give every received alarm without a ladder one, due now; returns how many. A
        sweep for alarms stored before ladders started in the alarm's own commit
        (`server.store.new_ladder`) or by an older server process sharing the database."""
        async with self.store.read() as conn:
            if not (await self._ladderless(conn)).first():
                return 0  # the usual case, answered without the write lock
        async with self.write() as conn:
            rows = (await self._ladderless(conn)).all()
            for r in rows:
                await self.insert_ignore(escalations).execute(conn, new_ladder(r.id, now_ms))
        return len(rows)

    @staticmethod
    async def _ladderless(conn: AsyncConnection) -> Any:
        return await conn.execute(_LADDERLESS)

    async def advance_due(self, now_ms: int, care: CareMap, limit: int = 50) -> Advanced:
        """Take the next step of up to `limit` ladders that are due (claimed, so each step
        is taken by one process once): the messages to send now, and the next due time
        after them, read in the same transaction. The caller reads `next_due_ms` first
        unless it was woken because something is due: with nothing due, no write
        transaction (no wait for SQLite's one writer)."""
        out: list[Message] = []
        async with self.write() as conn:
            due = (await _DUE.execute(conn, {"p_now": now_ms, "p_limit": limit})).all()
            for ladder in due:
                out += await self._advance(conn, ladder, now_ms, care)
            next_due = (await _NEXT_DUE.execute(conn)).scalar()
        return Advanced(out, len(due) == limit, int(next_due) if next_due is not None else None)

    async def next_due_ms(self) -> int | None:
        async with self.store.read() as conn:
            value = (await _NEXT_DUE.execute(conn)).scalar()
        return int(value) if value is not None else None

    async def _advance(
        self, conn: AsyncConnection, ladder: Any, now_ms: int, care: CareMap
    ) -> list[Message]:
        alarm = await alarm_row(conn, ladder.alarm_id)
        state = AlarmState(alarm.state)
        ref = alarm_ref(alarm.id)
        if state in FINAL_STATES:
            msgs = []
            if state is AlarmState.CANCELLED:
                msgs = await self.tell_notified(
                    conn,
                    alarm,
                    "cancelled",
                    lambda m: compose_cancelled(ref, m.language),
                    care,
                    now_ms,
                )
                if await went_out(conn, alarm.id):
                    msgs += await self.tell_contacts(conn, alarm, "cancelled", None, now_ms)
            await set_ladder(conn, alarm.id, LadderStatus.CLOSED, None, now_ms)
            return msgs
        if ladder.status in (LadderStatus.ACCEPTED,):
            responder = care.members.get(alarm.accepted_by or "")
            name = responder.name if responder else (alarm.accepted_by or "?")
            msgs = await self.notify_dispatchers(
                conn,
                alarm,
                "arrival-overdue",
                lambda m: compose_arrival_overdue(ref, name, m.language),
                care,
                now_ms,
            )
            await event(conn, alarm, "arrival_overdue", now_ms, "system", name)
            await set_ladder(conn, alarm.id, LadderStatus.OVERDUE, None, now_ms)
            return msgs
        if ladder.status != LadderStatus.RUNNING:
            await set_ladder(conn, alarm.id, ladder.status, None, now_ms)
            return []
        if ladder.policy_id == POLICY_PENDING and await self._held_for_operator(
            conn, alarm, care, now_ms
        ):
            return []
        urgent = care.policy_for(alarm.team_id, AlarmKind(alarm.kind), Severity(alarm.severity))
        # the first step chooses the ladder's policy (stored with the step's own update)
        chosen = urgent.id if ladder.policy_id == POLICY_PENDING else None
        policy = urgent if chosen else care.policy(ladder.policy_id)
        msgs = []
        if (
            urgent.id != policy.id
            and ladder.policy_id
            == care.policy_for(alarm.team_id, AlarmKind(alarm.kind), Severity.WARNING).id
        ):
            # a critical repeat raised a warning (`server.alarm_repeats`): whoever had the
            # notice hears it is now urgent, and the ladder goes on under the urgent policy
            msgs = await self._raised(conn, alarm, urgent.id, care, now_ms)
            policy = urgent
        if alarm.is_test:
            policy = self_test_ladder(policy)
        # nobody is out of a step before the first: no step's notification exists yet
        out_of_step = await excluded(conn, alarm.id) if ladder.position else set()
        elder = GeoPoint(alarm.lat, alarm.lon) if alarm.lat is not None else None
        candidates = care.candidates(alarm.team_id, elder, out_of_step, now_ms)
        decision = take_step(policy, ladder.position, candidates, now_ms)
        if isinstance(decision, Exhausted):
            await event(conn, alarm, "ladder_exhausted", now_ms, "system", policy.id)
            await set_ladder(conn, alarm.id, LadderStatus.EXHAUSTED, None, now_ms, chosen)
            return msgs
        return msgs + await self._take(conn, alarm, decision, care, now_ms, chosen)

    async def _held_for_operator(
        self, conn: AsyncConnection, alarm: Any, care: CareMap, now_ms: int
    ) -> bool:
        """Operator first (`server.triage`): before the first step, hold the ladder until
        the operator's window is over, unless an outcome came. True when held: the ladder
        is due again at the window's end, when the escalator takes the step by itself."""
        triage = care.triage_for(alarm.team_id)
        outcome = TriageOutcome(alarm.triage_outcome) if alarm.triage_outcome else None
        due = first_step_due_ms(triage, alarm.received_at_ms, alarm.is_test, outcome)
        if due == alarm.received_at_ms:
            return False
        if due <= now_ms:
            await event(
                conn,
                alarm,
                "operator_unanswered",
                now_ms,
                "system",
                f"{triage.operator_first_s:g} s",
            )
            return False
        held = (
            await conn.execute(
                sa.select(alarm_events.c.id).where(
                    alarm_events.c.alarm_id == alarm.id, alarm_events.c.kind == "operator_first"
                )
            )
        ).first()
        if held is None:  # once, not again after a kick (a repeat) in the window
            await event(
                conn, alarm, "operator_first", now_ms, "system", f"{triage.operator_first_s:g} s"
            )
        await set_ladder(conn, alarm.id, LadderStatus.RUNNING, due, now_ms)
        return True

    async def _raised(
        self, conn: AsyncConnection, alarm: Any, policy_id: str, care: CareMap, now_ms: int
    ) -> list[Message]:
        summary = AlarmSummary(
            alarm_ref(alarm.id),
            alarm.name,
            alarm.short_address,
            AlarmKind(alarm.kind),
            Severity.CRITICAL,
        )
        msgs = await self.tell_notified(
            conn,
            alarm,
            "raised-critical",
            lambda m: compose_alarm(summary, m.language, None),
            care,
            now_ms,
        )
        await conn.execute(
            escalations.update()
            .where(escalations.c.alarm_id == alarm.id)
            .values(policy_id=policy_id, updated_at_ms=now_ms)
        )
        await event(conn, alarm, "severity_raised", now_ms, "system", policy_id)
        return msgs

    async def _take(
        self,
        conn: AsyncConnection,
        alarm: Any,
        step: Notify,
        care: CareMap,
        now_ms: int,
        policy_id: str | None = None,
    ) -> list[Message]:
        purpose = f"step-{step.position}"
        recipients = list(step.members)
        if step.dispatcher:
            recipients += [m for m in care.dispatchers_on_duty(now_ms) if m not in recipients]
        summary = AlarmSummary(
            alarm_ref(alarm.id),
            alarm.name,
            alarm.short_address,
            AlarmKind(alarm.kind),
            Severity(alarm.severity),
        )
        msgs: list[Message] = []
        for member_id in recipients:
            member = care.members[member_id]
            code = await self.free_reply_code(conn, member_id, now_ms)
            body = compose_alarm(summary, member.language, code, test=alarm.is_test)
            msg = await self.new_message(
                conn, alarm, member, purpose, body, now_ms, step.position, code, link=True
            )
            if msg is not None:
                msgs.append(msg)
        detail = ", ".join(recipients) + (" + dispatcher" if step.dispatcher else "")
        await event(
            conn, alarm, "step", now_ms, "system", f"step {step.position}: {detail or 'nobody'}"
        )
        await _STEP_TAKEN.execute(
            conn,
            {
                "p_alarm": alarm.id,
                "p_position": step.position + 1,
                "p_due": step.due_ms,
                "p_members": list(step.members),
                "p_dispatcher": step.dispatcher,
                "p_now": now_ms,
                "p_policy": policy_id or None,
            },
        )
        return msgs

    async def assign(
        self, alarm_id: str, member_id: str, care: CareMap, now_ms: int, actor: str
    ) -> list[Message]:
        """The console sends the alarm (with its accept link) to one member, outside the
        ladder's steps; the caller sends the returned messages (`Escalator.send`)."""
        async with self.write() as conn:
            alarm = await alarm_row(conn, alarm_id)
            member = care.members[member_id]
            summary = AlarmSummary(
                alarm_ref(alarm.id),
                alarm.name,
                alarm.short_address,
                AlarmKind(alarm.kind),
                Severity(alarm.severity),
            )
            code = await self.free_reply_code(conn, member_id, now_ms)
            body = compose_alarm(summary, member.language, code, test=alarm.is_test)
            msg = await self.new_message(
                conn, alarm, member, f"assigned-{now_ms}", body, now_ms, None, code, link=True
            )
            await event(conn, alarm, "assigned", now_ms, actor, f"to {member.name}")
        return [msg] if msg is not None else []

    async def operator_answered(self, alarm_id: str, at_ms: int) -> None:
        """An operator answered or took the alarm (a call answered, an acknowledgement):
        the first such time is the alarm's time to answer (`alarms.operator_at_ms`, read by
        `server.kpi`); later ones change nothing."""
        async with self.write() as conn:
            await conn.execute(mark_operator_answer(alarm_id, at_ms))

    async def kick(self, alarm_id: str, now_ms: int) -> None:
        """Make the alarm's ladder due now: its state changed (the elder cancelled), so the
        next pass tells whoever needs to know."""
        async with self.write() as conn:
            await conn.execute(
                escalations.update()
                .where(
                    escalations.c.alarm_id == alarm_id,
                    escalations.c.status != LadderStatus.CLOSED,
                )
                .values(due_at_ms=now_ms)
            )

    async def alarm_changed(self, hub_id: str, hub_alarm_id: str, now_ms: int) -> None:
        """`kick`, for an alarm named by its hub (a repeat's id names the open alarm)."""
        alarm_id = await self.store.server_alarm_id(hub_id, hub_alarm_id)
        if alarm_id is not None:
            await self.kick(alarm_id, now_ms)
