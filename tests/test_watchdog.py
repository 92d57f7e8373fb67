"""systemd's watchdog: the notification datagrams on a real AF_UNIX socket, the health and
ping decisions on a fake clock, the real `Hub` falling silent when a loop is stuck or dead,
and the real hub process saying READY=1 then WATCHDOG=1."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carehub.clock import FakeClock, SystemClock
from carehub.settings import HubSettings
from gateway import hub as hub_module
from gateway.hub import Hub
from gateway.loop_guard import RestartPolicy, keep_running
from gateway.loop_health import LoopHealth, PingSchedule
from gateway.sd_notify import Notifier
from gateway.watchdog import report_to_systemd
from tests.conftest import Deployment
from tests.test_hub_shell import FakeLink, FakeUplink


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket, read without blocking."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        """Every line received so far (one datagram may hold several)."""
        while True:
            try:
                self.received += self.sock.recv(4096).decode().split("\n")
            except BlockingIOError:
                return self.received

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


# ------------------------------------------------------------ the protocol


def test_notifier_sends_one_datagram_of_lines(notify_socket: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(notify_socket.path)})
    assert notifier.enabled
    assert notifier.notify("READY=1", "STATUS=ok")
    assert notify_socket.sock.recv(4096) == b"READY=1\nSTATUS=ok"


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"carehub-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notifier_outside_systemd_does_nothing(tmp_path: Path) -> None:
    assert not Notifier({}).enabled and not Notifier({}).notify("READY=1")
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert gone.enabled and not gone.notify("READY=1")  # refused: no exception


def test_watchdog_period_is_read_only_when_meant_for_this_process() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_s == 30.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_s
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_s is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_s is None


# ------------------------------------------------------------ the decisions


def test_pings_come_every_half_period_while_healthy() -> None:
    clock, schedule = FakeClock(), PingSchedule(watchdog_s=30)
    sent = []
    for _ in range(121):  # 60 s in 0.5 s steps
        if schedule.due(clock.monotonic(), healthy=True):
            sent.append(clock.monotonic())
        clock.advance(0.5)
    assert sent == [0.0, 15.0, 30.0, 45.0, 60.0]
    assert schedule.next_check_s() <= 15.0 / 4


def test_no_ping_while_unhealthy_and_one_at_once_when_healthy_again() -> None:
    clock, schedule = FakeClock(), PingSchedule(watchdog_s=30)
    assert schedule.due(clock.monotonic(), healthy=True)
    clock.advance(20)
    assert not schedule.due(clock.monotonic(), healthy=False)
    clock.advance(5)
    assert schedule.due(clock.monotonic(), healthy=True)  # overdue: at once


def test_a_loop_past_its_promise_is_stuck_and_an_idle_one_is_not() -> None:
    clock = FakeClock()
    health = LoopHealth(clock)
    health.expect("supervision", "device-link")
    assert not health.all_started()
    health.started("supervision")
    health.started("device-link")
    assert health.all_started() and health.problems() == []
    health.promise("supervision", 65)
    health.idle("device-link")  # waiting for messages: no deadline
    clock.advance(3600)
    assert health.problems() == ["loop supervision stuck for 3535 s past its due time"]
    health.promise("supervision", 65)  # it came back
    assert health.problems() == []


def test_a_loop_failing_in_a_row_is_dead_until_it_runs_calmly() -> None:
    clock = FakeClock()
    health = LoopHealth(clock, max_failures=3, calm_s=60)
    for _ in range(2):
        health.started("outbox")
        health.failed("outbox")
        clock.advance(1)
    assert health.problems() == []
    health.started("outbox")
    health.failed("outbox")
    assert health.problems() == ["loop outbox failed 3 times in a row"]
    health.started("outbox")
    clock.advance(59)
    assert health.problems() != []
    clock.advance(1)
    assert health.problems() == []  # a calm minute: healthy again
    health.failed("outbox")  # and a new failure starts a new count
    assert health.problems() == []


async def test_keep_running_reports_starts_failures_and_its_end() -> None:
    health = LoopHealth(SystemClock(), max_failures=3)
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk I/O error")

    task = asyncio.create_task(keep_running("outbox", broken, RestartPolicy(0.001, 0.002), health))
    deadline = time.monotonic() + 5
    while not health.problems():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    assert calls >= 3 and "loop outbox failed" in health.problems()[0]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert health.problems() == ["loop outbox ended"]


# ------------------------------------------------------------ the real hub, in process


def _lines(sock: NotifySocket, prefix: str) -> list[str]:
    return [line for line in sock.drain() if line.startswith(prefix)]


async def _until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("fault", ["stuck", "dead", "stuck-message"])
async def test_the_hub_stops_pinging_when_a_loop_is_stuck_or_dead(
    tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    monkeypatch.setattr(hub_module, "STUCK_AFTER_S", 0.3)
    settings = HubSettings(hub_db=tmp_path / "hub.db", device_offline_after_s=0.4)
    hub = Hub(settings, SystemClock(), FakeUplink(), link=FakeLink)
    hub.restart_policy = RestartPolicy(initial_s=0.01, cap_s=0.02)
    healthy = asyncio.Event()

    async def supervision_pass() -> None:  # the real pass, until the fault is injected
        if healthy.is_set() and fault != "stuck-message":
            if fault == "stuck":
                await asyncio.Event().wait()  # e.g. a hung SD card under SQLite
            raise OSError("disk I/O error")
        await Hub.supervision_pass(hub)

    async def handle_message(topic: str, payload: bytes) -> None:
        await asyncio.Event().wait()  # one message whose handling never ends

    monkeypatch.setattr(hub, "supervision_pass", supervision_pass)
    notifier = Notifier({"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"})
    tasks = [asyncio.create_task(hub.run()), asyncio.create_task(report_to_systemd(hub, notifier))]
    try:
        await _until(lambda: len(_lines(notify_socket, "WATCHDOG=1")) >= 3)
        assert notify_socket.received.index("READY=1") < notify_socket.received.index("WATCHDOG=1")
        healthy.set()
        if fault == "stuck-message":
            monkeypatch.setattr(hub, "handle_message", handle_message)
            assert isinstance(hub.link, FakeLink)
            tasks.append(asyncio.create_task(hub.link.handler("carehub/btn-1/button", b"{}")))
        await _until(lambda: _lines(notify_socket, "STATUS=unhealthy"))
        status = _lines(notify_socket, "STATUS=unhealthy")[0]
        loop = "device-link" if fault == "stuck-message" else "supervision"
        assert f"loop {loop}" in status, status
        assert ("failed" if fault == "dead" else "stuck") in status
        pings = len(_lines(notify_socket, "WATCHDOG=1"))
        await asyncio.sleep(0.5)  # five ping periods: none may come
        assert len(_lines(notify_socket, "WATCHDOG=1")) == pings
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ------------------------------------------------------------ the real hub process


@pytest.fixture
def hub_env(notify_socket: NotifySocket) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}


def _bridge_state(d: Deployment) -> str:
    """The retained hub state, as an observer (Home Assistant) connecting now reads it."""
    done = subprocess.run(
        ["mosquitto_sub", "-p", str(d.broker.port), "-t", "carehub/bridge/state", "-C", "1"]
        + ["-W", "5"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return done.stdout.strip()


def _until_state(d: Deployment, want: str) -> None:
    deadline = time.monotonic() + 15
    while (state := _bridge_state(d)) != want:
        assert time.monotonic() < deadline, f"bridge state {state!r}, not {want!r}"
        time.sleep(0.1)


@pytest.mark.integration
def test_the_hub_process_says_ready_then_pings_then_stopping(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """Also what observers see: `online`, `offline` on a clean stop, and the last will
    `offline` when the hub dies (SIGKILL, as a power cut of the hub process)."""
    deadline = time.monotonic() + 20
    while len(_lines(notify_socket, "WATCHDOG=1")) < 2:
        assert time.monotonic() < deadline, (notify_socket.received, deployment.hub.log_tail())
        assert deployment.hub.running, deployment.hub.log_tail()
        time.sleep(0.05)
    lines = notify_socket.received
    assert lines.index("READY=1") < lines.index("WATCHDOG=1")
    assert any(line.startswith("STATUS=broker connected") for line in lines), lines
    assert _bridge_state(deployment) == "online"
    deployment.hub.stop()
    assert "STOPPING=1" in notify_socket.drain()
    assert _bridge_state(deployment) == "offline"
    deployment.hub.start()
    _until_state(deployment, "online")
    deployment.hub.kill()
    _until_state(deployment, "offline")
