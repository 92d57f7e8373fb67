"""The hub honours a busy server's ``503`` + ``Retry-After`` for its maintenance traffic
(heartbeats, fault uploads, config) and never for an alarm (`gateway.server_busy`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from carehub import api_contract as api
from carehub.clock import FakeClock
from gateway.server_busy import MAX_RETRY_AFTER_S, ServerBusy
from gateway.store import OutboxKind
from gateway.uplink import Uplink, UplinkError
from tests.test_hub_shell import FakeUplink, button, make_hub, wait_until


def test_retry_after_delays_the_next_heartbeat_and_faults_but_never_an_alarm() -> None:
    clock = FakeClock()
    busy = ServerBusy(clock)
    assert busy.next_heartbeat_s(30.0) == 30.0 and not busy.holds(OutboxKind.FAULT)
    busy.told(45)
    assert busy.next_heartbeat_s(30.0) == 45.0  # at least what the server asked
    assert busy.holds(OutboxKind.FAULT)
    assert not busy.holds(OutboxKind.ALARM) and not busy.holds(OutboxKind.REPORT)
    clock.advance(20)
    assert busy.wait_s() == 25.0 and busy.next_heartbeat_s(30.0) == 30.0
    busy.told(5)  # a shorter answer does not cut a longer rest short
    assert busy.wait_s() == 25.0
    clock.advance(25)
    assert busy.wait_s() == 0 and not busy.holds(OutboxKind.FAULT)
    busy.told(10**9)  # no answer silences a hub for long
    assert busy.wait_s() == MAX_RETRY_AFTER_S


async def test_uplink_reads_retry_after_of_a_503_only() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == api.HUB_HEARTBEAT_PATH:
            return httpx.Response(503, headers={"Retry-After": "27"}, json={"detail": "busy"})
        if request.url.path == api.FAULTS_PATH:
            return httpx.Response(503, headers={"Retry-After": "soon"})
        return httpx.Response(429, headers={"Retry-After": "9"})

    uplink = Uplink("http://server", "t", 5.0, transport=httpx.MockTransport(answer))
    beat = api.HubHeartbeat(uptime_s=1.0, queue_depth=0, devices_online=0, version="x")
    try:
        try:
            await uplink.heartbeat(beat)
        except UplinkError as e:
            assert e.retryable and e.retry_after_s == 27.0
        else:
            raise AssertionError("a 503 is an error")
        for kind in (OutboxKind.FAULT, OutboxKind.ALARM):  # unreadable; not a 503
            try:
                await uplink.send(kind, {})
            except UplinkError as e:
                assert e.retryable and e.retry_after_s is None
    finally:
        await uplink.aclose()


class BusyServer(FakeUplink):
    """Refuses maintenance with 503 + Retry-After (as `server.admission` under overload);
    takes alarms."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__()
        self.retry_after_s = retry_after_s
        self.refused: list[str] = []

    async def send(self, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self.attempts += 1
        if kind != OutboxKind.ALARM:
            self.refused.append(kind)
            raise UplinkError("HTTP 503: busy", retry_after_s=self.retry_after_s)
        self.sent.append((kind, body))
        return None

    async def heartbeat(self, beat: api.HubHeartbeat) -> None:
        self.refused.append("heartbeat")
        raise UplinkError("HTTP 503: busy", retry_after_s=self.retry_after_s)


async def test_alarms_pass_refused_maintenance_which_waits_out_the_retry_after(
    tmp_path: Path,
) -> None:
    uplink = BusyServer(retry_after_s=30)
    hub, link = make_hub(tmp_path, uplink, retry_initial_s=0.2, heartbeat_interval_s=0.01)
    assert isinstance(hub.clock, FakeClock)
    run = asyncio.create_task(hub.run())
    try:
        await wait_until(link.running.is_set)
        await wait_until(lambda: uplink.refused == ["heartbeat"])  # 503: rest 30 s
        assert hub.busy.wait_s() == 30.0
        await hub.store.enqueue("fault", "f1", {"report_id": "f1"}, hub.clock.now_ms())
        hub._queued(OutboxKind.FAULT)
        await hub.handle_message(*button(hub, "btn-1", 1))
        await wait_until(lambda: [k for k, _ in uplink.sent] == ["alarm"])  # never held
        # neither the fault nor another heartbeat was tried while the server rests
        assert uplink.refused == ["heartbeat"]
        hub.clock.advance(31)  # the rest is over: the fault (at the head) is tried
        await wait_until(lambda: uplink.refused[-1:] == ["fault"], timeout_s=10)
        # refused again: a second alarm still passes the fault at the head of the outbox
        await hub.handle_message(*button(hub, "btn-1", 2))
        await wait_until(lambda: [k for k, _ in uplink.sent] == ["alarm", "alarm"])
        assert uplink.refused == ["heartbeat", "fault"]
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
