"""No alarm ends in silence, on the hub: while the server refuses the hub's credential the
elder's device hears `not_delivered`, the log says so once (then every few minutes) and the
systemd STATUS line always, the outbox backs off as for any other failure and keeps the
alarm, which is delivered (and the device hears so) once the credential works again. An
alarm refused for good is sent again in its minimal form; refused even so, its device hears
`not_delivered`. Real Mosquitto, a firmware-simulated button, a server answering 401."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from carehub import api_contract as api
from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.clock import FakeClock
from carehub.mqtt_contract import AckState
from carehub.settings import HubSettings
from firmware_sim.button import CallButton
from gateway.hub import Hub
from gateway.hub_core import URGENT_RETRY_CAP_S, HubCore
from gateway.refusal import LOG_EVERY_MS, MINIMAL_MARK, Refusal, minimal_upload
from gateway.store import HubAlarm, OutboxKind
from gateway.uplink import Uplink
from gateway.watchdog import status_line
from harness.broker import Mosquitto

CONFIG = api.HubConfig(
    hub_id="hub-1",
    elder_id="elder-1",
    care_plan=api.CarePlan(),
    devices=[api.DeviceConfig(device_id="btn-1", kind="button")],
)


class AlwaysHigh(random.Random):
    def random(self) -> float:
        return 0.999


# ------------------------------------------------------------ the pure core


def test_while_refused_the_outbox_backs_off_exponentially_alarm_or_not() -> None:
    clock = FakeClock()
    core = HubCore(
        HubSettings(hub_db=Path("unused.db"), retry_initial_s=0.2, retry_max_s=30.0),
        clock,
        AlwaysHigh(),
    )
    fast = [core.retry_delay(OutboxKind.ALARM, a) for a in range(12)]
    assert max(fast) <= URGENT_RETRY_CAP_S  # an outage: an alarm is retried fast
    assert core.refusal.refused_by(401, clock.now_ms())
    slow = [core.retry_delay(OutboxKind.ALARM, a) for a in range(12)]
    assert slow == sorted(slow) and slow[0] < 0.25 and slow[-1] > 29  # grows to the cap
    assert sum(60 / d for d in slow[-3:]) / 3 < 3  # a few tries a minute, not 80
    jittered = HubCore(HubSettings(hub_db=Path("unused.db")), clock, random.Random(7))
    jittered.refusal.refused_by(401, clock.now_ms())
    assert len({jittered.retry_delay(OutboxKind.ALARM, 10) for _ in range(20)}) > 1
    assert core.refusal.accepted()
    assert core.retry_delay(OutboxKind.ALARM, 11) <= URGENT_RETRY_CAP_S


def test_refusal_tells_each_alarm_once_and_logs_every_few_minutes() -> None:
    clock = FakeClock()
    refusal = Refusal()
    assert not refusal.refused and not refusal.log_due(clock.now_ms())
    assert refusal.refused_by(401, clock.now_ms())  # news: logged now
    assert not refusal.refused_by(401, clock.now_ms())
    assert not refusal.log_due(clock.now_ms())
    clock.advance(LOG_EVERY_MS / 1000 - 1)
    assert not refusal.log_due(clock.now_ms())
    clock.advance(1)
    assert refusal.log_due(clock.now_ms()) and not refusal.log_due(clock.now_ms())
    assert refusal.to_tell(["a1", "a2"]) == ["a1", "a2"]
    assert refusal.to_tell(["a1", "a2", "a3"]) == ["a3"]
    assert refusal.accepted() and not refusal.accepted()
    assert refusal.delivered("a1") and not refusal.delivered("a1")


def test_a_new_alarm_while_refused_is_acked_not_delivered() -> None:
    core = HubCore(HubSettings(hub_db=Path("unused.db")), FakeClock())
    alarm = HubAlarm("a1", "btn-1", 4, AlarmKind.BUTTON, Severity.CRITICAL, AlarmState.RECEIVED, 0)
    assert core.new_alarm_ack(alarm) is AckState.RECEIVED
    core.refusal.refused_by(403, 0)
    assert core.new_alarm_ack(alarm) is AckState.NOT_DELIVERED and "a1" in core.refusal.told
    ((device, ack),) = core.undelivered_acks(alarm)
    assert (device, ack.seq, ack.alarm_id, ack.state) == ("btn-1", 4, "a1", AckState.NOT_DELIVERED)


def test_the_minimal_form_of_an_alarm_is_one_any_server_takes() -> None:
    body = {
        "alarm_id": "a1",
        "device_id": "btn-1",
        "kind": "fall",
        "severity": "critical",
        "seq": None,
        "raised_at_ms": 5,
        "event_ts_ms": 4,
        "details": {"window": list(range(10_000))},
        "test": False,
    }
    minimal = minimal_upload(body, 413)
    assert minimal is not None and minimal["details"] == {MINIMAL_MARK: 413}
    assert "seq" not in minimal
    api.AlarmUpload.model_validate(minimal)
    assert minimal_upload(minimal, 422) is None  # refused in that form too: nothing smaller


# ------------------------------------------------------------ the shell, for real


class Server:
    """The hub API as an `httpx.MockTransport`: 401 to everything while `refusing`, else
    alarms are taken (201) and recorded; `refuse_details` answers 422 to an alarm whose
    details are not the minimal form's."""

    def __init__(self) -> None:
        self.refusing = True
        self.refuse_details = False
        self.refuse_alarms = False
        self.tries = 0
        self.alarms: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.refusing:
            if request.url.path == api.ALARMS_PATH:
                self.tries += 1
            return httpx.Response(401, json={"detail": "unknown hub token; re-enroll the hub"})
        path = request.url.path
        if path == api.ALARMS_PATH:
            body = json.loads(request.content)
            if self.refuse_alarms or (self.refuse_details and MINIMAL_MARK not in body["details"]):
                return httpx.Response(422, json={"detail": "details refused"})
            self.alarms.append(body)
            return httpx.Response(
                201, json={"alarm_id": body["alarm_id"], "state": "received", "created": True}
            )
        if path == api.ALARM_UPDATES_PATH:
            await asyncio.sleep(0.2)
            return httpx.Response(
                200, json={"updates": [], "cursor": int(request.url.params["after"])}
            )
        if path == api.HUB_CONFIG_PATH:
            return httpx.Response(200, content=CONFIG.model_dump_json())
        return httpx.Response(204)


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_hub(tmp_path: Path, broker: Mosquitto, server: Server):  # type: ignore[no-untyped-def]
    settings = HubSettings(
        hub_db=tmp_path / "hub.db",
        hub_broker_dir=tmp_path / "broker",
        mqtt_port=broker.port,
        mqtt_client_id=f"hub-{uuid.uuid4().hex[:8]}",
        retry_initial_s=0.05,
        retry_max_s=0.4,
        heartbeat_interval_s=0.5,
    )
    uplink = Uplink("http://server.test", "old-token", 5.0, transport=httpx.MockTransport(server))
    hub = Hub(settings, uplink=uplink)
    task = asyncio.create_task(hub.run())
    try:
        await until(lambda: hub.link.connected.is_set())
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def states(button: CallButton, seq: int) -> list[AckState]:
    return [a.state for _, a in list(button.acks.entries) if a.seq == seq]


