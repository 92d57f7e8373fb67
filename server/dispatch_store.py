"""The escalation engine's SQL: ladders (one row per alarm, with the due time of its next
step), the notifications they create, and responders' answers.

Exactly-once steps across processes: a worker claims due ladders with
``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL; on SQLite one process, one writer), takes
the step, inserts its notifications and moves the ladder on in the same transaction. A
notification is unique per (alarm, member, purpose), so a step can never be sent twice,
and a crash before the commit leaves the ladder due, so it is never skipped. Messages are
claimed for sending with a lease: a process killed mid-send leaves them to be claimed again
when the lease runs out (at-least-once SMS, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from carehub.alarm_lifecycle import FINAL_STATES, AlarmKind, AlarmState, Severity, merge
from server.accept_link import LINK_TTL_MS, link_token, token_hash
from server.care_map import CareMap, Member, TeamView
from server.db import dialect_insert
from server.directory import Doctor, RosterEntry, Team, roster_dutyroster
from server.escalation import (
    SERVICE_CIRCLE_S,
    EscalationPolicy,
    Exhausted,
    GeoPoint,
    Notify,
    Step,
    Target,
    move_on_early,
    self_test_ladder,
    take_step,
)
from server.reply_codes import REPLY_CODE_HOLD_MS, CodeUse, next_code
from server.schema import (
    alarm_events,
    alarms,
    directory_version,
    doctors,
    elders,
    emergency_contacts,
    escalation_policies,
    escalations,
    notifications,
    teams,
)
from server.send_policy import Sent
from server.sms_text import (
    AlarmSummary,
    compose_alarm,
    compose_arrival_overdue,
    compose_cancelled,
    compose_closed_by_operator,
    compose_contact_notice,
    compose_taken,
)
from server.store import POLICY_PENDING, ServerStore, new_ladder
from server.triage import (
    PARALLEL,
    LadderMove,
    TriageEffect,
    TriageMode,
    TriageOutcome,
    TriagePolicy,
    decide,
    first_step_due_ms,
)
from server.welfare import LADDERLESS_KIND_VALUES

SEND_LEASE_MS = 30_000
"""A message claimed for sending is claimed again after this long without a result."""
SEND_ATTEMPTS = 3
SEND_RETRY_MS = (2_000, 5_000, 10_000)
SEND_DEADLINE_MS = 60_000
"""A message not accepted by the provider within a minute has failed: the ladder moves on."""


class LadderStatus:
    RUNNING = "running"
    ACCEPTED = "accepted"  # waiting for arrival
    ARRIVED = "arrived"
    OVERDUE = "overdue"  # accepted, no arrival in the circle: with the dispatcher
    EXHAUSTED = "exhausted"  # nobody accepted after every repeat: with the dispatcher
    CLOSED = "closed"  # the alarm is resolved or cancelled


@dataclass(frozen=True)
class Message:
    """A notification ready to be sent."""

    id: str
    alarm_id: str
    hub_id: str
    member_id: str
    to_phone: str
    body: str  # may hold `sms_text.LINK`
    purpose: str
    alarm_ref: str


@dataclass(frozen=True)
class Answer:
    """The outcome of a responder's answer, for the page or the reply: `key` is a catalogue
    key (``answer.*``, `server.catalogue`) and `params` its placeholders."""

    ok: bool
    state: AlarmState | None
    key: str
    accepted_by: str | None = None
    params: dict[str, str] = field(default_factory=dict)


def alarm_ref(alarm_id: str) -> str:
    """The short reference printed in texts and used in links."""
    return alarm_id[-6:].upper()


class DispatchStore:
    def __init__(
        self,
        store: ServerStore,
        link_secret: bytes,
        send_lease_ms: int = SEND_LEASE_MS,
        reply_code_hold_ms: int = REPLY_CODE_HOLD_MS,
    ) -> None:
        self.store = store
        self.link_secret = link_secret
        self.send_lease_ms = send_lease_ms
        self.reply_code_hold_ms = reply_code_hold_ms
        self.engine = store.engine

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self.store._write() as conn:
            yield conn

    # ------------------------------------------------------------ the care map

    async def care_map_if_changed(self, known: int | None) -> tuple[int, CareMap] | None:
        """The directory's version (bumped by the database on every change, migration 0009)
        and its care map; None, after one small read, when the version is still `known`."""
        async with self.engine.connect() as conn:
            # read first: a change made while the rows are read bumps it past this value,
            # so the next check rebuilds again
            version = int(
                (await conn.execute(sa.select(directory_version.c.version))).scalar() or 0
            )
            if version == known:
                return None
            team_rows = (await conn.execute(sa.select(teams))).all()
            member_rows = (await conn.execute(sa.select(doctors))).all()
            policy_rows = (await conn.execute(sa.select(escalation_policies))).all()
        # building is pure CPU (a second for 10 000 teams): off the event loop, so requests
        # are answered meanwhile
        return version, await asyncio.to_thread(build_care_map, team_rows, member_rows, policy_rows)

    # ------------------------------------------------------------ ladders

    async def start_ladders(self, now_ms: int) -> int:
        """Give every received alarm without a ladder one, due now; returns how many. A
        sweep for alarms stored before ladders started in the alarm's own commit
        (`server.store.new_ladder`) or by an older server process sharing the database."""
        async with self.engine.connect() as conn:
            if not (await self._ladderless(conn)).first():
                return 0  # the usual case, answered without the write lock
        async with self._write() as conn:
            rows = (await self._ladderless(conn)).all()
            for r in rows:
                await conn.execute(self._insert_ignore(escalations, new_ladder(r.id, now_ms)))
        return len(rows)

    @staticmethod
    async def _ladderless(conn: AsyncConnection) -> Any:
        return await conn.execute(
            sa.select(alarms.c.id)
            .outerjoin(escalations, escalations.c.alarm_id == alarms.c.id)
            .where(
                escalations.c.alarm_id.is_(None),
                alarms.c.state.in_([AlarmState.RECEIVED.value, AlarmState.DISPATCHED.value]),
                alarms.c.kind.not_in(LADDERLESS_KIND_VALUES),  # welfare checks: no ladder
            )
            .limit(500)
        )

    def _insert_ignore(self, table: sa.Table, values: dict[str, Any]) -> Any:
        return dialect_insert(self.engine, table).values(**values).on_conflict_do_nothing()

    async def advance_due(self, now_ms: int, care: CareMap, limit: int = 50) -> list[Message]:
        """Take the next step of every ladder that is due (claimed, so each step is taken by
        one process once); returns the messages to send now."""
        out: list[Message] = []
        due_ms = await self.next_due_ms()
        if due_ms is None or due_ms > now_ms:
            return out  # nothing due: no write transaction (no wait for SQLite's writer)
        async with self._write() as conn:
            due = (
                await conn.execute(
                    sa.select(escalations)
                    .where(escalations.c.due_at_ms <= now_ms)
                    .order_by(escalations.c.due_at_ms)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for ladder in due:
                out += await self._advance(conn, ladder, now_ms, care)
        return out

    async def next_due_ms(self) -> int | None:
        async with self.engine.connect() as conn:
            value = (await conn.execute(sa.select(sa.func.min(escalations.c.due_at_ms)))).scalar()
        return int(value) if value is not None else None

    async def _advance(
        self, conn: AsyncConnection, ladder: Any, now_ms: int, care: CareMap
    ) -> list[Message]:
        alarm = await _alarm_row(conn, ladder.alarm_id)
        state = AlarmState(alarm.state)
        ref = alarm_ref(alarm.id)
        if state in FINAL_STATES:
            msgs = []
            if state is AlarmState.CANCELLED:
                msgs = await self._tell_notified(
                    conn,
                    alarm,
                    "cancelled",
                    lambda m: compose_cancelled(ref, m.language),
                    care,
                    now_ms,
                )
                if await self._went_out(conn, alarm.id):
                    msgs += await self._tell_contacts(conn, alarm, "cancelled", None, now_ms)
            await self._set_ladder(conn, alarm.id, LadderStatus.CLOSED, None, now_ms)
            return msgs
        if ladder.status in (LadderStatus.ACCEPTED,):
            responder = care.members.get(alarm.accepted_by or "")
            name = responder.name if responder else (alarm.accepted_by or "?")
            msgs = await self._notify_dispatchers(
                conn,
                alarm,
                "arrival-overdue",
                lambda m: compose_arrival_overdue(ref, name, m.language),
                care,
                now_ms,
            )
            await self._event(conn, alarm, "arrival_overdue", now_ms, "system", name)
            await self._set_ladder(conn, alarm.id, LadderStatus.OVERDUE, None, now_ms)
            return msgs
        if ladder.status != LadderStatus.RUNNING:
            await self._set_ladder(conn, alarm.id, ladder.status, None, now_ms)
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
        excluded = await self._excluded(conn, alarm.id)
        elder = GeoPoint(alarm.lat, alarm.lon) if alarm.lat is not None else None
        candidates = care.candidates(alarm.team_id, elder, excluded, now_ms)
        decision = take_step(policy, ladder.position, candidates, now_ms)
        if isinstance(decision, Exhausted):
            await self._event(conn, alarm, "ladder_exhausted", now_ms, "system", policy.id)
            await self._set_ladder(conn, alarm.id, LadderStatus.EXHAUSTED, None, now_ms, chosen)
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
            await self._event(
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
            await self._event(
                conn, alarm, "operator_first", now_ms, "system", f"{triage.operator_first_s:g} s"
            )
        await self._set_ladder(conn, alarm.id, LadderStatus.RUNNING, due, now_ms)
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
        msgs = await self._tell_notified(
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
        await self._event(conn, alarm, "severity_raised", now_ms, "system", policy_id)
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
            code = await self._free_reply_code(conn, member_id, now_ms)
            body = compose_alarm(summary, member.language, code, test=alarm.is_test)
            msg = await self._new_message(
                conn, alarm, member, purpose, body, now_ms, step.position, code, link=True
            )
            if msg is not None:
                msgs.append(msg)
        detail = ", ".join(recipients) + (" + dispatcher" if step.dispatcher else "")
        await self._event(
            conn, alarm, "step", now_ms, "system", f"step {step.position}: {detail or 'nobody'}"
        )
        await conn.execute(
            escalations.update()
            .where(escalations.c.alarm_id == alarm.id)
            .values(
                position=step.position + 1,
                due_at_ms=step.due_ms,
                members=list(step.members),
                dispatcher=step.dispatcher,
                updated_at_ms=now_ms,
                **({"policy_id": policy_id} if policy_id else {}),
            )
        )
        return msgs

    async def assign(
        self, alarm_id: str, member_id: str, care: CareMap, now_ms: int, actor: str
    ) -> list[Message]:
        """The console sends the alarm (with its accept link) to one member, outside the
        ladder's steps; the caller sends the returned messages (`Escalator.send`)."""
        async with self._write() as conn:
            alarm = await _alarm_row(conn, alarm_id)
            member = care.members[member_id]
            summary = AlarmSummary(
                alarm_ref(alarm.id),
                alarm.name,
                alarm.short_address,
                AlarmKind(alarm.kind),
                Severity(alarm.severity),
            )
            code = await self._free_reply_code(conn, member_id, now_ms)
            body = compose_alarm(summary, member.language, code, test=alarm.is_test)
            msg = await self._new_message(
                conn, alarm, member, f"assigned-{now_ms}", body, now_ms, None, code, link=True
            )
            await self._event(conn, alarm, "assigned", now_ms, actor, f"to {member.name}")
        return [msg] if msg is not None else []

    async def _new_message(
        self,
        conn: AsyncConnection,
        alarm: Any,
        member: Member,
        purpose: str,
        body: str,
        now_ms: int,
        position: int | None = None,
        reply_code: int | None = None,
        link: bool = False,
        to_phone: str | None = None,
    ) -> Message | None:
        """Insert one notification (queued, claimed by this process for sending now);
        None when this (alarm, member, purpose) was already notified."""
        nid = uuid.uuid4().hex
        values = {
            "id": nid,
            "alarm_id": alarm.id,
            "doctor_id": member.id,
            "purpose": purpose[:24],
            "status": "sending",
            "body": body[:400],
            "attempts": 1,
            "created_at_ms": now_ms,
            "to_phone": to_phone or member.phone,
            "position": position,
            "send_deadline_ms": now_ms + SEND_DEADLINE_MS,
            "next_attempt_at_ms": now_ms + self.send_lease_ms,
            "link_token_hash": token_hash(link_token(self.link_secret, nid)) if link else None,
            "link_expires_at_ms": now_ms + LINK_TTL_MS if link else None,
            "reply_code": reply_code,
        }
        result = await conn.execute(self._insert_ignore(notifications, values))
        if result.rowcount == 0:
            return None
        return Message(
            nid,
            alarm.id,
            alarm.hub_id,
            member.id,
            to_phone or member.phone,
            body,
            purpose,
            alarm_ref(alarm.id),
        )

    async def _free_reply_code(self, conn: AsyncConnection, member_id: str, now_ms: int) -> int:
        rows = (
            await conn.execute(
                sa.select(
                    notifications.c.reply_code,
                    alarms.c.state,
                    notifications.c.created_at_ms,
                    alarms.c.updated_at_ms,
                )
                .join(alarms, alarms.c.id == notifications.c.alarm_id)
                .where(
                    notifications.c.doctor_id == member_id,
                    notifications.c.reply_code.is_not(None),
                    _code_held(now_ms, self.reply_code_hold_ms),
                )
            )
        ).all()
        uses = (
            CodeUse(
                int(r.reply_code),
                AlarmState(r.state) not in FINAL_STATES,
                max(int(r.created_at_ms), int(r.updated_at_ms)),
            )
            for r in rows
        )
        return next_code(uses, now_ms, self.reply_code_hold_ms)

    async def _excluded(self, conn: AsyncConnection, alarm_id: str) -> set[str]:
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

    async def _tell_notified(
        self,
        conn: AsyncConnection,
        alarm: Any,
        purpose: str,
        text: Any,
        care: CareMap,
        now_ms: int,
    ) -> list[Message]:
        """One message to every member who was sent this alarm (each once)."""
        told = (
            await conn.execute(
                sa.select(notifications.c.doctor_id)
                .where(
                    notifications.c.alarm_id == alarm.id,
                    notifications.c.purpose.like("step-%"),
                    notifications.c.status.in_(["sent", "delivered", "sending"]),
                )
                .distinct()
            )
        ).scalars()
        others = [m for m in sorted(set(told)) if m in care.members and m != alarm.accepted_by]
        return await self._message_each(conn, alarm, others, purpose, text, care, now_ms)

    async def _notify_dispatchers(
        self,
        conn: AsyncConnection,
        alarm: Any,
        purpose: str,
        text: Any,
        care: CareMap,
        now_ms: int,
    ) -> list[Message]:
        dispatchers = care.dispatchers_on_duty(now_ms)
        return await self._message_each(conn, alarm, dispatchers, purpose, text, care, now_ms)

    async def _message_each(
        self,
        conn: AsyncConnection,
        alarm: Any,
        member_ids: list[str],
        purpose: str,
        text: Any,
        care: CareMap,
        now_ms: int,
    ) -> list[Message]:
        """One notice per member (`text(member)` in their language), each at most once."""
        msgs = []
        for member_id in member_ids:
            member = care.members[member_id]
            msg = await self._new_message(conn, alarm, member, purpose, text(member), now_ms)
            if msg is not None:
                msgs.append(msg)
        return msgs

    async def _tell_contacts(
        self,
        conn: AsyncConnection,
        alarm: Any,
        event: str,
        responder: str | None,
        now_ms: int,
    ) -> list[Message]:
        """Emergency contacts who asked to hear of `event`."""
        contacts = (
            await conn.execute(
                sa.select(emergency_contacts).where(emergency_contacts.c.elder_id == alarm.elder_id)
            )
        ).all()
        msgs = []
        for c in contacts:
            if event not in (c.notify_on or []):
                continue
            body = compose_contact_notice(alarm.name, event, responder, c.language)
            nid = uuid.uuid4().hex
            values = {
                "id": nid,
                "alarm_id": alarm.id,
                "doctor_id": None,
                "contact_id": c.id,
                "purpose": event,
                "status": "sending",
                "body": body[:400],
                "attempts": 1,
                "created_at_ms": now_ms,
                "to_phone": c.phone,
                "send_deadline_ms": now_ms + SEND_DEADLINE_MS,
                "next_attempt_at_ms": now_ms + self.send_lease_ms,
            }
            result = await conn.execute(self._insert_ignore(notifications, values))
            if result.rowcount:
                msgs.append(
                    Message(
                        nid, alarm.id, alarm.hub_id, "", c.phone, body, event, alarm_ref(alarm.id)
                    )
                )
        return msgs

    async def _set_ladder(
        self,
        conn: AsyncConnection,
        alarm_id: str,
        status: str,
        due_ms: int | None,
        now_ms: int,
        policy_id: str | None = None,
    ) -> None:
        await conn.execute(
            escalations.update()
            .where(escalations.c.alarm_id == alarm_id)
            .values(
                status=status,
                due_at_ms=due_ms,
                updated_at_ms=now_ms,
                **({"policy_id": policy_id} if policy_id else {}),
            )
        )

    async def _event(
        self,
        conn: AsyncConnection,
        alarm: Any,
        kind: str,
        now_ms: int,
        actor: str,
        detail: str = "",
        state: AlarmState | None = None,
    ) -> None:
        await conn.execute(
            alarm_events.insert().values(
                alarm_id=alarm.id,
                hub_id=alarm.hub_id,
                kind=kind,
                state=state.value if state else None,
                at_ms=now_ms,
                detail=detail[:400],
                actor=actor[:80],
            )
        )

    # ------------------------------------------------------------ operator triage

    async def triage(
        self, alarm_id: str, outcome: TriageOutcome, care: CareMap, now_ms: int, actor: str
    ) -> tuple[TriageEffect, list[Message]]:
        """Apply an operator's outcome (`server.triage.decide`) in one transaction: record
        it (who, when, and the operator's answer time), move the alarm, and start or close
        its ladder. Raises `TriageRefused` for a closed alarm. The caller sends the returned
        messages (`Escalator.send`: closing tells whoever was texted) and kicks the
        escalator (a ladder started now)."""
        async with self._write() as conn:
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
            alarm = await _alarm_row(conn, alarm_id)
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
            await self._event(conn, alarm, "triage", now_ms, actor, outcome.value)
            msgs: list[Message] = []
            if effect.state is not None:
                await self._event(conn, alarm, "state", now_ms, actor, outcome.value, effect.state)
            if effect.ladder is LadderMove.CLOSE:
                msgs = await self._closed_by_operator(conn, alarm, outcome, effect, care, now_ms)
                await self._set_ladder(conn, alarm_id, LadderStatus.CLOSED, None, now_ms)
            elif effect.ladder is LadderMove.START_NOW:
                await self._set_ladder(conn, alarm_id, LadderStatus.RUNNING, now_ms, now_ms)
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
        msgs = await self._tell_notified(
            conn,
            _AlarmRow(alarm, None),
            "closed",
            lambda m: compose_closed_by_operator(ref, accidental, m.language),
            care,
            now_ms,
        )
        if effect.state is not None and await self._went_out(conn, alarm.id):
            msgs += await self._tell_contacts(conn, alarm, effect.state.value, None, now_ms)
        return msgs

    @staticmethod
    async def _went_out(conn: AsyncConnection, alarm_id: str) -> bool:
        """Whether a ladder step texted anyone about the alarm: a family told it is over
        must have been able to hear of it (an operator-first alarm closed in its window,
        or cancelled by the elder then, closes without a single SMS)."""
        sent = await conn.execute(
            sa.select(notifications.c.id)
            .where(notifications.c.alarm_id == alarm_id, notifications.c.purpose.like("step-%"))
            .limit(1)
        )
        return sent.first() is not None

    async def operator_answered(self, alarm_id: str, at_ms: int) -> None:
        """An operator answered or took the alarm (a call answered, an acknowledgement):
        the first such time is the alarm's time to answer (`alarms.operator_at_ms`, read by
        `server.kpi`); later ones change nothing."""
        async with self._write() as conn:
            await conn.execute(mark_operator_answer(alarm_id, at_ms))

    async def kick(self, alarm_id: str, now_ms: int) -> None:
        """Make the alarm's ladder due now: its state changed (the elder cancelled), so the
        next pass tells whoever needs to know."""
        async with self._write() as conn:
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

    # ------------------------------------------------------------ sending

    async def claim_unsent(self, now_ms: int, limit: int = 50) -> list[Message]:
        """Messages whose send is due or whose lease ran out (their process died)."""
        unsent = notifications.c.status.in_(["queued", "sending"]) & (
            notifications.c.next_attempt_at_ms <= now_ms
        )
        async with self.engine.connect() as conn:
            if not (
                await conn.execute(sa.select(notifications.c.id).where(unsent).limit(1))
            ).first():
                return []  # the usual case, answered without the write lock
        async with self._write() as conn:
            rows = (
                await conn.execute(
                    sa.select(notifications, alarms.c.hub_id)
                    .join(alarms, alarms.c.id == notifications.c.alarm_id)
                    .where(unsent)
                    .order_by(notifications.c.next_attempt_at_ms)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=notifications)
                )
            ).all()
            for r in rows:
                await conn.execute(
                    notifications.update()
                    .where(notifications.c.id == r.id)
                    .values(
                        status="sending",
                        attempts=notifications.c.attempts + 1,
                        next_attempt_at_ms=now_ms + self.send_lease_ms,
                    )
                )
        return [
            Message(
                r.id,
                r.alarm_id,
                r.hub_id,
                r.doctor_id or "",
                r.to_phone or "",
                r.body,
                r.purpose,
                alarm_ref(r.alarm_id),
            )
            for r in rows
        ]

    async def recent_texts(self, numbers: set[str], since_ms: int) -> list[Sent]:
        """What each number was sent since `since_ms` (for the per-number send policy)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        notifications.c.to_phone,
                        notifications.c.body,
                        notifications.c.sent_at_ms,
                        notifications.c.provider_ref,
                    ).where(
                        notifications.c.to_phone.in_(sorted(numbers)),
                        notifications.c.sent_at_ms >= since_ms,
                    )
                )
            ).all()
        # texts merged into one message share its provider reference: one message each
        seen: dict[str, Sent] = {}
        for r in rows:
            key = r.provider_ref or f"{r.to_phone}|{r.sent_at_ms}|{r.body}"
            seen.setdefault(key, Sent(r.to_phone, r.body, int(r.sent_at_ms)))
        return list(seen.values())

    async def hold(self, ids: Sequence[str], until_ms: int) -> None:
        """Messages to a number over its limit wait, queued, until `until_ms`."""
        if not ids:
            return
        async with self._write() as conn:
            await conn.execute(
                notifications.update()
                .where(notifications.c.id.in_(list(ids)))
                .values(
                    status="queued",
                    next_attempt_at_ms=until_ms,
                    attempts=notifications.c.attempts - 1,
                    send_deadline_ms=until_ms + SEND_DEADLINE_MS,
                )
            )

    async def record_results(
        self, results: Sequence[tuple[Message, str | None, str]], now_ms: int
    ) -> list[str]:
        """Record each message's outcome (provider ref, or None and the error); returns the
        hub ids whose alarms changed state."""
        changed: list[str] = []
        async with self._write() as conn:
            for msg, ref, error in results:
                if ref is not None:
                    if await self._sent(conn, msg, ref, now_ms):
                        changed.append(msg.hub_id)
                else:
                    await self._failed(conn, msg, error, now_ms)
        return changed

    async def _sent(self, conn: AsyncConnection, msg: Message, ref: str, now_ms: int) -> bool:
        await conn.execute(
            notifications.update()
            .where(notifications.c.id == msg.id)
            .values(
                # a delivery callback may have come first: its outcome stands
                status=sa.case(
                    (notifications.c.status.in_(_DELIVERY_OUTCOMES), notifications.c.status),
                    else_="sent",
                ),
                provider_ref=ref[:64],
                sent_at_ms=now_ms,
                next_attempt_at_ms=None,
            )
        )
        if not msg.purpose.startswith("step-"):
            return False
        row = (
            await conn.execute(
                sa.select(alarms.c.state, alarms.c.first_notified_at_ms, alarms.c.doctor_id).where(
                    alarms.c.id == msg.alarm_id
                )
            )
        ).one()
        state = AlarmState(row.state)
        new = merge(state, AlarmState.DISPATCHED)
        await conn.execute(
            alarms.update()
            .where(alarms.c.id == msg.alarm_id)
            .values(
                state=new.value,
                updated_at_ms=now_ms,
                first_notified_at_ms=row.first_notified_at_ms or now_ms,
                doctor_id=row.doctor_id or msg.member_id,
            )
        )
        event = {"alarm_id": msg.alarm_id, "hub_id": msg.hub_id, "at_ms": now_ms, "actor": "system"}
        events = [
            {**event, "kind": "sms_sent", "state": None, "detail": f"{msg.member_id}: {ref}"[:400]}
        ]
        if new != state:
            events.append({**event, "kind": "state", "state": new.value, "detail": ""})
        await conn.execute(alarm_events.insert().values(events))  # one statement, in order
        return new != state

    async def _failed(self, conn: AsyncConnection, msg: Message, error: str, now_ms: int) -> None:
        row = (
            await conn.execute(
                sa.select(notifications.c.attempts, notifications.c.send_deadline_ms).where(
                    notifications.c.id == msg.id
                )
            )
        ).one()
        attempt = int(row.attempts)
        retry_at = now_ms + SEND_RETRY_MS[min(attempt - 1, len(SEND_RETRY_MS) - 1)]
        give_up = attempt >= SEND_ATTEMPTS or retry_at > (row.send_deadline_ms or now_ms)
        await conn.execute(
            notifications.update()
            .where(notifications.c.id == msg.id)
            .values(
                status="failed" if give_up else "queued",
                provider_ref=error[:64],
                next_attempt_at_ms=None if give_up else retry_at,
            )
        )
        if give_up and msg.purpose.startswith("step-"):
            await self._member_out(conn, msg.alarm_id, now_ms)

    async def _member_out(self, conn: AsyncConnection, alarm_id: str, now_ms: int) -> None:
        """A member of the current step declined or cannot be reached: when the whole step
        is out, the next step is due now."""
        ladder = (
            await conn.execute(sa.select(escalations).where(escalations.c.alarm_id == alarm_id))
        ).first()
        if ladder is None or ladder.status != LadderStatus.RUNNING:
            return
        if move_on_early(
            ladder.members, frozenset(await self._excluded(conn, alarm_id)), ladder.dispatcher
        ):
            await conn.execute(
                escalations.update()
                .where(escalations.c.alarm_id == alarm_id)
                .values(due_at_ms=now_ms, updated_at_ms=now_ms)
            )

    # ------------------------------------------------------------ answers

    async def answer(
        self, notification_id: str, action: str, now_ms: int, via: str, care: CareMap
    ) -> tuple[Answer, list[Message]]:
        """A responder's accept / decline / arrived, by link, reply code or console."""
        async with self._write() as conn:
            n = (
                await conn.execute(
                    sa.select(notifications).where(notifications.c.id == notification_id)
                )
            ).one()
            alarm = await _alarm_row(conn, n.alarm_id)
            member = care.members.get(n.doctor_id)
            name = member.name if member else n.doctor_id
            state = AlarmState(alarm.state)
            actor = f"member:{n.doctor_id}"
            if state in FINAL_STATES:
                return Answer(False, state, f"answer.closed.{state.value}"), []
            if action == "accept":
                if alarm.accepted_by and alarm.accepted_by != n.doctor_id:
                    taken_by = care.members.get(alarm.accepted_by)
                    who = taken_by.name if taken_by else alarm.accepted_by
                    taken = Answer(False, state, "answer.taken", alarm.accepted_by, {"who": who})
                    return taken, []
                if alarm.accepted_by == n.doctor_id:
                    return Answer(True, state, "answer.yours", n.doctor_id), []
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
                await self._event(conn, alarm, "state", now_ms, actor, f"accepted via {via}", new)
                await self._set_ladder(
                    conn,
                    alarm.id,
                    LadderStatus.ACCEPTED,
                    now_ms + int(SERVICE_CIRCLE_S * 1000),
                    now_ms,
                )
                ref = alarm_ref(alarm.id)
                accepted = _AlarmRow(alarm, n.doctor_id)
                msgs = await self._tell_notified(
                    conn,
                    accepted,
                    "taken",
                    lambda m: compose_taken(ref, name, m.language),
                    care,
                    now_ms,
                )
                msgs += await self._tell_contacts(conn, accepted, "accepted", name, now_ms)
                return Answer(True, new, "answer.accepted", n.doctor_id), msgs
            if action == "decline":
                if alarm.accepted_by == n.doctor_id:
                    return Answer(False, state, "answer.cannot_decline"), []
                await conn.execute(
                    notifications.update()
                    .where(notifications.c.id == n.id)
                    .values(response="declined")
                )
                await self._event(conn, alarm, "declined", now_ms, actor, f"via {via}")
                await self._member_out(conn, alarm.id, now_ms)
                return Answer(True, state, "answer.declined"), []
            if action == "arrived":
                if alarm.accepted_by != n.doctor_id:
                    return Answer(False, state, "answer.not_yours"), []
                if alarm.arrived_at_ms is None:
                    await conn.execute(
                        alarms.update()
                        .where(alarms.c.id == alarm.id)
                        .values(arrived_at_ms=now_ms, updated_at_ms=now_ms)
                    )
                    await self._event(conn, alarm, "arrived", now_ms, actor, f"via {via}")
                    await self._set_ladder(conn, alarm.id, LadderStatus.ARRIVED, None, now_ms)
                    msgs = await self._tell_contacts(
                        conn, _AlarmRow(alarm, n.doctor_id), "arrived", name, now_ms
                    )
                    return Answer(True, state, "answer.arrived", n.doctor_id), msgs
                return Answer(True, state, "answer.arrived_before", n.doctor_id), []
            raise ValueError(f"unknown action {action!r}")


