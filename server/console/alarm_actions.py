"""What an operator does to an alarm from the console, each written to `alarm_events` with
the account (``console:<username>``) and the time: acknowledge, note, call-back details,
resolve, claim and release. (Assigning goes through `DispatchStore.assign`, which sends
the SMS.)"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState
from server.catalogue import Word
from server.console.accounts import Account
from server.console.alarm_detail import CONSOLE_ACTOR, OUTCOMES, USER_ENTRY_KINDS
from server.console.checklist_store import checklist_items
from server.console.checklists import CHECKLIST_EVENT, at_outcome, encode
from server.dispatch.rows import mark_operator_answer
from server.dispatch.service import DispatchService
from server.schema import alarm_events, alarms

MAX_TEXT = 400


class ActionRefused(Exception):
    """The action cannot be applied: `key` (``refused.*`` in the catalogue) and its
    placeholders say why, in the reader's language (shown as a 409)."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


def actor(account: Account) -> str:
    return f"{CONSOLE_ACTOR}{account.username}"


def clean_text(text: str) -> str:
    """A note as stored: trimmed, not empty, at most 400 characters."""
    text = text.strip()
    if not text:
        raise ActionRefused("refused.empty")
    if len(text) > MAX_TEXT:
        raise ActionRefused("refused.too_long", n=MAX_TEXT)
    return text


async def _hub_of(conn: AsyncConnection, alarm_id: str) -> tuple[str, str]:
    row = (
        await conn.execute(
            sa.select(alarms.c.hub_id, alarms.c.state).where(alarms.c.id == alarm_id)
        )
    ).first()
    if row is None:
        raise ActionRefused("refused.no_alarm")
    return row.hub_id, row.state


async def add_entry(
    engine: AsyncEngine, alarm_id: str, account: Account, kind: str, detail: str, now_ms: int
) -> None:
    """Acknowledge (empty detail), a note or call-back details. The first acknowledgement
    is the operator's answer (time to answer, `server.kpi`) unless one came before."""
    async with engine.begin() as conn:
        hub_id, _ = await _hub_of(conn, alarm_id)
        if kind == "acknowledged":
            await conn.execute(mark_operator_answer(alarm_id, now_ms))
        await conn.execute(
            alarm_events.insert().values(
                alarm_id=alarm_id,
                hub_id=hub_id,
                kind=kind,
                at_ms=now_ms,
                detail=detail,
                actor=actor(account),
            )
        )


async def edit_entry(
    engine: AsyncEngine, alarm_id: str, event_id: int, account: Account, detail: str
) -> None:
    """Only the author may change their own note or call-back; system entries never change."""
    async with engine.begin() as conn:
        done = await conn.execute(
            alarm_events.update()
            .where(
                alarm_events.c.id == event_id,
                alarm_events.c.alarm_id == alarm_id,
                alarm_events.c.kind.in_(USER_ENTRY_KINDS),
                alarm_events.c.actor == actor(account),
            )
            .values(detail=detail)
        )
    if done.rowcount != 1:
        raise ActionRefused("refused.not_author")


async def resolve(service: DispatchService, alarm_id: str, account: Account, outcome: str) -> None:
    """Move the alarm to resolved with an outcome code and close its ladder, through the
    dispatch wing (`DispatchService.resolve`, which tells the hub and the consoles); the
    checklist as it stands is recorded with the outcome, in the same transaction."""
    if outcome not in OUTCOMES:
        raise ActionRefused("refused.outcome", choices=", ".join(OUTCOMES))
    who = actor(account)

    async def checklist(conn: AsyncConnection, hub_id: str, now_ms: int) -> None:
        await _record_checklist(conn, alarm_id, hub_id, who, now_ms)

    found = await service.resolve(alarm_id, outcome, who, checklist)
    if found is None:
        raise ActionRefused("refused.no_alarm")
    state, resolved = found
    if not resolved:
        raise ActionRefused("refused.closed_resolve", state=Word("state." + state.value))


