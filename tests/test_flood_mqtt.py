"""Issue 20, "One device's flood delays everyone", end to end on real mosquitto, hub and
server: a paired call button publishes thousands of valid presses as fast as it can (a new
`seq` each, QoS 1); another button of the same home presses once and is answered; the flood
is one alarm with its presses joined, and a handful of log lines."""

from __future__ import annotations

import time
import uuid

import paho.mqtt.client as paho
import pytest

from carehub.mqtt_contract import AckState, ButtonEvent, Channel, Topics, encode
from firmware_sim.button import CallButton
from tests.conftest import Deployment

pytestmark = pytest.mark.integration

FLOOD = 3000


def flood_presses(port: int, device: str, count: int) -> None:
    """`count` presses, each a new seq, published at QoS 1 as fast as the broker takes them."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    topic = Topics("carehub").device(device, Channel.BUTTON)
    now = time.time_ns() // 1_000_000
    try:
        infos = [
            client.publish(topic, encode(ButtonEvent(v=1, seq=seq, ts=now, action="press")), qos=1)
            for seq in range(1, count + 1)
        ]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for(check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_one_devices_flood_is_one_alarm_and_another_device_is_still_answered(
    deployment: Deployment,
) -> None:
    d = deployment
    flood_presses(d.broker.port, "btn-1", FLOOD)
    with CallButton("btn-2", "127.0.0.1", d.broker.port) as other:
        assert other.connected.wait(10)
        seq = other.press()
        received = other.acks.wait_for(lambda a: a.seq == seq, 60)
    assert received is not None, d.hub.log_tail()
    ack = received[1]
    assert ack.state is AckState.RECEIVED and ack.alarm_id is not None

    def stored() -> bool:
        return any(a["device_id"] == "btn-2" for a in d.alarms())

    wait_for(stored, 30)
    by_device: dict[str, int] = {}
    for a in d.alarms():
        by_device[a["device_id"]] = by_device.get(a["device_id"], 0) + 1
    assert by_device == {"btn-1": 1, "btn-2": 1}, "the flood is one alarm, not thousands"
    (flood_alarm,) = [a for a in d.alarms() if a["device_id"] == "btn-1"]
    assert flood_alarm["repeat_count"] >= 1, "the dispatcher sees it was pressed again"

    log = (d.tmp / "hub.log").read_text(errors="replace")
    assert "Message queue is full" not in log, "no QoS-1 message discarded unhandled"
    loud = [
        line
        for line in log.splitlines()
        if "btn-1" in line and any(f" {level} " in line for level in ("INFO", "WARNING", "ERROR"))
    ]
    assert 1 <= len(loud) <= 10, loud[:20]
