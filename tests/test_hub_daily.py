"""Issue 24 through the real `Hub` shell on a temporary SQLite store, with a fake clock, a fake
uplink and a fake device link: a simulated day's summary survives an outage and is uploaded
once per day (retried, idempotent), the raw streams never leave the hub; the check-in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from carehub import api_contract as api
from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.clock import FakeClock
from carehub.mqtt_contract import (
    AckState,
    ButtonEvent,
    Channel,
    DeviceStatus,
    Topics,
    encode,
)
from carehub.settings import HubSettings
from gateway.hub import Hub
from gateway.loop_guard import RestartPolicy
from gateway.uplink import UplinkError
from tests.daily_sim import Day, at, frame, normal_moving, reading
from tests.test_daily_watch import DAY
from tests.test_hub_shell import FakeLink, FakeUplink, wait_until

DEVICES = [
    api.DeviceConfig(device_id="btn-1", kind="button"),
    api.DeviceConfig(device_id="pend-1", kind="pendant"),
    api.DeviceConfig(device_id="wear-1", kind="wearable"),
]


class DayUplink(FakeUplink):
    """A server whose config carries the care plan under test."""

    def __init__(self, plan: api.CarePlan) -> None:
        super().__init__()
        self.hub_config = api.HubConfig(
            hub_id="hub-1", elder_id="elder-1", care_plan=plan, devices=DEVICES
        )

    async def config(self) -> api.HubConfig:
        return self.hub_config

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        return [body for k, body in self.sent if k == kind]


def make_hub(tmp_path: Path, uplink: DayUplink, clock: FakeClock) -> tuple[Hub, FakeLink]:
    settings = HubSettings(hub_db=tmp_path / "hub.db", retry_initial_s=0.01, retry_max_s=0.05)
    hub = Hub(settings, clock, uplink, link=FakeLink)
    hub.restart_policy = RestartPolicy(initial_s=0.01, cap_s=0.05)
    assert isinstance(hub.link, FakeLink)
    return hub, hub.link


def topic(hub: Hub, device: str, channel: Channel) -> str:
    return Topics(hub.settings.base_topic).device(device, channel)


async def press(hub: Hub, seq: int, device: str = "btn-1", ts: int | None = None) -> None:
    event = ButtonEvent(v=1, seq=seq, ts=ts or hub.clock.now_ms(), action="press")
    await hub.handle_message(topic(hub, device, Channel.BUTTON), encode(event))


async def live(hub: Hub, clock: FakeClock, d: Day, start_min: int, end_min: int) -> None:
    """The day through the hub's message handling, one frame and one reading a minute."""
    base = at(DAY, 0)
    for m in range(start_min, end_min):
        now = base + m * 60_000
        clock.advance((now - clock.now_ms()) / 1000)
        moving = d.moving(m)
        await hub.handle_message(topic(hub, "pend-1", Channel.IMU), encode(frame(now, moving)))
        vitals = reading(now, m, d, moving)
        await hub.handle_message(topic(hub, "wear-1", Channel.VITALS), encode(vitals))
        for event in d.events.get(m, []):
            if event == "press":
                await press(hub, m)
            elif event.startswith("battery"):
                status = DeviceStatus(v=1, seq=m, ts=now, battery=float(event.split()[1]))
                await hub.handle_message(topic(hub, "pend-1", Channel.STATUS), encode(status))
        clock.advance(30)
        await hub.daily_pass(clock.now_ms())


@contextlib.asynccontextmanager
async def draining(hub: Hub) -> AsyncIterator[None]:
    """The hub's own outbox loop (retries and all) while the block runs."""
    task = asyncio.create_task(hub._drain_outbox())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def outbox(hub: Hub) -> list[tuple[str, dict[str, Any]]]:
    async with hub.store.db.execute("SELECT kind, body FROM outbox ORDER BY id") as cur:
        return [(r[0], json.loads(r[1])) for r in await cur.fetchall()]


