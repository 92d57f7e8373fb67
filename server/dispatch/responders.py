"""The SQL behind acceptance from any phone: what a link opens, what was viewed, inbound SMS
(deduplicated by Twilio's MessageSid), opt-outs and the help-text rate limit.

Kept apart from the ladder and its queue (`server.dispatch.store`): this module only reads
the dispatch model and writes the tables of the responder's side (`link_views`,
`inbound_messages`, `sms_optouts`). Every limit lives in the database, so every server
process agrees.
"""

from __future__ import annotations

import sqlalchemy as sa

from carehub.alarm_lifecycle import AlarmKind, AlarmState
from server.accept_link import IssuedLink, LinkVerdict, check_link, token_hash
from server.db import dialect_insert, serialise_on
from server.dispatch.link_view import Contact, LinkAction, LinkContext
from server.dispatch.queue import MessageQueue, notification_by_token_hash
from server.dispatch.rows import alarm_ref
from server.schema import (
    alarms,
    doctors,
    elders,
    emergency_contacts,
    escalations,
    inbound_messages,
    link_views,
    sms_optouts,
    teams,
)

HELP_EVERY_MS = 3600 * 1000
"""A number that sends texts we do not understand gets the help text at most once an hour."""


async def open_link(
    dispatch: MessageQueue, ref: str, token: str, now_ms: int
) -> tuple[LinkVerdict, LinkContext | None]:
    """Whether `token` opens the alarm `ref` names now, and what it opens. A token for
    another alarm's ref is UNKNOWN, exactly like a guessed one."""
    row = await notification_by_token_hash(dispatch, token_hash(token))
    issued = (
        IssuedLink(row.alarm_id, row.doctor_id, row.link_token_hash, row.link_expires_at_ms or 0)
        if row is not None and row.doctor_id and row.link_token_hash
        else None
    )
    named = issued.alarm_id if issued and alarm_ref(issued.alarm_id) == ref.upper() else ""
    verdict = check_link(issued, named, token, now_ms)
    if verdict is not LinkVerdict.OK or row is None:
        return verdict, None
    return verdict, await _context(dispatch, row)


async def _context(dispatch: MessageQueue, n: sa.Row) -> LinkContext:
    acceptor = doctors.alias("acceptor")
    async with dispatch.engine.connect() as conn:
        r = (
            await conn.execute(
                sa.select(
                    alarms.c.id,
                    alarms.c.hub_id,
                    alarms.c.kind,
                    alarms.c.state,
                    alarms.c.raised_at_ms,
                    alarms.c.accepted_by,
                    alarms.c.arrived_at_ms,
                    elders.c.id.label("elder_id"),
                    elders.c.name,
                    elders.c.short_address,
                    elders.c.address,
                    elders.c.lat,
                    elders.c.lon,
                    elders.c.key_safe_secret,
                    elders.c.medical_notes,
                    elders.c.care_level,
                    escalations.c.policy_id,
                    teams.c.time_zone,
                    doctors.c.language,
                    acceptor.c.name.label("acceptor_name"),
                )
                .join(elders, elders.c.id == alarms.c.elder_id)
                .join(teams, teams.c.id == elders.c.team_id)
                .join(doctors, doctors.c.id == n.doctor_id)
                .outerjoin(acceptor, acceptor.c.id == alarms.c.accepted_by)
                .outerjoin(escalations, escalations.c.alarm_id == alarms.c.id)
                .where(alarms.c.id == n.alarm_id)
            )
        ).one()
        contacts = (
            await conn.execute(
                sa.select(
                    emergency_contacts.c.name,
                    emergency_contacts.c.relation,
                    emergency_contacts.c.phone,
                )
                .where(emergency_contacts.c.elder_id == r.elder_id)
                .order_by(emergency_contacts.c.id)
            )
        ).all()
    return LinkContext(
        notification_id=n.id,
        member_id=n.doctor_id,
        member_language=r.language if r.language in ("zh", "en") else "zh",
        response=n.response,
        step=n.position,
        alarm_id=r.id,
        hub_id=r.hub_id,
        ref=alarm_ref(r.id),
        kind=AlarmKind(r.kind),
        state=AlarmState(r.state),
        raised_at_ms=int(r.raised_at_ms),
        time_zone=r.time_zone,
        accepted_by=r.accepted_by,
        accepted_by_name=r.acceptor_name or r.accepted_by,
        arrived_at_ms=r.arrived_at_ms,
        elder_name=r.name,
        short_address=r.short_address,
        address=r.address or r.short_address,
        lat=r.lat,
        lon=r.lon,
        key_safe_sealed=r.key_safe_secret,
        contacts=tuple(Contact(c.name, c.relation, c.phone) for c in contacts),
        medical_notes=r.medical_notes or "",
        care_level=int(r.care_level or 0),
        policy_id=r.policy_id,
    )


