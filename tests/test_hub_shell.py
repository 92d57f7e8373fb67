"""The real `Hub` (shell) on a temporary SQLite store, with a fake clock, a fake uplink and a
fake device link: `handle_message` is called directly (no broker)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from carehub import api_contract as api
from carehub.alarm_lifecycle import AlarmState
from carehub.clock import FakeClock
from carehub.mqtt_contract import Ack, AckState, ButtonEvent, Channel, Topics, encode
from carehub.settings import HubSettings
from edge.fall_detection import FallEvent
from gateway.hub import Hub
from gateway.loop_guard import RestartPolicy
from gateway.uplink import UplinkError

CONFIG = api.HubConfig(
    hub_id="hub-1",
    elder_id="elder-1",
    care_plan=api.CarePlan(),
    devices=[
        api.DeviceConfig(device_id="btn-1", kind="button"),
        api.DeviceConfig(device_id="btn-2", kind="button"),
        api.DeviceConfig(device_id="pend-1", kind="pendant"),
    ],
)


class FakeUplink:
    """A server: `broken` is raised by every call; uploads are recorded."""

    def __init__(self, broken: Exception | None = None, html: bool = False) -> None:
        self.broken = broken
        self.html = html
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0

    async def send(self, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self.attempts += 1
        if self.broken:
            raise self.broken
        self.sent.append((kind, body))
        return None

    async def updates(self, after: int, wait_s: float) -> api.AlarmUpdates:
        if self.broken:
            raise self.broken
        await asyncio.sleep(wait_s)
        return api.AlarmUpdates(updates=[], cursor=after)

    async def config(self) -> api.HubConfig:
        if self.html:  # a captive portal or proxy: 200 text/html
            return api.HubConfig.model_validate_json(b"<html><body>Sign in</body></html>")
        if self.broken:
            raise self.broken
        return CONFIG

    async def heartbeat(self, beat: api.HubHeartbeat) -> None:
        if self.broken:
            raise self.broken

    async def aclose(self) -> None:
        pass


class FakeLink:
    def __init__(self, handler: Callable[[str, bytes], Awaitable[None]]) -> None:
        self.handler = handler
        self.connected = asyncio.Event()
        self.running = asyncio.Event()
        self.acks: list[tuple[str, Ack]] = []

    async def run(self) -> None:
        self.running.set()
        self.connected.set()
        await asyncio.Event().wait()

    async def send_ack(self, device_id: str, ack: Ack) -> bool:
        self.acks.append((device_id, ack))
        return True


def make_hub(tmp_path: Path, uplink: FakeUplink, **overrides: Any) -> tuple[Hub, FakeLink]:
    settings = HubSettings(hub_db=tmp_path / "hub.db", **overrides)
    hub = Hub(settings, FakeClock(), uplink, link=FakeLink)
    hub.restart_policy = RestartPolicy(initial_s=0.01, cap_s=0.05)
    assert isinstance(hub.link, FakeLink)
    return hub, hub.link


def button(hub: Hub, device: str, seq: int, action: str = "press") -> tuple[str, bytes]:
    topic = Topics(hub.settings.base_topic).device(device, Channel.BUTTON)
    ts = hub.clock.now_ms()
    return topic, encode(ButtonEvent(v=1, seq=seq, ts=ts, action=action))  # type: ignore[arg-type]


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_press_is_stored_and_acked_and_a_cancel_cancels_it(tmp_path: Path) -> None:
    hub, link = make_hub(tmp_path, FakeUplink())
    async with hub.opened():
        await hub.refresh_config()
        await hub.handle_message(*button(hub, "btn-1", 1))
        ((device, ack),) = link.acks
        assert (device, ack.seq, ack.state) == ("btn-1", 1, AckState.RECEIVED)
        assert ack.alarm_id is not None
        stored = await hub.store.alarm(ack.alarm_id)
        assert stored is not None and stored.state is AlarmState.RECEIVED
        head = await hub.store.next_pending()
        assert head is not None and (head.kind, head.ref) == ("alarm", ack.alarm_id)

        await hub.handle_message(*button(hub, "btn-1", 1))  # firmware retry: same alarm
        assert link.acks[-1][1].alarm_id == ack.alarm_id

        await hub.handle_message(*button(hub, "btn-2", 1, "cancel"))
        assert [(d, a.state) for d, a in link.acks[-2:]] == [
            ("btn-2", AckState.CANCELLED),
            ("btn-1", AckState.CANCELLED),
        ]
        cancelled = await hub.store.alarm(ack.alarm_id)
        assert cancelled is not None and cancelled.state is AlarmState.CANCELLED
        assert await hub.store.queue_depth() == 2  # the alarm and its cancel report


async def test_a_cancel_after_the_horizon_cancels_nothing(tmp_path: Path) -> None:
    hub, link = make_hub(tmp_path, FakeUplink())
    async with hub.opened():
        await hub.handle_message(*button(hub, "btn-1", 1))
        assert isinstance(hub.clock, FakeClock)
        hub.clock.advance(31 * 60)
        await hub.handle_message(*button(hub, "btn-1", 2, "cancel"))
        assert link.acks[-1][1].alarm_id is None
        alarm = await hub.store.alarm(str(link.acks[0][1].alarm_id))
        assert alarm is not None and alarm.state is AlarmState.RECEIVED


async def test_a_fall_from_replayed_frames_uploads_how_late_it_was(tmp_path: Path) -> None:
    uplink = FakeUplink()
    hub, link = make_hub(tmp_path, uplink, fall_cancel_window_s=1)
    async with hub.opened():
        now = hub.clock.now_ms()
        event = FallEvent(now - 90_000, now - 83_000, 4.0, 0.9, 50.0, now - 92_000, [])
        await hub.on_fall("pend-1", event)
        assert link.acks == []  # still inside its cancel window
        assert isinstance(hub.clock, FakeClock)
        hub.clock.advance(1)
        await hub.fall_windows_pass()
        entry = await hub.store.next_pending()
        assert entry is not None and entry.kind == "alarm"
        assert entry.body["details"]["late_by_ms"] == 90_000
        assert link.acks[-1][1].state is AckState.RECEIVED


async def test_an_unknown_device_is_dropped_with_its_reason_counted(tmp_path: Path) -> None:
    hub, link = make_hub(tmp_path, FakeUplink())
    label = {"reason": "unknown_device"}
    before = REGISTRY.get_sample_value("carehub_hub_messages_dropped_total", label) or 0
    async with hub.opened():
        await hub.refresh_config()
        await hub.handle_message(*button(hub, "stranger", 1))
    assert link.acks == []
    assert REGISTRY.get_sample_value("carehub_hub_messages_dropped_total", label) == before + 1


@pytest.mark.parametrize(
    "broken",
    [
        RuntimeError("a bug in the uplink"),
        ValueError("1 validation error for AlarmUpdates: input is <html>"),
        UplinkError("connection refused"),
    ],
)
async def test_a_hub_whose_server_is_garbage_still_stores_and_acks_presses(
    tmp_path: Path, broken: Exception
) -> None:
    uplink = FakeUplink(broken, html=True)
    hub, link = make_hub(tmp_path, uplink)
    restarts = {"loop": "outbox"}
    before = REGISTRY.get_sample_value("carehub_hub_loop_restarts_total", restarts) or 0
    run = asyncio.create_task(hub.run())
    try:
        await wait_until(link.running.is_set)
        await hub.handle_message(*button(hub, "btn-1", 1))
        assert [a.state for _, a in link.acks] == [AckState.RECEIVED]
        assert await hub.store.queue_depth() == 1
        await wait_until(lambda: uplink.attempts >= 2)  # the outbox keeps trying
        if isinstance(broken, RuntimeError):  # a failing loop is restarted and counted
            count = lambda: REGISTRY.get_sample_value("carehub_hub_loop_restarts_total", restarts)  # noqa: E731
            await wait_until(lambda: (count() or 0) >= before + 2)
        assert not run.done()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_queued_alarms_reach_a_returning_server_within_two_seconds(tmp_path: Path) -> None:
    uplink = FakeUplink(UplinkError("server down"))
    hub, link = make_hub(tmp_path, uplink, retry_initial_s=0.2, retry_max_s=30)
    run = asyncio.create_task(hub.run())
    try:
        await wait_until(link.running.is_set)
        await hub.handle_message(*button(hub, "btn-1", 1))
        await wait_until(lambda: uplink.attempts >= 5, timeout_s=10)  # well into the backoff
        uplink.broken = None
        back = time.monotonic()
        await wait_until(lambda: len(uplink.sent) == 1, timeout_s=5)
        assert time.monotonic() - back < 2.0
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_a_backoff_is_cut_short_only_by_a_queued_alarm_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uplink = FakeUplink(UplinkError("server down"))
    hub, link = make_hub(tmp_path, uplink, retry_initial_s=60, retry_max_s=60)
    caplog.set_level(logging.INFO, logger="gateway.hub")
    run = asyncio.create_task(hub.run())
    try:
        await wait_until(link.running.is_set)
        await hub.store.enqueue("fault", "f1", {"report_id": "f1"}, hub.clock.now_ms())
        hub._queued("fault")
        await wait_until(lambda: uplink.attempts == 1)  # now waiting 30-60 s
        assert not hub._alarm_wake.is_set()  # a fault does not cut the wait short
        await hub.handle_message(*button(hub, "btn-1", 1))
        await wait_until(lambda: uplink.attempts >= 2, timeout_s=2)
        failed, early = [m for r in caplog.records if "fault f1" in (m := r.getMessage())][:2]
        assert "retry in" in failed and "alarm queued: retrying fault f1 after" in early
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