async def test_a_day_survives_an_outage_and_each_summary_is_uploaded_once(tmp_path: Path) -> None:
    uplink = DayUplink(api.CarePlan())
    clock = FakeClock(at(DAY, 0))
    day = Day(moving=normal_moving, events={540: ["press"], 600: ["battery 64"]})
    hub, _ = make_hub(tmp_path, uplink, clock)
    async with hub.opened():
        await hub.refresh_config()
        await live(hub, clock, day, 0, 720)
    # the hub is off from noon until 08:00 two days later (nothing closed the day)
    clock.advance((at(DAY + timedelta(days=2), 8) - clock.now_ms()) / 1000)
    uplink.broken = UplinkError("server down")
    hub, _ = make_hub(tmp_path, uplink, clock)
    async with hub.opened():
        await hub.refresh_config()
        await hub.daily_pass(clock.now_ms())
        async with draining(hub):
            await wait_until(lambda: uplink.attempts >= 3)  # retried while the server is down
            uplink.broken = None
            await wait_until(lambda: len(uplink.bodies("summary")) == 2)
            await hub.daily_pass(clock.now_ms() + 60_000)  # passes later queue nothing again
            await wait_until(lambda: hub.core.alarm_queued is False)
    hub, _ = make_hub(tmp_path, uplink, clock)
    async with hub.opened():  # and neither does a restart
        await hub.daily_pass(clock.now_ms() + 120_000)
        assert [k for k, _ in await outbox(hub) if k == "summary"] == ["summary"] * 2
    first, missed = (api.DailySummary.model_validate(b) for b in uplink.bodies("summary"))
    assert (first.day, first.complete, missed.day, missed.complete) == (
        "2026-03-10",
        False,  # the hub was down from noon
        "2026-03-11",
        False,  # down all day
    )
    assert first.presses == 1 and first.battery_min_pct == 64.0
    assert first.active_min == 10 + 60 + 4 * 10  # up to noon, the morning kept over the restart
    assert first.night_rises == 1 and first.resting_hr_bpm == 58.0
    assert missed.active_min is None and missed.worn_h is None and missed.presses == 0


async def test_the_raw_streams_never_leave_the_hub(tmp_path: Path) -> None:
    uplink = DayUplink(api.CarePlan())
    clock = FakeClock(at(DAY, 0))
    hub, _ = make_hub(tmp_path, uplink, clock)
    async with hub.opened():
        await hub.refresh_config()
        await live(hub, clock, Day(moving=normal_moving, events={900: ["press"]}), 0, 1440)
        clock.advance(120)
        await hub.daily_pass(clock.now_ms())
        async with draining(hub):
            await wait_until(lambda: len(uplink.bodies("summary")) == 1)
        sent = await outbox(hub)
    kinds = {k for k, _ in sent}
    assert kinds <= {"alarm", "summary", "fault"}
    (summary,) = [b for k, b in sent if k == "summary"]
    assert set(summary) == set(api.DailySummary.model_fields)
    assert all(not isinstance(v, (list, dict)) for v in summary.values())
    (press_alarm,) = [b for k, b in sent if k == "alarm"]
    assert press_alarm["kind"] == "button" and "hr" not in json.dumps(press_alarm["details"])
    for kind, body in sent:  # no reading, frame or sample anywhere
        text = json.dumps(body)
        assert '"acc"' not in text and '"spo2"' not in text and '"hr"' not in text, kind


# ------------------------------------------------------------ the check-in

CHECK_IN = api.CarePlan(check_in=api.CheckInPlan(window_start="07:00", window_end="10:00"))


async def test_a_press_in_the_window_checks_in_and_the_next_press_is_an_emergency(
    tmp_path: Path,
) -> None:
    uplink = DayUplink(CHECK_IN)
    clock = FakeClock(at(DAY, 8))
    hub, link = make_hub(tmp_path, uplink, clock)
    async with hub.opened():
        await hub.refresh_config()
        await press(hub, 1)
        ((device, ack),) = link.acks
        assert (device, ack.seq, ack.alarm_id, ack.state) == ("btn-1", 1, None, "checked_in")
        assert await outbox(hub) == []  # nothing raised, nobody called
    hub, link = make_hub(tmp_path, uplink, clock)  # a restart keeps the check-in
    async with hub.opened():
        await hub.refresh_config()
        await press(hub, 1, ts=at(DAY, 8))  # the firmware's retry of the same press
        assert [a.state for _, a in link.acks] == [AckState.CHECKED_IN]
        clock.advance(2)
        await press(hub, 2)  # pressed again right after: a call for help
        assert [a.state for _, a in link.acks] == [AckState.CHECKED_IN, AckState.RECEIVED]
        ((kind, body),) = await outbox(hub)
        assert (kind, body["kind"], body["severity"]) == ("alarm", "button", "critical")
        clock.advance(3 * 3600)  # the window's end: the elder checked in, nothing to raise
        await hub.daily_pass(clock.now_ms())
        assert len(await outbox(hub)) == 1


