"""Escalation scenarios on a simulated clock, over a real database (SQLite and PostgreSQL):
the escalation worker's passes are driven by hand, SMS go to a recording notifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from carehub.alarm_lifecycle import AlarmState
from carehub.clock import FakeClock
from server.db import make_engine
from server.dispatch.escalator import Escalator
from server.dispatch.queue import notification_by_reply, record_delivery
from server.dispatch.store import DispatchStore
from server.reply_codes import CodedReply, parse_reply
from server.schema import alarms, escalations, notifications
from server.store import HubIdentity, ServerStore
from tests.dispatch_world import (
    RecordingNotifier,
    escalation_worker,
    open_dispatching,
    press_button,
)

HUB = HubIdentity("hub-1", "elder-1")
LINK_KEY = b"s" * 32
DIRECTORY = {
    "teams": [
        {"id": "team-a", "name": "A", "base": {"lat": 39.93, "lon": 116.39}, "backups": ["team-b"]},
        {"id": "team-b", "name": "B", "base": {"lat": 39.94, "lon": 116.40}},
        {"id": "team-far", "name": "Far", "base": {"lat": 40.5, "lon": 117.0}},
        {"id": "dispatch", "name": "Dispatch", "kind": "dispatch"},
    ],
    "doctors": [
        {"id": "li", "team": "team-a", "name": "Dr Li", "phone": "+8613800000001"},
        {
            "id": "wang",
            "team": "team-a",
            "name": "Dr Wang",
            "phone": "+8613800000002",
            "priority": 1,
        },
        {"id": "zhao", "team": "team-b", "name": "Dr Zhao", "phone": "+8613800000003"},
        {"id": "far", "team": "team-far", "name": "Dr Far", "phone": "+8613800000004"},
        {
            "id": "disp",
            "team": "dispatch",
            "name": "Dispatcher",
            "phone": "+8613800000009",
            "role": "dispatcher",
            "language": "en",
        },
    ],
    "elders": [
        {
            "id": "elder-1",
            "team": "team-a",
            "name": "王秀英",
            "short_address": "和平里3-2-501",
            "location": {"lat": 39.931, "lon": 116.391},
            "key_safe_code": "4711",
            "contacts": [
                {
                    "id": "son",
                    "name": "Son",
                    "phone": "+8613900000001",
                    "notify_on": ["accepted", "cancelled"],
                }
            ],
        }
    ],
    "hubs": [{"id": "hub-1", "elder": "elder-1", "token": "t" * 24}],
    "devices": [{"id": "btn-1", "hub": "hub-1", "kind": "button"}],
}
PHONE = {d["id"]: d["phone"] for d in DIRECTORY["doctors"]}  # type: ignore[index]


@dataclass
class World:
    clock: FakeClock
    store: ServerStore
    dispatch: DispatchStore
    escalator: Escalator
    sms: RecordingNotifier

    async def press(self, test: bool = False) -> str:
        return await press_button(self.store, HUB, self.clock.now_ms(), test=test)

    async def run(self, seconds: float = 0.0) -> None:
        """Let `seconds` pass, one second at a time, with a worker pass each second."""
        await self.escalator.pass_once()
        for _ in range(int(seconds)):
            self.clock.advance(1)
            await self.escalator.pass_once()

    async def state(self, alarm_id: str) -> AlarmState:
        async with self.store.engine.connect() as conn:
            value = (
                await conn.execute(sa.select(alarms.c.state).where(alarms.c.id == alarm_id))
            ).scalar()
        return AlarmState(value)

    async def notification(self, alarm_id: str, member: str) -> str:
        async with self.store.engine.connect() as conn:
            return str(
                (
                    await conn.execute(
                        sa.select(notifications.c.id)
                        .where(
                            notifications.c.alarm_id == alarm_id,
                            notifications.c.doctor_id == member,
                            notifications.c.purpose.like("step-%"),
                        )
                        .order_by(notifications.c.created_at_ms.desc())
                    )
                ).scalar()
            )

    async def answer(self, alarm_id: str, member: str, action: str) -> str:
        nid = await self.notification(alarm_id, member)
        care = await self.escalator.care_map()
        result, msgs = await self.dispatch.answer(nid, action, self.clock.now_ms(), "link", care)
        await self.escalator.send(msgs)
        self.escalator.kick()
        return result.key.value


@asynccontextmanager
async def open_world(
    database_url: str, directory: dict[str, Any], *, merge_repeats: bool
) -> AsyncIterator[World]:
    """A migrated database with `directory` loaded, and the worker to drive by hand."""
    async with open_dispatching(
        database_url,
        directory,
        PHONE,
        sealer_key="k" * 32,
        link_key=LINK_KEY,
        base_url="https://ch.example.cn",
        merge_repeats=merge_repeats,
    ) as d:
        yield World(d.clock, d.store, d.dispatch, d.escalator, d.sms)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    async with open_world(database_url, DIRECTORY, merge_repeats=False) as w:
        yield w


async def test_the_contracted_doctor_accepts_by_link(world: World) -> None:
    alarm = await world.press()
    await world.run()
    assert len(world.sms.to("li")) == 1 and not world.sms.to("wang")
    text = world.sms.to("li")[0]
    assert "https://ch.example.cn/r/" + alarm[-6:].upper() + "/" in text
    assert await world.state(alarm) is AlarmState.DISPATCHED
    assert "accepted" in await world.answer(alarm, "li", "accept")
    assert await world.state(alarm) is AlarmState.ACCEPTED
    await world.run(300)  # nobody else is ever asked
    assert not world.sms.to("wang") and not world.sms.to("disp")
    son = [b for to, b, _ in world.sms.sent if to == "+8613900000001"]
    assert son == ["CareHub：Dr Li正在前往王老人家。"]


async def test_the_doctor_accepts_by_reply_code(world: World) -> None:
    first, second = await world.press(), await world.press()
    await world.run()
    texts = world.sms.to("li")
    # two open alarms, two codes (sent concurrently: in either order)
    codes = sorted(code for t in texts for code in ("回复1a接受", "回复2a接受") if code in t)
    assert len(texts) == 2 and codes == ["回复1a接受", "回复2a接受"]
    reply = parse_reply("２Ａ")
    assert reply == CodedReply(2, reply.action) and isinstance(reply, CodedReply)
    n = await notification_by_reply(world.dispatch, PHONE["li"], reply.number, world.clock.now_ms())
    assert n is not None and n.alarm_id == second
    care = await world.escalator.care_map()
    result, _ = await world.dispatch.answer(n.id, "accept", world.clock.now_ms(), "sms", care)
    assert result.ok
    assert await world.state(second) is AlarmState.ACCEPTED
    assert await world.state(first) is AlarmState.DISPATCHED


async def test_nobody_answers_it_climbs_team_backup_dispatcher_and_repeats(world: World) -> None:
    alarm = await world.press()
    await world.run()
    assert [len(world.sms.to(m)) for m in ("li", "wang", "zhao", "disp")] == [1, 0, 0, 0]
    await world.run(60)
    assert [len(world.sms.to(m)) for m in ("li", "wang", "zhao", "disp")] == [1, 1, 0, 0]
    await world.run(60)
    assert [len(world.sms.to(m)) for m in ("li", "wang", "zhao", "disp")] == [1, 1, 1, 0]
    assert not world.sms.to("far")  # a backup team outside the service circle is not asked
    await world.run(60)
    assert [len(world.sms.to(m)) for m in ("li", "wang", "zhao", "disp")] == [1, 1, 1, 1]
    assert world.sms.to("disp")[0].startswith("CareHub URGENT")
    await world.run(120)
    assert len(world.sms.to("li")) == 2  # the second round
    await world.run(3 * 300)
    assert [len(world.sms.to(m)) for m in ("li", "wang", "zhao", "disp")] == [3, 3, 3, 3]
    async with world.store.engine.connect() as conn:
        status = (
            await conn.execute(
                sa.select(escalations.c.status).where(escalations.c.alarm_id == alarm)
            )
        ).scalar()
    assert status == "exhausted"


async def test_a_doctor_declines_and_the_next_is_asked_at_once(world: World) -> None:
    alarm = await world.press()
    await world.run()
    assert "declined" in await world.answer(alarm, "li", "decline")
    await world.run()
    assert len(world.sms.to("wang")) == 1
    assert world.clock.now_ms() - FakeClock().now_ms() < 1000
    await world.run(300)  # li is not asked again in the next round
    assert len(world.sms.to("li")) == 1


async def test_an_undelivered_sms_moves_on_at_once(world: World) -> None:
    alarm = await world.press()
    await world.run()
    ref = next(r for to, _, r in world.sms.sent if to == PHONE["li"])
    now = world.clock.now_ms()
    assert not await record_delivery(world.dispatch, ref, "sent", now)  # known already
    assert await record_delivery(world.dispatch, ref, "undelivered", now)
    assert not await record_delivery(world.dispatch, ref, "sent", now)  # late, out of order
    assert not await record_delivery(world.dispatch, ref, "undelivered", now)  # repeated
    assert not await record_delivery(world.dispatch, "SMunknown", "failed", now)
    await world.run()
    assert len(world.sms.to("wang")) == 1
    assert await world.state(alarm) is AlarmState.DISPATCHED


async def test_a_provider_refusal_is_retried_then_the_next_is_asked(world: World) -> None:
    world.sms.failing.add(PHONE["li"])
    alarm = await world.press()
    await world.run(5)  # attempts at 0 s and 2 s failed; the third comes at 7 s
    assert not world.sms.to("wang")
    await world.run(5)
    assert len(world.sms.to("wang")) == 1  # li failed three times: out of the step, at once
    async with world.store.engine.connect() as conn:
        attempts = (
            await conn.execute(
                sa.select(notifications.c.attempts, notifications.c.status).where(
                    notifications.c.alarm_id == alarm, notifications.c.doctor_id == "li"
                )
            )
        ).one()
    assert tuple(attempts) == (3, "failed")


async def test_accepted_but_no_arrival_in_20_minutes_goes_to_the_dispatcher(world: World) -> None:
    alarm = await world.press()
    await world.run()
    await world.answer(alarm, "li", "accept")
    await world.run(19 * 60)
    assert not world.sms.to("disp")
    await world.run(61)
    assert len(world.sms.to("disp")) == 1 and "Dr Li" in world.sms.to("disp")[0]
    second = await world.press()
    await world.run()
    await world.answer(second, "li", "accept")
    assert "arrived" == await world.answer(second, "li", "arrived")
    await world.run(21 * 60)
    assert len(world.sms.to("disp")) == 1  # arrived: no overdue notice


async def test_the_elder_cancels_after_dispatch_and_everyone_notified_is_told(
    world: World,
) -> None:
    alarm = await world.press()
    await world.run(61)  # li and wang notified
    async with world.store.engine.connect() as conn:
        hub_alarm_id = (
            await conn.execute(sa.select(alarms.c.hub_alarm_id).where(alarms.c.id == alarm))
        ).scalar()
    await world.store.report_state(
        HUB, str(hub_alarm_id), AlarmState.CANCELLED, world.clock.now_ms(), "r1", "hub", "cancel"
    )
    await world.dispatch.kick(alarm, world.clock.now_ms())
    await world.run()
    assert "取消" in world.sms.to("li")[-1] and "取消" in world.sms.to("wang")[-1]
    assert not world.sms.to("zhao")
    son = [b for to, b, _ in world.sms.sent if to == "+8613900000001"]
    assert son == ["CareHub：王老人的呼叫已取消。"]
    await world.run(600)
    assert len(world.sms.to("li")) == 2  # nothing more after the cancellation


async def test_a_server_killed_mid_escalation_resumes_without_skipping_or_repeating(
    world: World, database_url: str, tmp_path: Path
) -> None:
    alarm = await world.press()
    await world.run(60)  # li, then wang
    # a step claimed and committed, but the process dies before sending: nothing sent
    care = await world.escalator.care_map()
    world.clock.advance(60)
    claimed = (await world.dispatch.advance_due(world.clock.now_ms(), care)).messages
    assert [m.member_id for m in claimed] == ["zhao"]
    # a new process on the same database
    engine = make_engine(database_url)
    try:
        store = ServerStore(engine, merge_repeats=False)
        _, escalator = escalation_worker(
            store, world.sms, world.clock, link_key=LINK_KEY, base_url="https://x"
        )
        await escalator.pass_once()
        assert not world.sms.to("zhao")  # leased to the dead process for 30 s
        for _ in range(31):
            world.clock.advance(1)
            await escalator.pass_once()
        assert len(world.sms.to("zhao")) == 1
        for _ in range(60):
            world.clock.advance(1)
            await escalator.pass_once()
        assert [len(world.sms.to(m)) for m in ("li", "wang", "zhao", "disp")] == [1, 1, 1, 1]
    finally:
        await engine.dispose()
    assert await world.state(alarm) is AlarmState.DISPATCHED


async def test_a_burst_to_one_doctor_is_merged_within_the_per_number_limit(world: World) -> None:
    ids = [await world.press() for _ in range(6)]
    await world.run()
    texts = world.sms.to("li")
    assert len(texts) == 4  # MAX_PER_WINDOW: three alone, the other three in one message
    assert sum(t.count("/r/") for t in texts) == 6  # every alarm's link reached the doctor
    assert [await world.state(a) for a in ids] == [AlarmState.DISPATCHED] * 6
    await world.run(60)  # the next step: wang gets the same treatment, li nothing more
    assert len(world.sms.to("li")) == 4 and len(world.sms.to("wang")) == 4


async def test_a_self_test_alarm_reaches_the_first_step_only_marked_as_a_test(
    world: World,
) -> None:
    alarm_id = await world.press(test=True)
    await world.run(15 * 60)  # a real alarm would have climbed to the dispatcher by now
    assert [to for to, _, _ in world.sms.sent] == [PHONE["li"]], world.sms.sent
    assert world.sms.to("li")[0].startswith("【测试：安装检查，无需出诊】")
    async with world.store.engine.connect() as conn:
        ladder = (
            await conn.execute(
                sa.select(escalations.c.status).where(escalations.c.alarm_id == alarm_id)
            )
        ).scalar()
    assert ladder == "exhausted"
