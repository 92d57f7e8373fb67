"""Issue 25, acceptance 1: each supported Zigbee model, as Zigbee2MQTT publishes it on a real
Mosquitto, through a real hub to the server: the SOS button, the plain switch used as a call
button and the mmWave radar's fall (after its cancel window, the call buttons hearing
``pending``) become alarms with an SMS; the PIR and the door sensor become activity on the
hub; battery and availability become faults; a device joined outside a window is ignored.

The payloads are those documented on each model's zigbee2mqtt.io page (see docs/devices.md).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess

import httpx
import pytest

from carehub import api_contract as api
from carehub.mqtt_contract import BridgeEvent, BridgeTopic, Topics, encode
from carehub.settings import HubSettings
from gateway.broker_files import write_security
from gateway.pairing import BrokerAccounts, PairedDevice
from gateway.selftest_session import run_selftest
from tests.conftest import Deployment
from tests.mqtt_tools import AckWatcher, wait_for

pytestmark = pytest.mark.integration

SOS = "0x00124b0029a1b2c3"
SWITCH = "0x00158d0001a2b3c4"
RADAR = "0xa4c138f1e2d3c4b5"
PIR = "0x00158d0002b3c4d5"
DOOR = "0x00158d0003c4d5e6"
STRANGER = "0x00158d0009999999"
PAIRED = {
    SOS: ("sos button", "Tuya", "TS0215A_sos", "button"),
    SWITCH: ("bedside switch", "Aqara", "WXKG11LM", "button"),
    RADAR: ("bathroom radar", "Tuya", "MIR-HE200-TY_fall", "fall_radar"),
    PIR: ("hall motion", "Aqara", "RTCGQ11LM", "motion_sensor"),
    DOOR: ("front door", "Aqara", "MCCGQ11LM", "door_sensor"),
}


@pytest.fixture
def hub_env() -> dict[str, str]:
    return {
        "CAREHUB_ZIGBEE2MQTT_TOPIC": "zigbee2mqtt",
        "CAREHUB_FALL_CANCEL_WINDOW_S": "2",
        "CAREHUB_PENDING_ACK_EVERY_S": "0.5",
    }


def publish(d: Deployment, topic: str, payload: object, retain: bool = False) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    command = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.broker.port), "-q", "1"]
    command += ["-t", topic, "-s"] + (["-r"] if retain else [])
    subprocess.run(command, input=data, check=True, timeout=10)


def z2m_devices() -> list[dict]:
    """``zigbee2mqtt/bridge/devices`` as Zigbee2MQTT publishes it (trimmed exposes)."""
    devices: list[dict] = [
        {"ieee_address": "0x00124b0000000001", "type": "Coordinator", "friendly_name": "C"}
    ]
    everyone = {**PAIRED, STRANGER: ("neighbour's button", "Tuya", "TS0215A_sos", "button")}
    for ieee, (name, vendor, model, _) in everyone.items():
        devices.append(
            {
                "ieee_address": ieee,
                "type": "EndDevice",
                "friendly_name": name,
                "interview_completed": True,
                "supported": True,
                "definition": {"vendor": vendor, "model": model, "exposes": []},
            }
        )
    return devices


def pair_on_server_and_hub(d: Deployment) -> None:
    """What `carehub hub pair` does for an accepted Zigbee device (tested in
    test_zigbee_pairing): registered on the server, `device_accepted` to the running hub."""
    with httpx.Client(base_url=d.base_url, headers={"Authorization": f"Bearer {d.token}"}) as http:
        for ieee, (_, _, _, kind) in PAIRED.items():
            body = api.DeviceRegistration(kind=api.DeviceKind(kind), hardware_id=ieee)
            r = http.put(f"{api.HUB_DEVICES_PATH}/{ieee}", json=body.model_dump(mode="json"))
            assert r.status_code == 201, r.text
    for ieee, (_, _, _, kind) in PAIRED.items():
        event = BridgeEvent(
            v=1, event="device_accepted", ts=1, hardware_id=ieee, device_id=ieee, kind=kind
        )  # type: ignore[arg-type]
        publish(d, Topics().bridge(BridgeTopic.EVENT), encode(event))
    publish(d, "zigbee2mqtt/bridge/devices", z2m_devices(), retain=True)
    assert wait_for(lambda: "5 paired with this hub and supported" in d.hub.log_path.read_text())


def alarms_of(d: Deployment, device_id: str) -> list[dict]:
    return [a for a in d.alarms() if a["device_id"] == device_id]


def test_zigbee_calls_and_a_radar_fall_reach_the_doctor(deployment: Deployment) -> None:
    d = deployment
    pair_on_server_and_hub(d)

    publish(d, "zigbee2mqtt/sos button", {"action": "emergency", "battery": 100, "linkquality": 87})
    (sos,) = wait_for(lambda: alarms_of(d, SOS), 20)
    assert (sos["kind"], sos["severity"]) == ("button", "critical")
    assert wait_for(lambda: len(d.sms.messages) >= 1, 20), d.server.log_tail()

    publish(d, "zigbee2mqtt/bedside switch", {"action": "double", "battery": 91})
    publish(d, "zigbee2mqtt/bedside switch", {"action": "single", "battery": 91})
    (switch,) = wait_for(lambda: alarms_of(d, SWITCH), 20)  # "double" is not the call
    assert switch["kind"] == "button"

    publish(d, "zigbee2mqtt/sos button", {"action": "emergency"})  # a second call
    publish(d, "zigbee2mqtt/neighbour's button", {"action": "emergency"})  # not paired here
    publish(d, "zigbee2mqtt/not listed", {"action": "emergency"})  # a group, say

    buttons = AckWatcher(d, SOS)
    publish(
        d,
        "zigbee2mqtt/bathroom radar",
        {"presence": True, "occupancy": True, "fall_down_status": "fall", "linkquality": 150},
    )
    publish(d, "zigbee2mqtt/bathroom radar", {"presence": True, "fall_down_status": "fall"})
    pending = buttons.collect("pending", 10)
    assert pending and pending[-1]["state"] == "pending", pending
    assert pending[-1]["seconds_left"] <= 2
    (fall,) = wait_for(lambda: alarms_of(d, RADAR), 20)  # one fall: the repeat is no edge
    buttons.close()
    assert fall["kind"] == "fall"
    assert wait_for(lambda: alarms_of(d, RADAR)[0]["state"] == "dispatched", 20)
    # the hub handles messages in order: the neighbour's press was handled before the radar's
    assert alarms_of(d, STRANGER) == [], "a device not paired here raises nothing"
    log = d.hub.log_path.read_text()
    assert f"zigbee device {STRANGER}" in log and "carehub hub pair" in log
    (sos,) = alarms_of(d, SOS)  # the second call joined the open alarm, as a repeat
    assert wait_for(lambda: d.alarm(sos["id"])["repeat_count"] >= 1, 20), d.alarm(sos["id"])
    assert "Traceback" not in log


def test_zigbee_sensors_record_activity_and_supervision_faults(deployment: Deployment) -> None:
    d = deployment
    pair_on_server_and_hub(d)

    publish(d, "zigbee2mqtt/hall motion", {"occupancy": True, "illuminance": 23, "battery": 100})
    publish(d, "zigbee2mqtt/front door", {"contact": False, "battery": 97, "voltage": 3005})
    publish(d, "zigbee2mqtt/front door", {"contact": True, "battery": 97, "voltage": 3005})
    publish(d, "zigbee2mqtt/bathroom radar", {"presence": True, "fall_down_status": "none"})

    def activity() -> list[tuple[str, str]]:
        with sqlite3.connect(d.tmp / "hub.db") as con:
            rows = con.execute("SELECT device_id, kind FROM activity ORDER BY at_ms, rowid")
            return [(r[0], r[1]) for r in rows]

    want = [
        (PIR, "motion"),
        (DOOR, "door_opened"),
        (DOOR, "door_closed"),
        (RADAR, "presence"),
    ]
    assert wait_for(lambda: activity() == want, 20), activity()

    publish(d, "zigbee2mqtt/hall motion", {"occupancy": False, "battery": 9})
    assert wait_for(lambda: d.faults(PIR, "battery_low"), 20), d.hub.log_tail()
    assert d.faults(PIR, "battery_low")[0]["active"] is True
    publish(d, "zigbee2mqtt/front door/availability", {"state": "offline"})
    assert wait_for(lambda: d.faults(DOOR, "device_offline"), 20), d.hub.log_tail()
    publish(d, "zigbee2mqtt/front door/availability", {"state": "online"})
    assert wait_for(lambda: len(d.faults(DOOR, "device_offline")) == 2, 20)
    assert d.faults(DOOR, "device_offline")[0]["active"] is False
    assert d.alarms() == [], "activity and faults are not alarms"


async def test_the_selftest_presses_each_zigbee_button_and_trips_each_sensor(
    deployment: Deployment,
) -> None:
    d = deployment
    pair_on_server_and_hub(d)
    accounts = BrokerAccounts.new()
    for ieee, (_, _, _, kind) in PAIRED.items():
        accounts = accounts.with_zigbee(PairedDevice(ieee, kind, ieee, "", 0))
    write_security(d.tmp / "broker", accounts, "carehub")
    settings = HubSettings(
        hub_broker_dir=d.tmp / "broker",
        mqtt_port=d.broker.port,
        server_url=d.base_url,
        hub_token=d.token,  # type: ignore[arg-type]
        zigbee2mqtt_topic="zigbee2mqtt",
    )
    said: list[str] = []
    run = asyncio.create_task(run_selftest(settings, 60, say=said.append))
    while not any("self-test started" in line for line in said):
        assert not run.done(), said
        await asyncio.sleep(0.05)
    for name, state in (
        ("sos button", {"action": "emergency", "battery": 100, "linkquality": 87}),
        ("bedside switch", {"action": "single", "battery": 91}),
        ("bathroom radar", {"presence": True, "fall_down_status": "none"}),
        ("hall motion", {"occupancy": True, "illuminance": 23, "battery": 100}),
        ("front door", {"contact": False, "battery": 97}),
    ):
        await asyncio.to_thread(publish, d, f"zigbee2mqtt/{name}", state)
    core, posted = await asyncio.wait_for(run, 90)
    assert core.passed, core.missing()
    assert "recorded on the server" in posted, posted
    calls = alarms_of(d, SOS) + alarms_of(d, SWITCH)
    assert len(calls) == 2 and all(d.alarm(a["id"])["is_test"] for a in calls), calls
    assert alarms_of(d, RADAR) == [] and alarms_of(d, DOOR) == []
