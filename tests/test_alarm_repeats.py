"""One open alarm per device and kind (issue 11): a repeat joins the open alarm, visibly,
and the hub hears the open alarm's state under the repeat's own id. Over a real database
(SQLite and PostgreSQL) on a simulated clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.api_contract import AlarmUpload
from server.alarm_repeats import Joined, OpenAlarm, join
from server.schema import alarm_events, alarms, escalations
from tests.test_escalation_scenarios import DIRECTORY, HUB, World, open_world

WITH_WEARABLE = {
    **DIRECTORY,
    "devices": [
        {"id": "btn-1", "hub": "hub-1", "kind": "button"},
        {"id": "btn-2", "hub": "hub-1", "kind": "button"},
        {"id": "wear-1", "hub": "hub-1", "kind": "wearable"},
    ],
}


def test_join_core() -> None:
    assert join(None, Severity.CRITICAL) is None
    warning = OpenAlarm("a1", Severity.WARNING, 0)
    assert join(warning, Severity.WARNING) == Joined("a1", Severity.WARNING, 1, False)
    assert join(warning, Severity.CRITICAL) == Joined("a1", Severity.CRITICAL, 1, True)
    critical = OpenAlarm("a1", Severity.CRITICAL, 3)
    assert join(critical, Severity.WARNING) == Joined("a1", Severity.CRITICAL, 4, False)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    async with open_world(database_url, WITH_WEARABLE, merge_repeats=True) as w:  # the default
        yield w


def upload(
    device: str = "btn-1",
    kind: AlarmKind = AlarmKind.BUTTON,
    severity: Severity = Severity.CRITICAL,
    test: bool = False,
    alarm_id: str | None = None,
) -> AlarmUpload:
    return AlarmUpload(
        alarm_id=alarm_id or uuid.uuid4().hex,
        device_id=device,
        kind=kind,
        severity=severity,
        raised_at_ms=1,
        test=test,
    )


async def open_alarms(world: World) -> list[sa.Row]:
    async with world.store.engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(alarms).where(alarms.c.state.not_in(["resolved", "cancelled"]))
                )
            ).all()
        )


async def test_presses_while_open_join_one_alarm_visibly_and_idempotently(world: World) -> None:
    first = upload()
    assert (await world.store.store_alarm(HUB, first, world.clock.now_ms())).created
    await world.run()
    assert len(world.sms.to("li")) == 1
    world.clock.advance(5)
    again = upload()
    stored = await world.store.store_alarm(HUB, again, world.clock.now_ms())
    assert stored.created and stored.joined is not None
    assert stored.state is AlarmState.DISPATCHED, "the repeat is answered with the open state"
    retry = await world.store.store_alarm(HUB, again, world.clock.now_ms())
    assert not retry.created and retry.joined is None, "a retried repeat is not counted twice"
    other_button = await world.store.store_alarm(HUB, upload("btn-2"), world.clock.now_ms())
    assert other_button.joined is None, "another device opens its own alarm"
    await world.run(30)
    assert len(world.sms.to("li")) == 2, "the repeat started no second ladder"

    rows = await open_alarms(world)
    assert len(rows) == 2
    joined = next(r for r in rows if r.hub_alarm_id == first.alarm_id)
    assert joined.repeat_count == 1 and joined.last_repeat_at_ms == world.clock.now_ms() - 30_000
    detail = await world.store.alarm(joined.id)
    assert detail is not None and detail["repeat_hub_alarm_ids"] == [again.alarm_id]
    lines = [e["detail"] for e in detail["events"] if e["kind"] == "repeat"]
    assert lines == ["pressed again (×2), btn-1"]
    listed = {a["id"]: a for a in await world.store.list_alarms()}
    assert listed[joined.id]["repeat_count"] == 1


async def test_the_hub_hears_the_open_alarms_changes_under_the_repeats_id(world: World) -> None:
    first, again = upload(), upload()
    await world.store.store_alarm(HUB, first, world.clock.now_ms())
    await world.run()
    await world.store.store_alarm(HUB, again, world.clock.now_ms())
    cursor = max(u.cursor for u in await world.store.updates_for_hub("hub-1", 0))
    alarm_id = (await open_alarms(world))[0].id
    assert "accepted" in await world.answer(alarm_id, "li", "accept")
    updates = await world.store.updates_for_hub("hub-1", cursor)
    heard = {(u.alarm_id, u.state, u.responder) for u in updates}
    assert heard == {
        (first.alarm_id, AlarmState.ACCEPTED, "Dr Li"),
        (again.alarm_id, AlarmState.ACCEPTED, "Dr Li"),
    }
    # a page that would split one change between the two ids ends before it instead
    everything = await world.store.updates_for_hub("hub-1", 0)
    assert everything[-1].cursor == everything[-2].cursor  # the acceptance, twice
    page = await world.store.updates_for_hub("hub-1", 0, limit=len(everything) - 1)
    assert page == everything[:-2]
    rest = await world.store.updates_for_hub("hub-1", page[-1].cursor)
    assert rest == everything[-2:]
    # the elder cancels through the repeat's id: the open alarm is cancelled, and its
    # ladder is due at once (the responder hears of it now, not at the arrival watchdog)
    state = await world.store.report_state(
        HUB, again.alarm_id, AlarmState.CANCELLED, world.clock.now_ms(), "r1", "hub", "cancel"
    )
    assert state is AlarmState.CANCELLED and not await open_alarms(world)
    await world.dispatch.alarm_changed("hub-1", again.alarm_id, world.clock.now_ms())
    async with world.store.engine.connect() as conn:
        due = (
            await conn.execute(
                sa.select(escalations.c.due_at_ms).where(escalations.c.alarm_id == alarm_id)
            )
        ).scalar()
    assert due == world.clock.now_ms()


async def test_after_resolution_a_press_opens_a_new_alarm(world: World) -> None:
    first = upload()
    await world.store.store_alarm(HUB, first, world.clock.now_ms())
    await world.store.report_state(
        HUB, first.alarm_id, AlarmState.RESOLVED, world.clock.now_ms(), "r1", "hub", ""
    )
    stored = await world.store.store_alarm(HUB, upload(), world.clock.now_ms())
    assert stored.joined is None and stored.created


async def test_a_test_alarm_never_joins_a_real_one_nor_the_reverse(world: World) -> None:
    await world.store.store_alarm(HUB, upload(), world.clock.now_ms())
    assert (await world.store.store_alarm(HUB, upload(test=True), 0)).joined is None
    assert (await world.store.store_alarm(HUB, upload(test=True), 0)).joined is not None
    assert (await world.store.store_alarm(HUB, upload(), 0)).joined is not None
    assert len(await open_alarms(world)) == 2


async def test_a_critical_repeat_raises_a_warning_to_the_urgent_ladder(world: World) -> None:
    vitals = {"device": "wear-1", "kind": AlarmKind.VITALS}
    await world.store.store_alarm(HUB, upload(**vitals, severity=Severity.WARNING), 0)
    await world.run()
    assert len(world.sms.to("li")) == 1
    await world.run(120)
    assert not world.sms.to("wang"), "a notice waits 10 minutes before the next member"
    stored = await world.store.store_alarm(
        HUB, upload(**vitals, severity=Severity.CRITICAL), world.clock.now_ms()
    )
    assert stored.joined is not None and stored.joined.raised
    await world.run()
    (row,) = await open_alarms(world)
    assert row.severity == "critical"
    li = world.sms.to("li")
    assert len(li) == 2, "the doctor who had the notice hears it is now urgent"
    assert world.sms.to("wang"), "the ladder goes on at once under the urgent policy"
    async with world.store.engine.connect() as conn:
        kinds = (
            await conn.execute(
                sa.select(alarm_events.c.kind).where(alarm_events.c.alarm_id == row.id)
            )
        ).scalars()
        assert "severity_raised" in set(kinds)
