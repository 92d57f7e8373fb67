"""Issue 24 end to end on the hub: a real Mosquitto, the hub's loops running, a firmware-
simulated call button, the hub API as an `httpx.MockTransport` behind the real `Uplink`. The
first press in the window is acked `checked_in` and reaches no one; the next is an emergency;
once the day is over its summary is POSTed to ``/api/v1/hub/summaries`` once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from carehub import api_contract as api
from carehub.clock import FakeClock
from carehub.mqtt_contract import AckState
from carehub.settings import HubSettings
from firmware_sim.button import CallButton
from gateway.hub import Hub
from gateway.uplink import Uplink
from harness.broker import Mosquitto


def noon_zone(now: datetime) -> str:
    """An IANA zone in which `now` (UTC) is around midday, so a window fits around it."""
    offset = 12 - now.hour
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


class Server:
    """The hub API: the config with the care plan, alarms and summaries recorded."""

    def __init__(self, plan: api.CarePlan) -> None:
        self.config = api.HubConfig(
            hub_id="hub-1",
            elder_id="elder-1",
            care_plan=plan,
            devices=[api.DeviceConfig(device_id="btn-1", kind="button")],
        )
        self.alarms: list[dict[str, Any]] = []
        self.summaries: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == api.ALARMS_PATH:
            body = json.loads(request.content)
            self.alarms.append(body)
            return httpx.Response(
                201, json={"alarm_id": body["alarm_id"], "state": "received", "created": True}
            )
        if path == api.SUMMARIES_PATH:
            body = json.loads(request.content)
            created = all(s["day"] != body["day"] for s in self.summaries)
            self.summaries.append(body)
            return httpx.Response(201, json={"day": body["day"], "created": created})
        if path == api.ALARM_UPDATES_PATH:
            await asyncio.sleep(0.2)
            return httpx.Response(
                200, json={"updates": [], "cursor": int(request.url.params["after"])}
            )
        if path == api.HUB_CONFIG_PATH:
            return httpx.Response(200, content=self.config.model_dump_json())
        return httpx.Response(204)


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_hub(
    tmp_path: Path, broker: Mosquitto, server: Server, clock: FakeClock
) -> AsyncIterator[Hub]:
    settings = HubSettings(
        hub_db=tmp_path / "hub.db",
        hub_broker_dir=tmp_path / "broker",
        mqtt_port=broker.port,
        mqtt_client_id=f"hub-{uuid.uuid4().hex[:8]}",
        retry_initial_s=0.05,
        retry_max_s=0.4,
        heartbeat_interval_s=0.5,
        device_offline_after_s=2.0,  # supervision (and the day's pass) every 0.5 s
    )
    uplink = Uplink("http://server.test", "token", 5.0, transport=httpx.MockTransport(server))
    hub = Hub(settings, clock, uplink=uplink)
    task = asyncio.create_task(hub.run())
    try:
        await until(lambda: hub.link.connected.is_set() and hub.config is not None)
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_check_in_then_emergency_then_the_days_summary(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    now = datetime.now(UTC)
    zone = noon_zone(now)
    local = now.astimezone(ZoneInfo(zone))
    window = api.CheckInPlan(
        window_start=(local - timedelta(hours=1)).strftime("%H:%M"),
        window_end=(local + timedelta(hours=1)).strftime("%H:%M"),
    )
    server = Server(api.CarePlan(time_zone=zone, check_in=window))
    clock = FakeClock(int(now.timestamp() * 1000))
    async with running_hub(tmp_path, mosquitto, server, clock) as hub:
        with CallButton("btn-1", "127.0.0.1", mosquitto.port, retry_s=0.5) as button:
            await asyncio.to_thread(button.connected.wait, 10)
            first = await asyncio.to_thread(button.press, "press", 10.0)
            acks = [a for _, a in list(button.acks.entries) if a.seq == first]
            assert [(a.state, a.alarm_id) for a in acks] == [(AckState.CHECKED_IN, None)]
            second = await asyncio.to_thread(button.press, "press", 10.0)
            await until(lambda: len(server.alarms) == 1)
            assert server.alarms[0]["kind"] == "button" and server.alarms[0]["seq"] == second
            states = [a.state for _, a in list(button.acks.entries) if a.seq == second]
            assert states[0] is AckState.RECEIVED

        clock.advance(24 * 3600)  # the next day: yesterday's summary goes to the server
        await until(lambda: len(server.summaries) == 1)
        for _ in range(3):  # later passes queue nothing again
            await hub.daily_pass(clock.now_ms())
        async with hub.store.db.execute("SELECT count(*) FROM outbox WHERE kind='summary'") as c:
            assert (await c.fetchone())[0] == 1
        (summary,) = server.summaries
        assert summary["day"] == local.date().isoformat()
        assert (summary["check_ins"], summary["presses"], summary["complete"]) == (1, 1, False)
        assert len(server.alarms) == 1  # no welfare check: the elder checked in