def mark_operator_answer(alarm_id: str, at_ms: int) -> sa.Update:
    """The statement recording an operator's first answer (`DispatchStore.operator_answered`),
    for callers inside their own transaction."""
    return (
        alarms.update()
        .where(alarms.c.id == alarm_id, alarms.c.operator_at_ms.is_(None))
        .values(operator_at_ms=at_ms)
    )


def build_care_map(
    team_rows: Sequence[Any], member_rows: Sequence[Any], policy_rows: Sequence[Any]
) -> CareMap:
    """The care map from the directory's rows (teams, members, escalation policies)."""
    members = {
        r.id: Member(r.id, r.team_id, r.name, r.phone, r.language, r.role) for r in member_rows
    }
    by_team: dict[str, list[Any]] = {}
    for m in member_rows:  # grouped once: a scan per team is quadratic in the directory
        by_team.setdefault(m.team_id, []).append(m)
    team_views: dict[str, TeamView] = {}
    for t in team_rows:
        entry = Team(
            id=t.id,
            name=t.name,
            kind=t.kind,
            time_zone=t.time_zone,
            roster=RosterEntry.model_validate(t.roster) if t.roster else None,
        )
        team_members = [
            Doctor(
                id=m.id,
                team=m.team_id,
                name=m.name,
                phone=m.phone,
                on_duty=m.on_duty,
                priority=m.priority,
            )
            for m in by_team.get(t.id, [])
        ]
        base = GeoPoint(t.base_lat, t.base_lon) if t.base_lat is not None else None
        team_views[t.id] = TeamView(
            t.id,
            t.name,
            roster_dutyroster(entry, team_members),
            t.kind,
            base,
            tuple(t.backup_team_ids or ()),
            dict(t.policies or {}),
            _triage_policy(t.triage),
        )
    policies = {
        p.id: EscalationPolicy(
            p.id,
            tuple(
                Step(Target(s["target"]), float(s["wait_s"]), int(s.get("rank", 0)))
                for s in p.definition["steps"]
            ),
            int(p.definition.get("repeat", 1)),
        )
        for p in policy_rows
    }
    return CareMap(team_views, members, policies)


