"""Issue 25, acceptance 2: `carehub hub pair` and `hub remove` with Zigbee2MQTT, on a real
mosquitto running the generated configuration, with a fake Zigbee2MQTT (logged in with its
own account) that answers the bridge requests as Zigbee2MQTT documents them: permit-join
opened for the window and closed at its end; a supported device that joined in the window
is confirmed and paired, an unknown model refused with how to add it, a device that joined
outside the window refused; removal removes it from Zigbee2MQTT; Zigbee2MQTT's account
cannot touch CareHub's topics."""

from __future__ import annotations

import dataclasses
import getpass
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from carehub.mqtt_contract import PairAnnounce
from carehub.settings import HubSettings
from gateway.broker_auth import MAX_PACKET_BYTES, ZIGBEE_PACKET_BYTES, Listener, packet_limit
from gateway.broker_files import load_accounts, write_all
from gateway.pairing import ZIGBEE2MQTT_USERNAME, BrokerAccounts
from gateway.pairing_session import PairingSession, remove_device
from harness.broker import free_port, mosquitto_binary, wait_for_port

pytestmark = pytest.mark.integration

Z2M_PASSWORD = "zigbee2mqtt-secret-for-the-test"
DOOR = "0x00158d0003c4d5e6"  # joins in the window: an Aqara door sensor
BULB = "0x000b57fffe123456"  # joins in the window: an IKEA bulb, not supported
STALE = "0x00158d0002b3c4d5"  # interviewed in the window, but joined before it
LATE = "0x00158d0001a2b3c4"  # joins after the window


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[HubSettings]:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed")
    port = free_port()
    d = tmp_path / "broker"
    accounts = dataclasses.replace(
        BrokerAccounts.new(), zigbee2mqtt_topic="zigbee2mqtt", zigbee2mqtt_password=Z2M_PASSWORD
    )
    write_all(d, accounts, "carehub", Listener(port, "127.0.0.1"), getpass.getuser())
    broker = subprocess.Popen(
        [mosquitto_binary(), "-c", str(d / "carehub.conf")],  # type: ignore[list-item]
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield HubSettings(
            hub_broker_dir=d,
            mqtt_port=port,
            hub_db=tmp_path / "hub.db",
            zigbee2mqtt_topic="zigbee2mqtt",
        )
    finally:
        broker.terminate()
        broker.wait(5)


def interview(ieee: str, vendor: str, model: str) -> dict:
    return {
        "type": "device_interview",
        "data": {
            "friendly_name": ieee,
            "ieee_address": ieee,
            "status": "successful",
            "supported": True,
            "definition": {"vendor": vendor, "model": model, "description": "", "exposes": []},
        },
    }


def joined(ieee: str) -> dict:
    return {"type": "device_joined", "data": {"friendly_name": ieee, "ieee_address": ieee}}


class FakeZigbee2mqtt:
    """Answers ``bridge/request/permit_join`` and ``device/remove`` as Zigbee2MQTT does and,
    when permit-join opens, reports devices joining and being interviewed."""

    def __init__(self, port: int) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.open = threading.Event()
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="zigbee2mqtt")
        c.username_pw_set(ZIGBEE2MQTT_USERNAME, Z2M_PASSWORD)
        c.on_connect = lambda c, *a: c.subscribe("zigbee2mqtt/bridge/request/#", qos=1)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._on_request
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert ready.wait(5)
        self.client = c

    def publish(self, topic: str, body: dict, wait: bool = True) -> None:
        sent = self.client.publish(topic, json.dumps(body), qos=1)
        if wait:  # never inside a callback: the network loop is the caller there
            sent.wait_for_publish(5)

    def _on_request(self, client: object, userdata: object, m: mqtt.MQTTMessage) -> None:
        name = m.topic.removeprefix("zigbee2mqtt/bridge/request/")
        body = json.loads(m.payload)
        self.requests.append((name, body))
        data = {k: v for k, v in body.items() if k != "transaction"}
        answer = {"data": data, "status": "ok", "transaction": body["transaction"]}
        self.publish(f"zigbee2mqtt/bridge/response/{name}", answer, wait=False)
        if name == "permit_join" and body["time"] > 0:
            self.publish("zigbee2mqtt/bridge/event", interview(STALE, "Aqara", "RTCGQ11LM"), False)
            for ieee, vendor, model in ((DOOR, "Aqara", "MCCGQ11LM"), (BULB, "IKEA", "LED1545G12")):
                self.publish("zigbee2mqtt/bridge/event", joined(ieee), wait=False)
                self.publish("zigbee2mqtt/bridge/event", interview(ieee, vendor, model), False)
            self.open.set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_pairing_opens_and_closes_permit_join_and_accepts_only_the_window(
    secured: HubSettings,
) -> None:
    z2m = FakeZigbee2mqtt(secured.mqtt_port)
    said: list[str] = []
    asked: list[str] = []

    async def never(announce: PairAnnounce) -> bool:
        return False

    async def installer(question: str) -> bool:
        asked.append(question)
        return True

    session = PairingSession(secured, never, say=said.append, pickup_grace_s=0.2, ask=installer)
    try:
        result = await session.pair(3.0, accept_all=False)
        z2m.publish("zigbee2mqtt/bridge/event", joined(LATE))  # permit-join is closed now
        z2m.publish("zigbee2mqtt/bridge/event", interview(LATE, "Aqara", "WXKG11LM"))
    finally:
        z2m.close()

    assert [(name, body["time"], body["value"]) for name, body in z2m.requests] == [
        ("permit_join", 3, True),  # opened with the window…
        ("permit_join", 0, False),  # …and closed at its end
    ]
    assert result.accepted == [DOOR]
    assert sorted(result.refused) == sorted([BULB, STALE])
    assert len(asked) == 1 and DOOR in asked[0] and "door_sensor" in asked[0]
    text = "\n".join(said)
    assert f"refused Zigbee device {STALE}" in text and "did not join during this window" in text
    assert f"refused Zigbee device {BULB}" in text and "gateway/zigbee/models.py" in text
    assert "permit-join open" in text and "never answered" not in text
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None
    assert [(d.device_id, d.kind) for d in accounts.zigbee] == [(DOOR, "door_sensor")]
    assert accounts.devices == ()  # no broker account for a Zigbee device
    assert DOOR not in (secured.hub_broker_dir / "passwd").read_text()

    z2m = FakeZigbee2mqtt(secured.mqtt_port)
    try:
        done = await remove_device(secured, DOOR)
    finally:
        z2m.close()
    assert z2m.requests == [
        (
            "device/remove",
            {"id": DOOR, "force": False, "transaction": z2m.requests[0][1]["transaction"]},
        )
    ]
    assert "removed from Zigbee2MQTT (left)" in done
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None and accounts.zigbee == ()


