"""Alarms first: under overload maintenance gets ``503`` + ``Retry-After`` before any work,
alarms are always admitted (`server.admission`, `server.alarms_first`)."""

from __future__ import annotations

import random
import select
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from carehub import api_contract as api
from carehub.clock import FakeClock
from harness.broker import free_port
from harness.processes import Child, wait_http_ok, wait_until
from server.admission import Admission, AdmissionLimits, Lane, Overload, lane_of
from tests.conftest import DIRECTORY

TOKEN = "hub-token-" + "a" * 20
ADMIN = "admin-token-for-tests"


@pytest.mark.parametrize(
    ("method", "path", "lane"),
    [
        ("POST", api.ALARMS_PATH, Lane.ALARM),
        ("POST", api.ALARM_REPORTS_PATH, Lane.ALARM),
        ("GET", api.ALARM_UPDATES_PATH, Lane.ALARM),
        ("POST", "/twilio/status", Lane.ALARM),
        ("GET", "/r/abc/def", Lane.ALARM),
        ("GET", "/console/alarms/42", Lane.ALARM),
        ("POST", api.HUB_HEARTBEAT_PATH, Lane.MAINTENANCE),
        ("POST", api.FAULTS_PATH, Lane.MAINTENANCE),
        ("GET", api.HUB_CONFIG_PATH, Lane.MAINTENANCE),
        ("GET", "/console/health", Lane.MAINTENANCE),
        ("GET", "/console/kpi", Lane.MAINTENANCE),
        ("GET", "/console/elders/e-1", Lane.MAINTENANCE),
        ("GET", "/console/health/events", Lane.OTHER),  # a long-lived stream, not counted
        ("GET", "/console/", Lane.OTHER),  # the alarm board
        ("GET", "/console/events", Lane.OTHER),
        ("GET", "/console/login", Lane.OTHER),
        ("GET", api.HEALTH_PATH, Lane.OTHER),  # a load balancer's probe is never refused
        ("POST", api.ENROLL_PATH, Lane.OTHER),
        ("GET", api.FAULTS_PATH, Lane.OTHER),  # no such read: routing answers it
    ],
)
def test_each_request_has_its_lane(method: str, path: str, lane: Lane) -> None:
    assert lane_of(method, path) is lane


def admission(clock: FakeClock, **limits: object) -> Admission:
    return Admission(AdmissionLimits(**limits), clock, random.Random(1))  # type: ignore[arg-type]


def test_maintenance_over_the_in_flight_bound_is_refused_and_alarms_never_are() -> None:
    adm = admission(FakeClock(), max_maintenance_in_flight=2, retry_after_s=20)
    assert adm.admit(Lane.MAINTENANCE).admitted and adm.admit(Lane.MAINTENANCE).admitted
    refused = adm.admit(Lane.MAINTENANCE)
    assert not refused.admitted and refused.reason is Overload.IN_FLIGHT
    assert 20 <= refused.retry_after_s <= 40
    assert adm.admit(Lane.ALARM).admitted and adm.admit(Lane.OTHER).admitted
    assert adm.in_flight == 2  # neither the refused nor the alarm counts
    adm.done()
    assert adm.admit(Lane.MAINTENANCE).admitted


def test_retry_after_is_spread_over_base_to_twice_base() -> None:
    adm = admission(FakeClock(), max_maintenance_in_flight=1, retry_after_s=10)
    adm.admit(Lane.MAINTENANCE)
    waits = {adm.admit(Lane.MAINTENANCE).retry_after_s for _ in range(200)}
    assert min(waits) == 10 and max(waits) == 20 and len(waits) > 5


def test_loop_lag_over_the_limit_refuses_maintenance_for_the_hold_then_admits() -> None:
    clock = FakeClock()
    adm = admission(clock, loop_lag_s=0.15, lag_ticks=3, hold_s=5.0)
    for lag in (0.4, 0.4, 0.1, 0.4, 0.4):  # one tick back on time: not in a row
        adm.note_lag(lag)
    assert adm.overload() is None and adm.admit(Lane.MAINTENANCE).admitted
    adm.done()
    adm.note_lag(0.4)  # the third late tick in a row
    verdict = adm.admit(Lane.MAINTENANCE)
    assert not verdict.admitted and verdict.reason is Overload.LOOP_LAG
    assert adm.admit(Lane.ALARM).admitted
    assert adm.refused_within(1.0)
    clock.advance(4.9)
    assert not adm.admit(Lane.MAINTENANCE).admitted
    clock.advance(0.2)
    assert adm.admit(Lane.MAINTENANCE).admitted
    clock.advance(60)
    assert not adm.refused_within(30.0)


def test_disabled_admits_everything() -> None:
    adm = admission(FakeClock(), enabled=False, max_maintenance_in_flight=1)
    adm.note_lag(10.0)
    assert all(adm.admit(Lane.MAINTENANCE).admitted for _ in range(5))


