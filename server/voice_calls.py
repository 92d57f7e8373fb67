"""Voice calls' records (docs/voice.md): the only writer of ``voice_calls``.

The server carries signalling only: each side's SDP (non-trickle, every ICE candidate in
it) and the call's state. Media goes peer to peer or through the centre's TURN relay.
A hub has at most one call that is not ended; an offer from the hub replaces an older one.
Triage reads these records (state, answered_by, times) to drive the alarm. A call answered
(by an operator, or by the home an operator called) is an operator's answer to its alarm:
the same transaction sets ``alarms.operator_at_ms`` unless an earlier answer set it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from carehub import api_contract as api
from carehub.api_contract import CallDirection, CallEndReason, CallState
from server.dispatch.rows import mark_operator_answer
from server.schema import alarms, voice_calls

ENDED = CallState.ENDED.value


class CallRefused(Exception):
    """The call cannot do what was asked; the message says why (409 / 404)."""

    def __init__(self, message: str, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


@dataclass(frozen=True)
class CallRecord:
    id: str
    hub_id: str
    alarm_id: str
    hub_alarm_id: str
    direction: CallDirection
    state: CallState
    end_reason: CallEndReason | None
    started_by: str | None
    answered_by: str | None
    offer_sdp: str
    answer_sdp: str | None
    is_test: bool
    created_at_ms: int
    answered_at_ms: int | None
    ended_at_ms: int | None

    @property
    def duration_s(self) -> float | None:
        """Talk time, answer to end (None while not both)."""
        if self.answered_at_ms is None or self.ended_at_ms is None:
            return None
        return (self.ended_at_ms - self.answered_at_ms) / 1000

    def hub_view(self) -> api.CallView:
        """The call as its hub sees it: the console's SDP, when there is one."""
        sdp = self.offer_sdp if self.direction is CallDirection.TO_HOME else self.answer_sdp
        return api.CallView(
            call_id=self.id,
            alarm_id=self.hub_alarm_id,
            direction=self.direction,
            state=self.state,
            end_reason=self.end_reason,
            sdp=sdp if self.state is not CallState.ENDED else None,
            test=self.is_test,
        )


def _record(row: sa.Row) -> CallRecord:  # type: ignore[type-arg]
    m = row._mapping
    return CallRecord(
        id=m["id"],
        hub_id=m["hub_id"],
        alarm_id=m["alarm_id"],
        hub_alarm_id=m["hub_alarm_id"],
        direction=CallDirection(m["direction"]),
        state=CallState(m["state"]),
        end_reason=CallEndReason(m["end_reason"]) if m["end_reason"] else None,
        started_by=m["started_by"],
        answered_by=m["answered_by"],
        offer_sdp=m["offer_sdp"],
        answer_sdp=m["answer_sdp"],
        is_test=bool(m["is_test"]),
        created_at_ms=int(m["created_at_ms"]),
        answered_at_ms=m["answered_at_ms"],
        ended_at_ms=m["ended_at_ms"],
    )


class CallStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def call(self, call_id: str) -> CallRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(voice_calls.select().where(voice_calls.c.id == call_id))
            ).first()
        return _record(row) if row else None

    @staticmethod
    async def _end_running(conn: AsyncConnection, hub_id: str, now_ms: int) -> None:
        await conn.execute(
            sa.update(voice_calls)
            .where(voice_calls.c.hub_id == hub_id, voice_calls.c.state != ENDED)
            .values(state=ENDED, end_reason=CallEndReason.REPLACED.value, ended_at_ms=now_ms)
        )

    async def offer_from_hub(
        self, hub_id: str, alarm_id: str, offer: api.CallOffer, now_ms: int
    ) -> bool:
        """Store the hub's offer for its alarm (server id `alarm_id`); False when this very
        offer was stored before (a retry). A call the hub had running is replaced."""
        async with self.engine.begin() as conn:
            old = (
                await conn.execute(
                    sa.select(voice_calls.c.hub_id).where(voice_calls.c.id == offer.call_id)
                )
            ).first()
            if old is not None:
                if old.hub_id != hub_id:
                    raise CallRefused("call id already used: make a new one")
                return False
            await self._end_running(conn, hub_id, now_ms)
            await conn.execute(
                voice_calls.insert().values(
                    id=offer.call_id,
                    hub_id=hub_id,
                    alarm_id=alarm_id,
                    hub_alarm_id=offer.alarm_id,
                    direction=CallDirection.FROM_HOME.value,
                    state=CallState.RINGING.value,
                    offer_sdp=offer.sdp,
                    is_test=offer.test,
                    created_at_ms=now_ms,
                )
            )
        return True

    async def call_home(self, alarm_id: str, username: str, sdp: str, now_ms: int) -> CallRecord:
        """An operator calls the home of an open alarm; refused while the hub is in a call."""
        async with self.engine.begin() as conn:
            alarm = (
                await conn.execute(
                    sa.select(alarms.c.hub_id, alarms.c.hub_alarm_id, alarms.c.state).where(
                        alarms.c.id == alarm_id
                    )
                )
            ).first()
            if alarm is None:
                raise CallRefused("no such alarm", not_found=True)
            if alarm.state in ("resolved", "cancelled"):
                raise CallRefused(f"this alarm is {alarm.state}: the home cannot be called")
            running = (
                await conn.execute(
                    sa.select(voice_calls.c.id).where(
                        voice_calls.c.hub_id == alarm.hub_id, voice_calls.c.state != ENDED
                    )
                )
            ).first()
            if running is not None:
                raise CallRefused("the home is in a call already: hang it up first")
            call_id = uuid.uuid4().hex
            await conn.execute(
                voice_calls.insert().values(
                    id=call_id,
                    hub_id=alarm.hub_id,
                    alarm_id=alarm_id,
                    hub_alarm_id=alarm.hub_alarm_id,
                    direction=CallDirection.TO_HOME.value,
                    state=CallState.RINGING.value,
                    started_by=username,
                    offer_sdp=sdp,
                    created_at_ms=now_ms,
                )
            )
        record = await self.call(call_id)
        assert record is not None
        return record

    async def _answer(
        self,
        call_id: str,
        direction: CallDirection,
        sdp: str,
        who: str | None,
        now_ms: int,
        hub_id: str | None = None,
    ) -> CallRecord:
        where = [
            voice_calls.c.id == call_id,
            voice_calls.c.direction == direction.value,
            voice_calls.c.state == CallState.RINGING.value,
        ]
        if hub_id is not None:
            where.append(voice_calls.c.hub_id == hub_id)
        values: dict[str, object] = {
            "state": CallState.ANSWERED.value,
            "answer_sdp": sdp,
            "answered_at_ms": now_ms,
        }
        if who is not None:
            values["answered_by"] = who
        async with self.engine.begin() as conn:
            done = await conn.execute(sa.update(voice_calls).where(*where).values(**values))
            if done.rowcount:  # the operator and the home talk: the alarm is answered
                alarm_id = (
                    await conn.execute(
                        sa.select(voice_calls.c.alarm_id).where(voice_calls.c.id == call_id)
                    )
                ).scalar_one()
                await conn.execute(mark_operator_answer(alarm_id, now_ms))
        record = await self.call(call_id)
        if record is None or (hub_id is not None and record.hub_id != hub_id):
            raise CallRefused("no such call", not_found=True)
        if done.rowcount == 0:
            by = f" by {record.answered_by}" if record.answered_by else ""
            raise CallRefused(f"this call is {record.state.value}{by}")
        return record

    async def answer_from_console(
        self, call_id: str, username: str, sdp: str, now_ms: int
    ) -> CallRecord:
        """The first operator to answer a ringing call from a home takes it."""
        return await self._answer(call_id, CallDirection.FROM_HOME, sdp, username, now_ms)

    async def answer_from_hub(self, hub_id: str, call_id: str, sdp: str, now_ms: int) -> CallRecord:
        """The hub answered an operator's call (it answers by itself); the caller talks."""
        record = await self._answer(call_id, CallDirection.TO_HOME, sdp, None, now_ms, hub_id)
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(voice_calls)
                .where(voice_calls.c.id == call_id)
                .values(answered_by=voice_calls.c.started_by)
            )
        return record

    async def hang_up(
        self, call_id: str, reason: CallEndReason, now_ms: int, hub_id: str | None = None
    ) -> CallRecord:
        """End the call (a repeat changes nothing: the first reason stays)."""
        where = [voice_calls.c.id == call_id, voice_calls.c.state != ENDED]
        if hub_id is not None:
            where.append(voice_calls.c.hub_id == hub_id)
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(voice_calls)
                .where(*where)
                .values(state=ENDED, end_reason=reason.value, ended_at_ms=now_ms)
            )
        record = await self.call(call_id)
        if record is None or (hub_id is not None and record.hub_id != hub_id):
            raise CallRefused("no such call", not_found=True)
        return record

    async def end_hub_calls(self, hub_id: str, reason: CallEndReason, now_ms: int) -> int:
        """End every call of this hub not ended yet (it went offline); how many."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                sa.update(voice_calls)
                .where(voice_calls.c.hub_id == hub_id, voice_calls.c.state != ENDED)
                .values(state=ENDED, end_reason=reason.value, ended_at_ms=now_ms)
            )
        return int(done.rowcount or 0)

    async def hub_calls(self, hub_id: str, now_ms: int) -> list[api.CallView]:
        """The hub's calls not ended, and those ended within `CALL_ENDED_SHOWN_S`."""
        since = now_ms - api.CALL_ENDED_SHOWN_S * 1000
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                voice_calls.select()
                .where(
                    voice_calls.c.hub_id == hub_id,
                    sa.or_(voice_calls.c.state != ENDED, voice_calls.c.ended_at_ms >= since),
                )
                .order_by(voice_calls.c.created_at_ms)
            )
            return [_record(r).hub_view() for r in rows]

    async def latest_of_alarm(self, alarm_id: str) -> CallRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    voice_calls.select()
                    .where(voice_calls.c.alarm_id == alarm_id)
                    .order_by(voice_calls.c.created_at_ms.desc())
                    .limit(1)
                )
            ).first()
        return _record(row) if row else None

    async def ringing_alarms(self) -> set[str]:
        """Alarms whose home is calling the centre right now (the queue rings)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(voice_calls.c.alarm_id).where(
                    voice_calls.c.state == CallState.RINGING.value,
                    voice_calls.c.direction == CallDirection.FROM_HOME.value,
                )
            )
            return {r.alarm_id for r in rows}
