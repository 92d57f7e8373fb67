"""The message queue: notifications as rows, claimed for sending with a lease, their
delivery status, and the reply code each carries.

A message is inserted queued and claimed by the process that took the step, for sending
at once; a process killed mid-send leaves it to be claimed again when the lease runs out
(at-least-once SMS). A notification is unique per (alarm, member, purpose), so nobody is
sent the same step twice. The send policy (merging, per-number limits) is
`server.send_policy`; the reply codes are `server.reply_codes`.

`MessageQueue.write` is the wing's one write transaction (on SQLite behind the server's
one writer, `server.store.ServerStore.write`).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState, can_transition
from server.accept_link import LINK_TTL_MS, link_token, token_hash
from server.care_map import CareMap, Member
from server.db import dialect_insert, none_of, one_of
from server.dispatch.delivery_memory import DeliveryMemory
from server.dispatch.rows import (
    CODE_HELD,
    alarm_ref,
    code_held_since,
    member_out,
)
from server.hot_sql import HotStatement
from server.reply_codes import REPLY_CODE_HOLD_MS, CodeUse, next_code
from server.schema import (
    alarms,
    doctors,
    emergency_contacts,
    notifications,
    sms_optouts,
)
from server.send_policy import Sent
from server.sms_text import compose_contact_notice
from server.store import INSERT_EVENT, ServerStore

SEND_LEASE_MS = 30_000
"""A message claimed for sending is claimed again after this long without a result."""
SEND_ATTEMPTS = 3
SEND_RETRY_MS = (2_000, 5_000, 10_000)
SEND_DEADLINE_MS = 60_000
"""A message not accepted by the provider within a minute has failed: the ladder moves on."""

_TO_DISPATCHED = [s.value for s in AlarmState if can_transition(s, AlarmState.DISPATCHED)]
"""The states a step's sent SMS moves to dispatched (`carehub.alarm_lifecycle.merge`)."""

_DELIVERY_OUTCOMES = ("delivered", "undelivered")
"""A notification's statuses only a delivery callback sets (`record_delivery`)."""

NOT_DELIVERED = frozenset({"undelivered", "failed"})
"""Provider statuses that take the member out of the current step (`record_delivery`)."""

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


# The hot path's statements, built once with bound parameters: building a statement costs
# more CPU than SQLite takes to run it (issue 22's lean write path).
_CODES_IN_USE = HotStatement(
    sa.select(
        notifications.c.reply_code,
        alarms.c.state,
        notifications.c.created_at_ms,
        alarms.c.updated_at_ms,
    )
    .join(alarms, alarms.c.id == notifications.c.alarm_id)
    .where(
        notifications.c.doctor_id == sa.bindparam("p_member"),
        notifications.c.reply_code.is_not(None),
        CODE_HELD,
    )
)
_BY_REPLY = (
    sa.select(notifications)
    .join(alarms, alarms.c.id == notifications.c.alarm_id)
    .join(doctors, doctors.c.id == notifications.c.doctor_id)
    .where(
        doctors.c.phone == sa.bindparam("p_phone"),
        notifications.c.reply_code == sa.bindparam("p_code"),
        CODE_HELD,
    )
    .order_by(notifications.c.created_at_ms.desc())
    .limit(1)
)
_UNSENT = one_of(notifications.c.status, ["queued", "sending"]) & (
    notifications.c.next_attempt_at_ms <= sa.bindparam("p_now")
)
_ANY_UNSENT = sa.select(notifications.c.id).where(_UNSENT).limit(1)
_RECENT_TEXTS = HotStatement(
    sa.select(
        notifications.c.to_phone,
        notifications.c.body,
        notifications.c.sent_at_ms,
        notifications.c.provider_ref,
    ).where(
        notifications.c.to_phone.in_(sa.bindparam("p_numbers", expanding=True)),
        notifications.c.sent_at_ms >= sa.bindparam("p_since"),
    )
)
_OPTED_OUT_AMONG = HotStatement(
    sa.select(sms_optouts.c.phone).where(
        sms_optouts.c.phone.in_(sa.bindparam("p_numbers", expanding=True)),
        sms_optouts.c.opted_out.is_(True),
    )
)
_RECORD_SENT = HotStatement(
    notifications.update()
    .where(notifications.c.id == sa.bindparam("p_id"))
    .values(
        # a delivery callback may have come first: its outcome stands
        status=sa.case(
            (one_of(notifications.c.status, _DELIVERY_OUTCOMES), notifications.c.status),
            else_="sent",
        ),
        provider_ref=sa.bindparam("p_ref"),
        sent_at_ms=sa.bindparam("p_now"),
        next_attempt_at_ms=None,
    )
)
_ALARM_SENT_VALUES = {
    "updated_at_ms": sa.bindparam("p_now"),
    "first_notified_at_ms": sa.func.coalesce(alarms.c.first_notified_at_ms, sa.bindparam("p_now")),
    "doctor_id": sa.func.coalesce(alarms.c.doctor_id, sa.bindparam("p_member")),
}
_ALARM_DISPATCHED = HotStatement(
    alarms.update()
    .where(alarms.c.id == sa.bindparam("p_alarm"), one_of(alarms.c.state, _TO_DISPATCHED))
    .values(state=AlarmState.DISPATCHED.value, **_ALARM_SENT_VALUES)
)
_ALARM_SENT = HotStatement(
    alarms.update().where(alarms.c.id == sa.bindparam("p_alarm")).values(**_ALARM_SENT_VALUES)
)


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