# ---------------------------------------------------------------- a real server process


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Child]]:
    """`carehub server` on `database_url` with room for one maintenance request at a time
    (the loop-lag limit out of reach, so only the in-flight bound decides)."""
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token=TOKEN))
    port = free_port()
    child = Child(
        "server",
        ["server", "--directory", str(tmp_path / "directory.toml")],
        {
            "CAREHUB_DATABASE_URL": database_url,
            "CAREHUB_PORT": str(port),
            "CAREHUB_ADMIN_TOKEN": ADMIN,
            "CAREHUB_SECRET_KEY": "s" * 32,
            "CAREHUB_MAINTENANCE_MAX_IN_FLIGHT": "1",
            "CAREHUB_OVERLOAD_LOOP_LAG_MS": "60000",
            "CAREHUB_MAINTENANCE_RETRY_AFTER_S": "7",
        },
        tmp_path / "server.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/healthz", 60, child)
        yield base, child
    finally:
        child.stop()


def _half_sent_fault(base: str) -> socket.socket:
    """A fault report whose body never finishes: a maintenance request held in flight."""
    port = int(base.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        (
            f"POST {api.FAULTS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            "Content-Length: 400\r\n\r\n{"
        ).encode()
    )
    return sock


def _answered(sock: socket.socket) -> bool:
    """Whether the server has answered (or closed) the half-sent request's connection."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


@pytest.mark.integration
def test_over_the_bound_a_heartbeat_gets_503_retry_after_and_an_alarm_is_stored(
    server: tuple[str, Child],
) -> None:
    server_url, child = server
    hub = httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {TOKEN}"})
    beat = {"uptime_s": 1.0, "queue_depth": 0, "devices_online": 1, "version": "t"}
    assert hub.post(api.HUB_HEARTBEAT_PATH, json=beat).status_code == 204
    held = _half_sent_fault(server_url)
    try:
        refused: list[httpx.Response] = []

        def heartbeat_refused() -> bool:
            nonlocal held
            if _answered(held):  # refused itself: the first heartbeat was still in flight
                held.close()
                held = _half_sent_fault(server_url)
            r = hub.post(api.HUB_HEARTBEAT_PATH, json=beat)
            refused.append(r)
            return r.status_code == 503

        wait_until(heartbeat_refused, 60, "a heartbeat refused while a fault is in flight", [child])
        r = refused[-1]
        assert 7 <= int(r.headers["retry-after"]) <= 14, r.headers
        assert "retry after" in r.json()["detail"]
        alarm_id = uuid.uuid4().hex
        upload = {
            "alarm_id": alarm_id,
            "device_id": "btn-1",
            "kind": "button",
            "raised_at_ms": int(time.time() * 1000),
        }
        stored = hub.post(api.ALARMS_PATH, json=upload)
        assert stored.status_code == 201, stored.text
        # and the refused heartbeat's request did no work: still refused, alarm stored
        assert hub.get(api.HUB_CONFIG_PATH).status_code == 503
        alarms = httpx.get(
            f"{server_url}/api/v1/admin/alarms", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
        assert [a["hub_alarm_id"] for a in alarms] == [alarm_id]
    finally:
        held.close()
    # the fault's request ends (its client went away): maintenance is admitted again
    wait_until(
        lambda: hub.post(api.HUB_HEARTBEAT_PATH, json=beat).status_code == 204,
        60,
        "a heartbeat admitted again",
        [child],
    )
    hub.close()


async def test_no_hub_is_marked_offline_while_heartbeats_are_being_refused() -> None:
    """The hub watch skips its pass while maintenance was refused within the offline
    window: hubs told to come back later are not offline."""
    import asyncio
    from types import SimpleNamespace

    from server.app import _watch_hubs

    clock = FakeClock()
    adm = admission(clock, max_maintenance_in_flight=1)
    adm.admit(Lane.MAINTENANCE)
    assert not adm.admit(Lane.MAINTENANCE).admitted  # a heartbeat refused now
    passes: list[int] = []

    async def mark_stale_hubs_offline(now_ms: int, after_ms: int) -> list[str]:
        passes.append(now_ms)
        return []

    class Settings:
        reads = 0

        @property
        def hub_offline_after_s(self) -> float:  # read on every pass of the watch
            Settings.reads += 1
            return 0.03  # a pass every 10 ms

    rt = SimpleNamespace(
        settings=Settings(),
        store=SimpleNamespace(mark_stale_hubs_offline=mark_stale_hubs_offline),
        clock=clock,
    )
    watch = asyncio.create_task(_watch_hubs(rt, adm))  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 5
        while Settings.reads < 20:  # ten passes or so: none looked for stale hubs
            assert time.monotonic() < deadline, "the hub watch did not run"
            await asyncio.sleep(0.01)
        assert passes == []
        clock.advance(0.05)  # the refusal is older than the offline window
        deadline = time.monotonic() + 5
        while not passes:
            assert time.monotonic() < deadline, "the hub watch never looked again"
            await asyncio.sleep(0.01)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