async def test_without_zigbee2mqtt_the_installer_is_told(secured: HubSettings) -> None:
    said: list[str] = []

    async def never(announce: PairAnnounce) -> bool:
        return False

    session = PairingSession(secured, never, say=said.append, pickup_grace_s=0.2)
    result = await session.pair(1.0, accept_all=False)
    assert result.accepted == []
    assert any("Zigbee2MQTT never answered" in line for line in said), said


def test_zigbee2mqtts_account_has_only_its_own_topics(secured: HubSettings) -> None:
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None
    got: list[str] = []
    ready = threading.Event()
    hub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hub-watch")
    hub.username_pw_set(accounts.hub_username, accounts.hub_password)
    hub.on_connect = lambda c, *a: c.subscribe([("carehub/#", 1), ("zigbee2mqtt/#", 1)])
    hub.on_subscribe = lambda *a: ready.set()
    hub.on_message = lambda c, u, m: got.append(m.topic)
    hub.connect("127.0.0.1", secured.mqtt_port)
    hub.loop_start()
    z2m = FakeZigbee2mqtt(secured.mqtt_port)
    try:
        assert ready.wait(5)
        for topic in ("carehub/btn-1/button", "carehub/bridge/event", "zigbee2mqtt/probe"):
            z2m.publish(topic, {"v": 1, "seq": 1, "ts": 1, "action": "press"})
        deadline = time.monotonic() + 5
        while "zigbee2mqtt/probe" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        z2m.close()
        hub.loop_stop()
        hub.disconnect()
    assert got == ["zigbee2mqtt/probe"]  # in order: the refused ones came before, if at all


@pytest.mark.parametrize("max_packet_bytes", [None, 4 * 1024 * 1024])
def test_zigbee2mqtts_device_list_passes_the_broker_of_a_zigbee_hub(
    tmp_path: Path, max_packet_bytes: int | None
) -> None:
    """Zigbee2MQTT's retained ``bridge/devices`` carries every device's definition
    (endpoints, bindings, exposes): a few devices outgrow the 65 KiB a CareHub device may
    send. A hub set up for Zigbee2MQTT raises the broker's limit by itself (it once needed
    `hub_broker_max_packet_bytes`, and without it mosquitto disconnected Zigbee2MQTT)."""
    port = free_port()
    d = tmp_path / "broker"
    accounts = dataclasses.replace(
        BrokerAccounts.new(), zigbee2mqtt_topic="zigbee2mqtt", zigbee2mqtt_password=Z2M_PASSWORD
    )
    listener = Listener(port, "127.0.0.1")
    write_all(d, accounts, "carehub", listener, getpass.getuser(), max_packet_bytes)
    broker = subprocess.Popen(
        [mosquitto_binary(), "-c", str(d / "carehub.conf")],  # type: ignore[list-item]
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        z2m = FakeZigbee2mqtt(port)
        device = {"ieee_address": "0x00158d0003c4d5e6", "definition": {"exposes": ["x" * 200]}}
        big = [device] * 1000  # about 230 KB, a few dozen real devices
        z2m.client.publish("zigbee2mqtt/bridge/devices", json.dumps(big), qos=1, retain=True)
        z2m.close()
        got: list[int] = []
        hub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hub-watch")
        hub.username_pw_set(accounts.hub_username, accounts.hub_password)
        hub.on_connect = lambda c, *a: c.subscribe([("zigbee2mqtt/#", 1)])
        hub.on_message = lambda c, u, m: got.append(len(m.payload))
        hub.connect("127.0.0.1", port)
        hub.loop_start()
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        hub.loop_stop()
        hub.disconnect()
    finally:
        broker.terminate()
        broker.wait(5)
    assert got == [len(json.dumps(big))]


def test_the_broker_limit_is_a_devices_packet_unless_zigbee2mqtt_shares_the_broker() -> None:
    assert packet_limit(zigbee=False) == MAX_PACKET_BYTES
    assert packet_limit(zigbee=True) == ZIGBEE_PACKET_BYTES > 4 * 1024 * 1024
    assert packet_limit(zigbee=False, configured=8 * 1024 * 1024) == 8 * 1024 * 1024
    assert packet_limit(zigbee=True, configured=10) == MAX_PACKET_BYTES  # never below a device