async def record_checklist(engine: AsyncEngine, alarm_id: str, who: str, now_ms: int) -> None:
    """The checklist kept with an outcome given elsewhere (the operator's triage closing the
    alarm, `DispatchStore.triage`): as `resolve` does, just after it."""
    async with engine.begin() as conn:
        hub_id, _ = await _hub_of(conn, alarm_id)
        await _record_checklist(conn, alarm_id, hub_id, who, now_ms)


async def _record_checklist(
    conn: AsyncConnection, alarm_id: str, hub_id: str, who: str, now_ms: int
) -> None:
    """An ``alarm_events`` row ``checklist`` (`checklists.encode`: items done and not done),
    in the resolving transaction, just before the outcome: what was checked is kept with
    how it ended, on the timeline and in the elder's history."""
    kind = await conn.scalar(sa.select(alarms.c.kind).where(alarms.c.id == alarm_id))
    ticked = await conn.scalars(
        sa.select(alarm_events.c.detail).where(
            alarm_events.c.alarm_id == alarm_id, alarm_events.c.kind == "checked"
        )
    )
    record = at_outcome(await checklist_items(conn, str(kind)), ticked.all())
    if record is None:
        return
    await conn.execute(
        alarm_events.insert().values(
            alarm_id=alarm_id,
            hub_id=hub_id,
            kind=CHECKLIST_EVENT,
            at_ms=now_ms,
            detail=encode(record),
            actor=who,
        )
    )


class ClaimedByOther(ActionRefused):
    """Another operator has the alarm: taking it over must be asked for."""

    def __init__(self, holder: str) -> None:
        super().__init__("refused.claimed", who=holder)
        self.holder = holder


async def claim(
    engine: AsyncEngine, alarm_id: str, account: Account, now_ms: int, take_over: bool = False
) -> str | None:
    """Make `account` the operator who has the alarm; returns whom it was taken from. One
    conditional UPDATE decides (two operators claiming at once: one gets it, the other is
    told who has it), on SQLite and PostgreSQL alike. Claiming one's own is a no-op."""
    me = account.username
    async with engine.begin() as conn:
        hub_id, state = await _hub_of(conn, alarm_id)
        if AlarmState(state) in FINAL_STATES:
            raise ActionRefused("refused.closed_claim", state=Word("state." + state))
        held = await conn.scalar(sa.select(alarms.c.claimed_by).where(alarms.c.id == alarm_id))
        if held == me:
            return None
        free = alarms.c.claimed_by.is_(None) | (alarms.c.claimed_by == me)
        if take_over:  # from whoever holds it as read: a third one's claim meanwhile stands
            free = free | (alarms.c.claimed_by == held)
        done = await conn.execute(
            alarms.update()
            .where(alarms.c.id == alarm_id, free)
            .values(claimed_by=me, claimed_at_ms=now_ms)
        )
        if done.rowcount != 1:
            holder = await conn.scalar(
                sa.select(alarms.c.claimed_by).where(alarms.c.id == alarm_id)
            )
            raise ClaimedByOther(str(holder))
        await conn.execute(
            alarm_events.insert().values(
                alarm_id=alarm_id,
                hub_id=hub_id,
                kind="claimed",
                at_ms=now_ms,
                detail=f"from {held}" if held else "",
                actor=actor(account),
            )
        )
    return held


async def release(engine: AsyncEngine, alarm_id: str, account: Account, now_ms: int) -> None:
    """Give the alarm back to the shift (only who has it can)."""
    async with engine.begin() as conn:
        hub_id, _ = await _hub_of(conn, alarm_id)
        done = await conn.execute(
            alarms.update()
            .where(alarms.c.id == alarm_id, alarms.c.claimed_by == account.username)
            .values(claimed_by=None, claimed_at_ms=None)
        )
        if done.rowcount != 1:
            raise ActionRefused("refused.not_holder")
        await conn.execute(
            alarm_events.insert().values(
                alarm_id=alarm_id,
                hub_id=hub_id,
                kind="released",
                at_ms=now_ms,
                detail="",
                actor=actor(account),
            )
        )