async def test_a_refused_hub_tells_the_device_and_delivers_once_the_credential_works(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = Server()
    async with running_hub(tmp_path, mosquitto, server) as hub:
        with CallButton("btn-1", "127.0.0.1", mosquitto.port, retry_s=0.5) as button:
            await asyncio.to_thread(button.connected.wait, 10)
            seq = await asyncio.to_thread(button.press, "press", 10.0)
            await until(lambda: AckState.NOT_DELIVERED in states(button, seq))
            assert AckState.DISPATCHED not in states(button, seq)
            await until(lambda: server.tries >= 4)  # the outbox keeps trying, backing off
            refused = [
                r for r in caplog.records if "refuses this hub's credential" in r.getMessage()
            ]
            assert len(refused) == 1 and refused[0].levelno == logging.ERROR  # said once
            line = status_line(hub, [])
            assert "REFUSES THE HUB'S CREDENTIAL (HTTP 401)" in line and "1 alarms" in line
            assert server.alarms == []

            server.refusing = False  # re-enrolled, or the office fixed the token
            await until(lambda: len(server.alarms) == 1)
            await until(lambda: states(button, seq)[-1] is AckState.RECEIVED)
            assert server.alarms[0]["device_id"] == "btn-1"
            assert "REFUSES" not in status_line(hub, [])


async def test_an_alarm_refused_for_good_is_sent_again_in_its_minimal_form(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    server = Server()
    server.refusing, server.refuse_details = False, True
    async with running_hub(tmp_path, mosquitto, server):
        with CallButton("btn-1", "127.0.0.1", mosquitto.port, retry_s=0.5) as button:
            await asyncio.to_thread(button.connected.wait, 10)
            seq = await asyncio.to_thread(button.press, "press", 10.0)
            await until(lambda: len(server.alarms) == 1)
            assert server.alarms[0]["details"] == {MINIMAL_MARK: 422}
            assert AckState.NOT_DELIVERED not in states(button, seq)


async def test_an_alarm_refused_even_in_its_minimal_form_is_told_not_delivered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    server = Server()
    server.refusing, server.refuse_alarms = False, True
    async with running_hub(tmp_path, mosquitto, server) as hub:
        with CallButton("btn-1", "127.0.0.1", mosquitto.port, retry_s=0.5) as button:
            await asyncio.to_thread(button.connected.wait, 10)
            seq = await asyncio.to_thread(button.press, "press", 10.0)
            await until(lambda: AckState.NOT_DELIVERED in states(button, seq))
            assert server.alarms == [] and len(hub.core.refusal.told) == 1
