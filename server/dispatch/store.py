"""The dispatch wing's writer: the ladders and their message queue (`server.dispatch.ladder`,
`server.dispatch.queue`), plus the two answers that move an alarm from outside the ladder:
a responder's (`server.dispatch.answers`) and the operator's triage (`server.triage`).

Each method decides and commits in one transaction and returns the messages to send; the
sending and the notices after it are `server.dispatch.service.DispatchService`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from carehub.alarm_lifecycle import AlarmState, can_transition, merge
from server.care_map import CareMap
from server.dispatch.answers import Answer, AnswerKey, judge
from server.dispatch.care import care_map_if_changed
from server.dispatch.eta import ETA_EVENT, EtaKey, judge_eta
from server.dispatch.ladder import Ladders
from server.dispatch.queue import Message
from server.dispatch.rows import (
    AlarmRow,
    LadderStatus,
    alarm_ref,
    alarm_row,
    event,
    member_out,
    set_ladder,
    went_out,
)
from server.escalation import SERVICE_CIRCLE_S
from server.schema import alarm_events, alarms, escalations, notifications
from server.sms_text import compose_closed_by_operator, compose_taken
from server.store import POLICY_PENDING
from server.triage import LadderMove, TriageEffect, TriageOutcome, decide

InTransaction = Callable[[AsyncConnection, str, int], Awaitable[None]]
"""A caller's own statements (given the connection, the alarm's hub and the time, ms),
run inside one of the wing's transactions: the console's checklist kept with a resolve."""


class DispatchStore(Ladders):
    """Ladders, messages and answers: the one writer of the dispatch tables."""

    async def care_map_if_changed(self, known: int | None) -> tuple[int, CareMap] | None:
        """`server.dispatch.care.care_map_if_changed` on this store's database."""
        return await care_map_if_changed(self.engine, known)

    async def resolve(
        self,
        alarm_id: str,
        outcome: str,
        actor: str,
        now_ms: int,
        with_it: InTransaction | None = None,
    ) -> tuple[str, AlarmState, bool] | None:
        """An operator resolves the alarm with an outcome code (the hub hears it through its
        updates feed) and its ladder closes, in one transaction, `with_it` first. Returns
        its hub, the state it was found in and whether it could be resolved; None for no
        such alarm."""
        async with self.write() as conn:
            row = (
                await conn.execute(
                    sa.select(alarms.c.hub_id, alarms.c.state).where(alarms.c.id == alarm_id)
                )
            ).first()
            if row is None:
                return None
            state = AlarmState(row.state)
            if not can_transition(state, AlarmState.RESOLVED):
                return row.hub_id, state, False
            if with_it is not None:
                await with_it(conn, row.hub_id, now_ms)
            await conn.execute(
                alarms.update()
                .where(alarms.c.id == alarm_id)
                .values(
                    state=AlarmState.RESOLVED.value,
                    resolved_at_ms=now_ms,
                    outcome=outcome,
                    updated_at_ms=now_ms,
                )
            )
            await conn.execute(
                alarm_events.insert().values(
                    alarm_id=alarm_id,
                    hub_id=row.hub_id,
                    kind="state",
                    state=AlarmState.RESOLVED.value,
                    at_ms=now_ms,
                    detail=f"outcome: {outcome}",
                    actor=actor,
                )
            )
            await set_ladder(conn, alarm_id, LadderStatus.CLOSED, None, now_ms)
        return row.hub_id, state, True

    async def triage(
        self, alarm_id: str, outcome: TriageOutcome, care: CareMap, now_ms: int, actor: str
    ) -> tuple[TriageEffect, list[Message]]:
        """Apply an operator's outcome (`server.triage.decide`) in one transaction: record
        it (who, when, and the operator's answer time), move the alarm, and start or close
        its ladder. Raises `TriageRefused` for a closed alarm. The caller sends the returned
        messages (`Escalator.send`: closing tells whoever was texted) and kicks the
        escalator (a ladder started now)."""
        async with self.write() as conn:
            # locks in `answer`'s order (the alarm, then its ladder), so the two cannot
            # deadlock; the ladder's lock waits for a step being taken meanwhile, whose
            # notifications this transaction then sees and answers. FOR NO KEY UPDATE, as
            # an UPDATE takes: a step's event rows (KEY SHARE on the alarm) never wait for it
            await conn.execute(
                sa.select(alarms.c.id)
                .where(alarms.c.id == alarm_id)
                .with_for_update(key_share=True)
            )
            ladder = (
                await conn.execute(
                    sa.select(escalations)
                    .where(escalations.c.alarm_id == alarm_id)
                    .with_for_update()
                )
            ).first()
            alarm = await alarm_row(conn, alarm_id)
            held = (
                ladder is not None
                and ladder.status == LadderStatus.RUNNING
                and ladder.policy_id == POLICY_PENDING
            )
            effect = decide(outcome, AlarmState(alarm.state), held)
            values: dict[str, Any] = {
                "triage_outcome": outcome.value,
                "operator_at_ms": sa.func.coalesce(alarms.c.operator_at_ms, now_ms),
                "updated_at_ms": now_ms,
            }
            if effect.state is not None:
                values |= {"state": effect.state.value, "outcome": effect.resolution}
                if effect.state is AlarmState.RESOLVED:
                    values["resolved_at_ms"] = now_ms
            await conn.execute(alarms.update().where(alarms.c.id == alarm_id).values(**values))
            await event(conn, alarm, "triage", now_ms, actor, outcome.value)
            msgs: list[Message] = []
            if effect.state is not None:
                await event(conn, alarm, "state", now_ms, actor, outcome.value, effect.state)
            if effect.ladder is LadderMove.CLOSE:
                msgs = await self._closed_by_operator(conn, alarm, outcome, effect, care, now_ms)
                await set_ladder(conn, alarm_id, LadderStatus.CLOSED, None, now_ms)
            elif effect.ladder is LadderMove.START_NOW:
                await set_ladder(conn, alarm_id, LadderStatus.RUNNING, now_ms, now_ms)
        return effect, msgs

    async def _closed_by_operator(
        self,
        conn: AsyncConnection,
        alarm: Any,
        outcome: TriageOutcome,
        effect: TriageEffect,
        care: CareMap,
        now_ms: int,
    ) -> list[Message]:
        """Whoever the ladder texted (the responder who accepted too) hears they need not
        go, and the contacts who asked hear it is over; an alarm nobody was told of closes
        without a single SMS."""
        ref = alarm_ref(alarm.id)
        accidental = outcome is TriageOutcome.ACCIDENTAL_PRESS
        msgs = await self.tell_notified(
            conn,
            AlarmRow(alarm, None),
            "closed",
            lambda m: compose_closed_by_operator(ref, accidental, m.language),
            care,
            now_ms,
        )
        if effect.state is not None and await went_out(conn, alarm.id):
            msgs += await self.tell_contacts(conn, alarm, effect.state.value, None, now_ms)
        return msgs

    async def answer(
        self, notification_id: str, action: str, now_ms: int, via: str, care: CareMap
    ) -> tuple[Answer, list[Message]]:
        """A responder's accept / decline / arrived, by link, reply code or console: the
        outcome (`server.dispatch.answers.judge`), applied in one transaction."""
        async with self.write() as conn:
            n, alarm = await _notification_and_alarm(conn, notification_id)
            member = care.members.get(n.doctor_id)
            name = member.name if member else n.doctor_id
            state = AlarmState(alarm.state)
            actor = f"member:{n.doctor_id}"
            key = judge(
                action, state, alarm.accepted_by, n.doctor_id, alarm.arrived_at_ms is not None
            )
            hub = alarm.hub_id
            if key is AnswerKey.ALREADY_OVER:
                return Answer(key, state, hub_id=hub), []
            if key is AnswerKey.TAKEN_BY_OTHER:
                taken_by = care.members.get(alarm.accepted_by)
                who = taken_by.name if taken_by else alarm.accepted_by
                return Answer(key, state, alarm.accepted_by, who, hub), []
            if key in (AnswerKey.ALREADY_YOURS, AnswerKey.ARRIVAL_KNOWN):
                return Answer(key, state, n.doctor_id, hub_id=hub), []
            if key in (AnswerKey.CANNOT_DECLINE, AnswerKey.NOT_YOURS):
                return Answer(key, state, hub_id=hub), []
            if key is AnswerKey.ACCEPTED:
                new = merge(state, AlarmState.ACCEPTED)
                await conn.execute(
                    alarms.update()
                    .where(alarms.c.id == alarm.id)
                    .values(
                        state=new.value,
                        accepted_by=n.doctor_id,
                        accepted_at_ms=now_ms,
                        doctor_id=n.doctor_id,
                        updated_at_ms=now_ms,
                    )
                )
                await conn.execute(
                    notifications.update()
                    .where(notifications.c.id == n.id)
                    .values(response="accepted")
                )
                await event(conn, alarm, "state", now_ms, actor, f"accepted via {via}", new)
                await set_ladder(
                    conn,
                    alarm.id,
                    LadderStatus.ACCEPTED,
                    now_ms + int(SERVICE_CIRCLE_S * 1000),
                    now_ms,
                )
                ref = alarm_ref(alarm.id)
                accepted = AlarmRow(alarm, n.doctor_id)
                msgs = await self.tell_notified(
                    conn,
                    accepted,
                    "taken",
                    lambda m: compose_taken(ref, name, m.language),
                    care,
                    now_ms,
                )
                msgs += await self.tell_contacts(conn, accepted, "accepted", name, now_ms)
                return Answer(key, new, n.doctor_id, hub_id=hub), msgs
            if key is AnswerKey.DECLINED:
                await conn.execute(
                    notifications.update()
                    .where(notifications.c.id == n.id)
                    .values(response="declined")
                )
                await event(conn, alarm, "declined", now_ms, actor, f"via {via}")
                await member_out(conn, alarm.id, now_ms)
                return Answer(key, state, hub_id=hub), []
            assert key is AnswerKey.ARRIVED
            await conn.execute(
                alarms.update()
                .where(alarms.c.id == alarm.id)
                .values(arrived_at_ms=now_ms, updated_at_ms=now_ms)
            )
            await event(conn, alarm, "arrived", now_ms, actor, f"via {via}")
            await set_ladder(conn, alarm.id, LadderStatus.ARRIVED, None, now_ms)
            msgs = await self.tell_contacts(
                conn, AlarmRow(alarm, n.doctor_id), "arrived", name, now_ms
            )
            return Answer(key, state, n.doctor_id, hub_id=hub), msgs

    async def give_eta(
        self, notification_id: str, minutes: int | None, now_ms: int
    ) -> tuple[EtaKey, str]:
        """The accepting member's estimate of minutes to the door, recorded as an alarm
        event in their name (`server.dispatch.eta`). Returns the outcome and the hub."""
        async with self.write() as conn:
            n, alarm = await _notification_and_alarm(conn, notification_id)
            key = judge_eta(
                minutes,
                AlarmState(alarm.state),
                alarm.accepted_by,
                n.doctor_id,
                alarm.arrived_at_ms is not None,
            )
            if key is EtaKey.RECORDED:
                await event(conn, alarm, ETA_EVENT, now_ms, f"member:{n.doctor_id}", str(minutes))
        return key, alarm.hub_id


async def _notification_and_alarm(conn: AsyncConnection, notification_id: str) -> tuple[Any, Any]:
    """A member's message and its alarm's row, inside the caller's transaction: what an
    answer on that message is judged against."""
    n = (
        await conn.execute(sa.select(notifications).where(notifications.c.id == notification_id))
    ).one()
    return n, await alarm_row(conn, n.alarm_id)