async def test_no_check_in_raises_one_welfare_check_and_nothing_on_the_devices(
    tmp_path: Path,
) -> None:
    uplink = DayUplink(CHECK_IN)
    clock = FakeClock(at(DAY, 7))
    hub, link = make_hub(tmp_path, uplink, clock)
    async with hub.opened():
        await hub.refresh_config()
        for _ in range(4 * 60):  # a pass a minute from 07:00 to 11:00
            clock.advance(60)
            await hub.daily_pass(clock.now_ms())
        ((kind, body),) = await outbox(hub)
        assert kind == "alarm" and link.acks == []  # the devices hear nothing
        assert (body["kind"], body["severity"]) == (AlarmKind.WELFARE, Severity.WARNING)
        assert body["details"]["welfare"] == api.WelfareReason.MISSED_CHECK_IN
        assert body["raised_at_ms"] == at(DAY, 10)
        assert {"usual", "today"} <= set(body["details"])
        stored = await hub.store.alarm(body["alarm_id"])
        assert stored is not None and stored.state is AlarmState.RECEIVED
        await hub.apply_server_state(body["alarm_id"], AlarmState.ACCEPTED, "Dispatcher Wang")
        assert link.acks == []  # the dispatcher phones; the buttons never show its states
        assert hub.core.undelivered_acks(stored) == []
    hub, link = make_hub(tmp_path, uplink, clock)  # a restart does not raise it again
    async with hub.opened():
        await hub.refresh_config()
        await hub.daily_pass(clock.now_ms() + 60_000)
        assert len(await outbox(hub)) == 1
        await press(hub, 5)  # a press after the window: an emergency as always
        assert [a.state for _, a in link.acks] == [AckState.RECEIVED]


async def test_a_day_counted_on_a_clock_far_behind_is_never_uploaded(tmp_path: Path) -> None:
    uplink = DayUplink(api.CarePlan())
    clock = FakeClock(at(DAY, 0) - 6 * 365 * 86_400_000)  # booted without the time
    hub, _ = make_hub(tmp_path, uplink, clock)
    async with hub.opened():
        for _ in range(3):
            clock.advance(60)
            await hub.daily_pass(clock.now_ms())
        clock.advance((at(DAY, 9) - clock.now_ms()) / 1000)  # NTP sets the clock
        await hub.daily_pass(clock.now_ms())
    hub, _ = make_hub(tmp_path, uplink, clock)
    async with hub.opened():  # nor after a restart
        clock.advance(60)
        await hub.daily_pass(clock.now_ms())
        assert [k for k, _ in await outbox(hub)] == []
        kept = [json.loads(b)["day"] for b in await hub.store.days(closed=False)]
        assert kept == [DAY.isoformat()]  # the 2020 day is gone from the store
        assert await hub.store.last_day() == DAY.isoformat()


async def test_no_movement_from_10_raises_one_welfare_check_through_the_hub(
    tmp_path: Path,
) -> None:
    uplink = DayUplink(api.CarePlan())
    clock = FakeClock(at(DAY, 0))
    hub, link = make_hub(tmp_path, uplink, clock)

    def still_from_10(m: int) -> bool:
        return (normal_moving(m) or 590 <= m < 600) and m < 600

    async with hub.opened():
        await hub.refresh_config()
        await live(hub, clock, Day(moving=still_from_10), 0, 14 * 60)
        welfare = [b for k, b in await outbox(hub) if k == "alarm"]
    (body,) = welfare  # one, the pendant still heard all along
    assert (body["kind"], body["severity"], body["device_id"]) == ("welfare", "warning", "pend-1")
    assert body["details"]["welfare"] == api.WelfareReason.INACTIVE_DAYTIME
    # on defaults (no history): 180 min after the last movement at 09:59, at the next pass
    assert at(DAY, 12, 59) <= body["raised_at_ms"] <= at(DAY, 13, 1)
    assert body["details"]["today"]["still_since"] == "09:59"
    assert link.acks == []
