"""The shift handover: every open alarm with who has claimed it, who accepted it and the
last note written on it, the ones nobody has claimed first (they are what the next shift
must pick up), then as the queue orders them. A printable read model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.console.alarm_detail import USER_ENTRY_KINDS
from server.console.live_queue import QueueRow, queue_order
from server.schema import alarm_events, alarms, doctors


@dataclass(frozen=True)
class LastNote:
    text: str
    actor: str  # console:<username> or member:<id>
    at_ms: int


@dataclass(frozen=True)
class HandoverRow:
    alarm: QueueRow
    accepted_by: str | None  # the member's name
    note: LastNote | None


def handover_order(
    rows: Sequence[QueueRow],
    notes: Mapping[str, LastNote],
    accepted: Mapping[str, str],
) -> list[HandoverRow]:
    """Unclaimed alarms first, each group in queue order (`queue_order`)."""
    ordered = queue_order(rows)
    ordered.sort(key=lambda r: r.claimed_by is not None)  # stable: queue order kept
    return [HandoverRow(r, accepted.get(r.alarm_id), notes.get(r.alarm_id)) for r in ordered]


async def handover_details(
    engine: AsyncEngine, alarm_ids: Sequence[str]
) -> tuple[dict[str, LastNote], dict[str, str]]:
    """The last note or call-back on each alarm, and the name of who accepted it."""
    if not alarm_ids:
        return {}, {}
    async with engine.connect() as conn:
        events = (
            await conn.execute(
                sa.select(
                    alarm_events.c.alarm_id,
                    alarm_events.c.detail,
                    alarm_events.c.actor,
                    alarm_events.c.at_ms,
                )
                .where(
                    alarm_events.c.alarm_id.in_(alarm_ids),
                    alarm_events.c.kind.in_(sorted(USER_ENTRY_KINDS)),
                )
                .order_by(alarm_events.c.at_ms, alarm_events.c.id)
            )
        ).all()
        taken = (
            await conn.execute(
                sa.select(alarms.c.id, doctors.c.name)
                .join(doctors, doctors.c.id == alarms.c.accepted_by)
                .where(alarms.c.id.in_(alarm_ids))
            )
        ).all()
    notes = {e.alarm_id: LastNote(e.detail, e.actor, e.at_ms) for e in events}  # the latest wins
    return notes, {r.id: r.name for r in taken}