def _triage_policy(stored: Any) -> TriagePolicy:
    """A team's `teams.triage` (NULL: parallel). A stored value this process cannot read
    (written by a newer one) falls back to parallel: the ladder is never held by mistake."""
    if not stored:
        return PARALLEL
    try:
        return TriagePolicy(TriageMode(stored["mode"]), float(stored["operator_first_s"]))
    except (KeyError, TypeError, ValueError):
        return PARALLEL


class _AlarmRow:
    """An alarm row with its acceptor, for the notice helpers."""

    def __init__(self, row: Any, accepted_by: str | None) -> None:
        self._row = row
        self.accepted_by = accepted_by

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


# ---------------------------------------------------------------- lookups and delivery status

_DELIVERY_OUTCOMES = ("delivered", "undelivered")
"""A notification's statuses only a delivery callback sets (`record_delivery`)."""

STATUS_RANK = {
    "queued": 0,
    "accepted": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 5,
    "failed": 5,
    "read": 5,
}
"""Twilio's message statuses in the order they can happen; a callback whose status ranks
below the one recorded arrived out of order and is ignored."""


async def notification_by_token_hash(store: DispatchStore, digest: str) -> Any | None:
    async with store.engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(notifications).where(notifications.c.link_token_hash == digest)
            )
        ).first()


