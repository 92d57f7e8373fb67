"""DeviceLink against a real mosquitto: a QoS-1 message is acknowledged only after the
handler returned; a failed handling is redelivered; a poison message is given up on."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import paho.mqtt.client as paho
import pytest

from carehub.mqtt_contract import Topics
from carehub.settings import HubSettings
from gateway.device_link import DeviceLink, PoisonGuard
from harness.broker import Mosquitto

pytestmark = pytest.mark.integration


def publish(broker: Mosquitto, topic: str, payload: str, qos: int = 1) -> None:
    command = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos)]
    subprocess.run([*command, "-t", topic, "-m", payload], check=True, timeout=10)


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `check` (set by the handler, on the loop) until true or the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_link(
    broker: Mosquitto, handler: Callable[[str, bytes], Awaitable[None]], max_failures: int = 3
) -> AsyncIterator[DeviceLink]:
    settings = HubSettings(
        mqtt_port=broker.port,
        mqtt_client_id=f"hub-{uuid.uuid4().hex[:8]}",
        mqtt_redeliver_after_s=0.05,
        mqtt_max_handler_failures=max_failures,
    )
    link = DeviceLink(settings, Topics("carehub"), handler)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_failed_handling_is_redelivered_until_it_succeeds(mosquitto: Mosquitto) -> None:
    calls: list[bytes] = []
    handled: list[bytes] = []

    async def flaky(topic: str, payload: bytes) -> None:
        calls.append(payload)
        if len(calls) <= 2:
            raise OSError("database or disk is full")
        handled.append(payload)

    async with running_link(mosquitto, flaky) as link:
        publish(mosquitto, "carehub/btn-1/button", "press-1")
        await until(lambda: len(handled) == 1)
        assert calls == [b"press-1"] * 3
        assert link.connections == 3, "one reconnection per failure"
        assert link.given_up == 0


async def test_a_poison_message_is_given_up_on_and_the_link_goes_on(mosquitto: Mosquitto) -> None:
    calls: list[bytes] = []

    async def poisoned(topic: str, payload: bytes) -> None:
        calls.append(payload)
        if payload == b"poison":
            raise ValueError("cannot handle this")

    async with running_link(mosquitto, poisoned, max_failures=3) as link:
        publish(mosquitto, "carehub/btn-1/button", "poison")
        await until(lambda: link.given_up == 1)
        publish(mosquitto, "carehub/btn-1/button", "fine")
        await until(lambda: b"fine" in calls)
        assert calls == [b"poison"] * 3 + [b"fine"]


async def test_a_failed_qos0_message_is_dropped_without_reconnecting(mosquitto: Mosquitto) -> None:
    calls: list[bytes] = []

    async def failing(topic: str, payload: bytes) -> None:
        calls.append(payload)
        if payload == b"frame-1":
            raise RuntimeError("bug")

    async with running_link(mosquitto, failing) as link:
        publish(mosquitto, "carehub/pend-1/imu", "frame-1", qos=0)
        publish(mosquitto, "carehub/pend-1/imu", "frame-2", qos=0)
        await until(lambda: len(calls) == 2)
        assert calls == [b"frame-1", b"frame-2"] and link.connections == 1


def test_poison_guard_gives_up_at_the_limit_and_forgets_successes() -> None:
    guard = PoisonGuard(max_failures=3, capacity=2)
    a, b, c = (PoisonGuard.key("t", p) for p in (b"a", b"b", b"c"))
    assert [guard.failed(a), guard.failed(a)] == [1, 2]
    guard.succeeded(a)
    assert not guard and guard.failed(a) == 1
    assert guard.failed(a) == 2 and guard.failed(a) == 3  # give up: forgotten
    assert not guard and guard.failed(a) == 1
    guard.failed(b)
    guard.failed(c)  # over capacity: the oldest (a) is forgotten
    assert guard.failed(a) == 1


def flood(broker: Mosquitto, topic: str, count: int) -> None:
    """Publish `count` QoS-1 messages as fast as the broker takes them (a device gone mad)."""
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex[:8]}"
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, str(i).encode(), qos=1) for i in range(count)]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_flood_of_qos1_messages_is_handled_whole_none_discarded(
    mosquitto: Mosquitto,
) -> None:
    """A backlog waits at the broker while the hub is busy; once the hub acknowledges again,
    mosquitto does not hold it to its in-flight window but sends the backlog as fast as it
    can. aiomqtt's bounded queue used to discard what did not fit ("Message queue is full"):
    QoS-1 messages neither handled nor acknowledged until a reconnection."""
    handled: set[bytes] = set()
    busy = asyncio.Event()

    async def handler(topic: str, payload: bytes) -> None:
        await busy.wait()  # the hub is busy (a slow disk) while the flood is published
        handled.add(payload)

    count = 20_000
    async with running_link(mosquitto, handler) as link:
        await asyncio.to_thread(flood, mosquitto, "carehub/flood-1/button", count)
        busy.set()
        await until(lambda: len(handled) == count, timeout_s=60)
        assert link.connections == 1, "nothing had to be fetched again by reconnecting"