class MessageQueue:
    """The notifications table: inserting, claiming, holding and recording messages."""

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
        self.delivery = DeliveryMemory()
        """Statuses this process committed: callbacks that change nothing skip the read."""
        self._insert_ignore: dict[str, HotStatement] = {}

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """The wing's write transaction (committed on exit, rolled back on error)."""
        async with self.store.write() as conn:
            yield conn

    def insert_ignore(self, table: sa.Table) -> HotStatement:
        """An INSERT of one row (its values given with the execute) that does nothing when
        the row exists; built once per table."""
        stmt = self._insert_ignore.get(table.name)
        if stmt is None:
            stmt = HotStatement(dialect_insert(self.engine, table).on_conflict_do_nothing())
            self._insert_ignore[table.name] = stmt
        return stmt

    async def new_message(
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
        result = await self.insert_ignore(notifications).execute(conn, values)
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

    async def free_reply_code(self, conn: AsyncConnection, member_id: str, now_ms: int) -> int:
        held = code_held_since(now_ms, self.reply_code_hold_ms)
        rows = (await _CODES_IN_USE.execute(conn, {"p_member": member_id, **held})).all()
        uses = (
            CodeUse(
                int(r.reply_code),
                AlarmState(r.state) not in FINAL_STATES,
                max(int(r.created_at_ms), int(r.updated_at_ms)),
            )
            for r in rows
        )
        return next_code(uses, now_ms, self.reply_code_hold_ms)

    async def tell_notified(
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
        return await self.message_each(conn, alarm, others, purpose, text, care, now_ms)

    async def notify_dispatchers(
        self,
        conn: AsyncConnection,
        alarm: Any,
        purpose: str,
        text: Any,
        care: CareMap,
        now_ms: int,
    ) -> list[Message]:
        dispatchers = care.dispatchers_on_duty(now_ms)
        return await self.message_each(conn, alarm, dispatchers, purpose, text, care, now_ms)

    async def message_each(
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
            msg = await self.new_message(conn, alarm, member, purpose, text(member), now_ms)
            if msg is not None:
                msgs.append(msg)
        return msgs

    async def tell_contacts(
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
            result = await self.insert_ignore(notifications).execute(conn, values)
            if result.rowcount:
                msgs.append(
                    Message(
                        nid, alarm.id, alarm.hub_id, "", c.phone, body, event, alarm_ref(alarm.id)
                    )
                )
        return msgs

    async def claim_unsent(self, now_ms: int, limit: int = 50) -> list[Message]:
        """Messages whose send is due or whose lease ran out (their process died)."""
        async with self.store.read() as conn:
            if not (await conn.execute(_ANY_UNSENT, {"p_now": now_ms})).first():
                return []  # the usual case, answered without the write lock
        async with self.write() as conn:
            rows = (
                await conn.execute(
                    sa.select(notifications, alarms.c.hub_id)
                    .join(alarms, alarms.c.id == notifications.c.alarm_id)
                    .where(_UNSENT)
                    .order_by(notifications.c.next_attempt_at_ms)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=notifications),
                    {"p_now": now_ms},
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

    async def send_context(
        self, numbers: set[str], since_ms: int
    ) -> tuple[list[Sent], frozenset[str]]:
        """What a send plans with, in one read: what each number was sent since `since_ms`
        (for the per-number send policy) and which of them replied STOP
        (they are sent nothing: the provider would refuse them too)."""
        async with self.store.point_read() as conn:
            texts = await self._recent_texts(conn, numbers, since_ms)
            stored = {n[:32]: n for n in numbers}
            params = {"p_numbers": sorted(stored)}
            opted = (await _OPTED_OUT_AMONG.execute(conn, params)).scalars().all()
        return texts, frozenset(stored[p] for p in opted if p in stored)

    @staticmethod
    async def _recent_texts(conn: AsyncConnection, numbers: set[str], since_ms: int) -> list[Sent]:
        params = {"p_numbers": sorted(numbers), "p_since": since_ms}
        rows = (await _RECENT_TEXTS.execute(conn, params)).all()
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
        async with self.write() as conn:
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
        async with self.write() as conn:
            for msg, ref, error in results:
                if ref is not None:
                    if await self._sent(conn, msg, ref, now_ms):
                        changed.append(msg.hub_id)
                else:
                    await self._failed(conn, msg, error, now_ms)
        self.delivery.note((m.id for m, ref, _ in results if ref is not None), STATUS_RANK["sent"])
        return changed

    async def _sent(self, conn: AsyncConnection, msg: Message, ref: str, now_ms: int) -> bool:
        await _RECORD_SENT.execute(conn, {"p_id": msg.id, "p_ref": ref[:64], "p_now": now_ms})
        if not msg.purpose.startswith("step-"):
            return False
        # one statement where the step's first SMS dispatches the alarm (the usual case);
        # a second only when it was past that already (accepted, or dispatched before)
        params = {"p_alarm": msg.alarm_id, "p_now": now_ms, "p_member": msg.member_id}
        moved = await _ALARM_DISPATCHED.execute(conn, params)
        changed = moved.rowcount == 1
        if not changed:
            await _ALARM_SENT.execute(conn, params)
        event = {"alarm_id": msg.alarm_id, "hub_id": msg.hub_id, "at_ms": now_ms, "actor": "system"}
        events = [
            {**event, "kind": "sms_sent", "state": None, "detail": f"{msg.member_id}: {ref}"[:400]}
        ]
        if changed:
            events.append(
                {**event, "kind": "state", "state": AlarmState.DISPATCHED.value, "detail": ""}
            )
        await INSERT_EVENT.execute(conn, events)  # one hand-off, in order
        return changed

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
            await member_out(conn, msg.alarm_id, now_ms)


async def notification_by_token_hash(store: MessageQueue, digest: str) -> Any | None:
    async with store.engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(notifications).where(notifications.c.link_token_hash == digest)
            )
        ).first()


async def notification_by_reply(
    store: MessageQueue, phone: str, code: int, now_ms: int
) -> Any | None:
    """The notification a member's reply code refers to: the newest that still holds the
    code (`server.reply_codes.holds`), its alarm open or recently over; None when none does.
    A late reply thus reaches the alarm it was sent for, which answers that it is over."""
    async with store.engine.connect() as conn:
        held = code_held_since(now_ms, store.reply_code_hold_ms)
        return (await conn.execute(_BY_REPLY, {"p_phone": phone, "p_code": code, **held})).first()


async def record_delivery(
    store: MessageQueue,
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
    rank = STATUS_RANK[status]
    if store.delivery.changes_nothing(notification_ids, rank):
        return False  # `queued` and `sent` after this process recorded the send
    by_ids = bool(notification_ids)
    params: dict[str, Any] = (
        {"p_ids": list(notification_ids)} if by_ids else {"p_ref": provider_ref}
    )

    def moves(row: Any) -> bool:
        return STATUS_RANK.get(row.provider_status or row.status, 0) < rank

    # most callbacks change nothing (`queued` and `sent` after the send was recorded): those
    # this process cannot answer from memory are answered from a read, without waiting for
    # SQLite's one writer behind the steps. One it knows ranks above what it recorded goes
    # straight to the write (whose WHERE still decides, should another process be ahead).
    read, update = _delivery_statements(by_ids, status)
    if not store.delivery.all_known(notification_ids):
        async with store.store.read() as conn:
            if not any(moves(row) for row in (await read.execute(conn, params)).all()):
                return False
    async with store.write() as conn:
        moved = (await update.execute(conn, {**params, "p_now": now_ms})).all()
        if status in NOT_DELIVERED:
            for row in moved:
                if row.purpose.startswith("step-"):
                    await member_out(conn, row.alarm_id, now_ms)
    store.delivery.note(notification_ids, rank)  # committed: each is at `rank` or above
    return bool(moved)


@functools.cache
def _delivery_statements(by_ids: bool, status: str) -> tuple[HotStatement, HotStatement]:
    """`record_delivery`'s read and write for a callback of `status` naming its messages by
    id (``p_ids``) or by provider reference (``p_ref``); built once each."""
    where = (
        notifications.c.id.in_(sa.bindparam("p_ids", expanding=True))
        if by_ids
        else notifications.c.provider_ref == sa.bindparam("p_ref")
    )
    rank = STATUS_RANK[status]
    values: dict[str, Any] = {"provider_status": status, "status_at_ms": sa.bindparam("p_now")}
    if status in NOT_DELIVERED:
        values["status"] = "undelivered"
    elif status == "delivered":
        values["status"] = "delivered"
    # `moves` in SQL, so the write is one UPDATE: a status ranked below this one, or one
    # this process does not know (ranked 0)
    recorded = sa.func.coalesce(notifications.c.provider_status, notifications.c.status)
    below = [name for name, r in STATUS_RANK.items() if r < rank]
    unknown = none_of(recorded, STATUS_RANK) if rank else sa.false()
    update = (
        notifications.update()
        .where(where, sa.or_(one_of(recorded, below), unknown))
        .values(**values)
        .returning(notifications.c.alarm_id, notifications.c.purpose)
    )
    return HotStatement(sa.select(notifications).where(where)), HotStatement(update)