def _code_held(now_ms: int, hold_ms: int) -> sa.ColumnElement[bool]:
    """`server.reply_codes.holds` in SQL, for a notifications ⋈ alarms row."""
    since = now_ms - hold_ms
    return sa.or_(
        alarms.c.state.not_in([s.value for s in FINAL_STATES]),
        notifications.c.created_at_ms > since,
        alarms.c.updated_at_ms > since,
    )


async def notification_by_reply(
    store: DispatchStore, phone: str, code: int, now_ms: int
) -> Any | None:
    """The notification a member's reply code refers to: the newest that still holds the
    code (`server.reply_codes.holds`), its alarm open or recently over; None when none does.
    A late reply thus reaches the alarm it was sent for, which answers that it is over."""
    async with store.engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(notifications)
                .join(alarms, alarms.c.id == notifications.c.alarm_id)
                .join(doctors, doctors.c.id == notifications.c.doctor_id)
                .where(
                    doctors.c.phone == phone,
                    notifications.c.reply_code == code,
                    _code_held(now_ms, store.reply_code_hold_ms),
                )
                .order_by(notifications.c.created_at_ms.desc())
                .limit(1)
            )
        ).first()


async def record_delivery(
    store: DispatchStore,
    provider_ref: str,
    status: str,
    now_ms: int,
    notification_ids: Sequence[str] = (),
) -> bool:
    """A provider status callback; True when it changed something (out-of-order and
    repeated callbacks change nothing). Undelivered or failed takes the member out of the
    current step, so the next step comes at once.

    The message's notifications are found by the ids its callback URL names
    (`server.notifier.status_callback_url`): its first callbacks may come before the send's
    answer, and so `provider_ref`, has been recorded. A URL without ids (sent by an older
    server process) is matched by `provider_ref`."""
    status = status.lower()
    if status not in STATUS_RANK:
        return False
    where = (
        notifications.c.id.in_(list(notification_ids))
        if notification_ids
        else notifications.c.provider_ref == provider_ref
    )
    rank = STATUS_RANK[status]

    def moves(row: Any) -> bool:
        return STATUS_RANK.get(row.provider_status or row.status, 0) < rank

    # most callbacks change nothing (`queued` and `sent` after the send was recorded): they
    # are answered from a read, without waiting for SQLite's one writer behind the steps
    query = sa.select(notifications).where(where)
    async with store.engine.connect() as conn:
        if not any(moves(row) for row in (await conn.execute(query)).all()):
            return False
    changed = False
    async with store._write() as conn:
        for row in (await conn.execute(query)).all():
            if not moves(row):
                continue
            values: dict[str, Any] = {"provider_status": status, "status_at_ms": now_ms}
            if status in ("undelivered", "failed"):
                values["status"] = "undelivered"
            elif status == "delivered":
                values["status"] = "delivered"
            await conn.execute(
                notifications.update().where(notifications.c.id == row.id).values(**values)
            )
            if status in ("undelivered", "failed") and row.purpose.startswith("step-"):
                await store._member_out(conn, row.alarm_id, now_ms)
            changed = True
    return changed


async def _alarm_row(conn: AsyncConnection, alarm_id: str) -> Any:
    """An alarm with what messages about it need from its elder (one query for every
    step, answer and assignment)."""
    return (
        await conn.execute(
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
            .where(alarms.c.id == alarm_id)
        )
    ).one()