async def record_view(
    dispatch: MessageQueue, notification_id: str, action: LinkAction, now_ms: int
) -> None:
    async with dispatch.write() as conn:
        await conn.execute(
            link_views.insert().values(notification_id=notification_id, at_ms=now_ms, action=action)
        )


async def hub_of_alarm(dispatch: MessageQueue, alarm_id: str) -> str | None:
    """Whose long-poll to wake when this alarm changes."""
    async with dispatch.engine.connect() as conn:
        value = (
            await conn.execute(sa.select(alarms.c.hub_id).where(alarms.c.id == alarm_id))
        ).scalar()
    return str(value) if value is not None else None


# ---------------------------------------------------------------- inbound SMS


async def record_inbound(
    dispatch: MessageQueue, sid: str, from_phone: str, body: str, now_ms: int
) -> bool:
    """Store an inbound SMS once; False when this MessageSid was seen (Twilio retried)."""
    values = {
        "sid": sid[:64],
        "from_phone": from_phone[:32],
        "body": body[:1600],
        "received_at_ms": now_ms,
    }
    async with dispatch.write() as conn:
        result = await conn.execute(
            dialect_insert(dispatch.engine, inbound_messages)
            .values(**values)
            .on_conflict_do_nothing()
        )
    return bool(result.rowcount)


async def set_inbound_result(dispatch: MessageQueue, sid: str, result: str) -> None:
    async with dispatch.write() as conn:
        await conn.execute(
            inbound_messages.update()
            .where(inbound_messages.c.sid == sid[:64])
            .values(result=result[:200])
        )


async def claim_help(dispatch: MessageQueue, sid: str, from_phone: str, now_ms: int) -> bool:
    """True when this inbound message may be answered with the help text: the number got
    none in the last `HELP_EVERY_MS`. The claim is the message's result ``help``."""
    async with dispatch.write() as conn:
        await serialise_on(conn, f"carehub-help:{from_phone}")  # one claim per number at a time
        recent = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(inbound_messages)
                .where(
                    inbound_messages.c.from_phone == from_phone[:32],
                    inbound_messages.c.result == "help",
                    inbound_messages.c.received_at_ms > now_ms - HELP_EVERY_MS,
                )
            )
        ).scalar()
        if recent:
            return False
        await conn.execute(
            inbound_messages.update()
            .where(inbound_messages.c.sid == sid[:64])
            .values(result="help")
        )
    return True


async def member_language(dispatch: MessageQueue, phone: str) -> str:
    """The language of the member with this number (zh when unknown)."""
    async with dispatch.engine.connect() as conn:
        value = (
            await conn.execute(sa.select(doctors.c.language).where(doctors.c.phone == phone))
        ).scalar()
    return value if value in ("zh", "en") else "zh"


# ---------------------------------------------------------------- opt-outs


async def set_opt_out(dispatch: MessageQueue, phone: str, opted_out: bool, now_ms: int) -> None:
    """STOP (True) or START (False) from this number."""
    insert = dialect_insert(dispatch.engine, sms_optouts).values(
        phone=phone[:32], opted_out=opted_out, at_ms=now_ms
    )
    async with dispatch.write() as conn:
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=[sms_optouts.c.phone],
                set_={"opted_out": opted_out, "at_ms": now_ms},
            )
        )
