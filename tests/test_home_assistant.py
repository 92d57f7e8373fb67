"""The optional Home Assistant bridge: discovery payloads checked against the keys Home
Assistant documents, read-only by construction, device states that change only on news; and
the real hub on a real mosquitto leaving retained discovery configs and a battery update."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import aiomqtt
import jinja2
import pytest

from carehub.alarm_lifecycle import AlarmKind, AlarmState
from carehub.mqtt_contract import BridgeTopic, Channel, DeviceStatus, Topics, encode
from carehub.settings import HubSettings
from gateway.ha_discovery import ENTITIES, DeviceState, HaDiscovery, Publication, node_id
from gateway.hub import Hub
from harness.broker import Mosquitto
from tests.test_hub_shell import CONFIG, FakeUplink, button, make_hub

# The configuration variables of https://www.home-assistant.io/integrations/sensor.mqtt/ and
# https://www.home-assistant.io/integrations/binary_sensor.mqtt/ (the keys a discovery
# payload may use; abbreviations spelled out), and of their `device` and `availability`.
ENTITY_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "enabled_by_default", "encoding", "entity_category", "entity_picture",
    "expire_after", "force_update", "icon", "json_attributes_template",
    "json_attributes_topic", "name", "default_entity_id", "object_id", "origin",
    "payload_available", "payload_not_available", "platform", "qos", "state_topic",
    "unique_id", "value_template", "device_class",
}  # fmt: skip
SENSOR_KEYS = ENTITY_KEYS | {
    "last_reset_value_template", "options", "suggested_display_precision", "state_class",
    "unit_of_measurement",
}  # fmt: skip
BINARY_SENSOR_KEYS = ENTITY_KEYS | {"off_delay", "payload_off", "payload_on"}
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
AVAILABILITY_KEYS = {"payload_available", "payload_not_available", "topic", "value_template"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
SENSOR_DEVICE_CLASSES = {"battery", "enum", "signal_strength", "timestamp"}  # the ones we use
BINARY_SENSOR_DEVICE_CLASSES = {"connectivity", "problem"}
DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(sensor|binary_sensor)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config$"
)

DEVICES = {"btn-1": "button", "pend.1:a": "pendant"}


def paired() -> tuple[HaDiscovery, list[Publication]]:
    ha = HaDiscovery(Topics("carehub"))
    return ha, ha.pair("hub-1", DEVICES)


def render(template: str, state: bytes) -> str:
    """As Home Assistant renders a value template: `value_json` is the parsed payload."""
    return jinja2.Environment().from_string(template).render(value_json=json.loads(state))


def test_every_discovery_payload_uses_only_documented_keys() -> None:
    _, publications = paired()
    assert len(publications) == 3 * len(DEVICES)
    for p in publications:
        match = DISCOVERY_TOPIC.match(p.topic)
        assert match and p.retain, p.topic
        config = json.loads(p.payload)
        component = match.group(1)
        allowed = SENSOR_KEYS if component == "sensor" else BINARY_SENSOR_KEYS
        classes = SENSOR_DEVICE_CLASSES if component == "sensor" else BINARY_SENSOR_DEVICE_CLASSES
        assert set(config) <= allowed, set(config) - allowed
        assert config["state_topic"] and config["unique_id"] and config["name"]
        assert config.get("device_class", next(iter(classes))) in classes
        assert config.get("entity_category", "diagnostic") in {"config", "diagnostic"}
        assert config.get("state_class", "measurement") in {"measurement", "total"}
        assert set(config["device"]) <= DEVICE_KEYS and config["device"]["identifiers"]
        assert set(config["origin"]) <= ORIGIN_KEYS and config["origin"]["name"]
        for availability in config["availability"]:
            assert set(availability) <= AVAILABILITY_KEYS
            assert availability["topic"] == "carehub/bridge/state"
    unique_ids = [json.loads(p.payload)["unique_id"] for p in publications]
    assert len(set(unique_ids)) == len(unique_ids)


def test_nothing_in_discovery_lets_home_assistant_send_anything() -> None:
    _, publications = paired()
    for p in publications:
        keys = set(json.loads(p.payload))
        assert not {k for k in keys if "command" in k}, p.topic
        assert not p.topic.startswith("carehub/") or "/bridge/" in p.topic
    topics = Topics("carehub")
    subscribed = {t for t, _ in topics.hub_subscriptions()}
    # the devices' channels, and the two bridge topics only the hub's own account (the
    # installer's commands) may publish on; nothing of Home Assistant's
    bridge = {topics.bridge(BridgeTopic.EVENT), topics.bridge(BridgeTopic.SELFTEST)}
    assert all(t.startswith("carehub/+/") or t in bridge for t in subscribed), subscribed


def test_node_ids_are_what_discovery_accepts() -> None:
    assert node_id("hub-1", "pend.1:a") == "carehub_hub-1_pend_1_a"
    ha, _ = paired()
    assert ha.config_topic("sensor", "pend.1:a", "battery") == (
        "homeassistant/sensor/carehub_hub-1_pend_1_a/battery/config"
    )


def test_the_state_templates_render_the_states() -> None:
    ha, _ = paired()
    (state,) = ha.status("btn-1", battery=54.96, rssi=-61)
    assert state.topic == "carehub/bridge/devices/btn-1/state" and state.retain
    battery = ha.config("btn-1", "battery")
    assert render(battery["value_template"], state.payload) == "55.0"
    assert battery["device_class"] == "battery" and battery["unit_of_measurement"] == "%"
    connectivity = ha.config("btn-1", "connectivity")
    assert render(connectivity["value_template"], state.payload) == "None"  # unknown in HA
    (state,) = ha.connectivity("btn-1", online=True)
    assert render(connectivity["value_template"], state.payload) == connectivity["payload_on"]
    (state,) = ha.alarm("btn-1", "a1", AlarmKind.BUTTON, AlarmState.RECEIVED, 1_764_000_000_000)
    last = ha.config("btn-1", "last_alarm")
    assert render(last["value_template"], state.payload) == "received"
    assert "received" in last["options"]
    attributes = json.loads(render(last["json_attributes_template"], state.payload))
    assert attributes == {"kind": "button", "raised_at": "2025-11-24T16:00:00+00:00"}


def test_states_are_published_on_change_only_and_never_for_strangers() -> None:
    ha, _ = paired()
    assert len(ha.status("btn-1", 80.0, None)) == 1
    assert ha.status("btn-1", 80.0, None) == []  # the same battery again: not news
    assert ha.status("intruder", 5.0, None) == []  # not paired: not shown
    assert len(ha.connectivity("btn-1", False)) == 1
    assert ha.connectivity("btn-1", False) == []


def test_an_older_alarm_does_not_replace_the_newer_one() -> None:
    ha, _ = paired()
    ha.alarm("btn-1", "new", AlarmKind.BUTTON, AlarmState.RECEIVED, 2_000)
    assert ha.alarm("btn-1", "old", AlarmKind.BUTTON, AlarmState.RESOLVED, 1_000) == []
    (state,) = ha.alarm("btn-1", "new", AlarmKind.BUTTON, AlarmState.DISPATCHED, 2_000)
    assert json.loads(state.payload)["last_alarm_state"] == "dispatched"


def test_unpairing_removes_the_entities_and_repairing_the_same_is_silent() -> None:
    ha, _ = paired()
    assert ha.pair("hub-1", DEVICES) == []
    removed = ha.pair("hub-1", {"btn-1": "button"})
    assert {p.topic for p in removed} == {
        "homeassistant/sensor/carehub_hub-1_pend_1_a/battery/config",
        "homeassistant/binary_sensor/carehub_hub-1_pend_1_a/connectivity/config",
        "homeassistant/sensor/carehub_hub-1_pend_1_a/last_alarm/config",
        "carehub/bridge/devices/pend.1:a/state",
    }
    assert all(p.payload == b"" and p.retain for p in removed)  # HA's removal


def test_a_bad_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="discovery prefix"):
        HaDiscovery(Topics("carehub"), "home/#")


# ------------------------------------------------------------ the real hub, real mosquitto


async def _retained(port: int, topics: list[str], want: int, timeout_s: float = 10) -> dict:
    """Connect afresh and collect retained messages until `want` of them have come."""
    got: dict[str, Any] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="home-assistant-test") as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    got[str(message.topic)] = (message.payload, message.retain)
                    if len(got) >= want:
                        break
    return got


@pytest.mark.integration
async def test_the_hub_publishes_discovery_and_a_battery_update(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    settings = HubSettings(hub_db=tmp_path / "hub.db", mqtt_port=mosquitto.port, ha_discovery=True)
    hub = Hub(settings, uplink=FakeUplink())
    task = asyncio.create_task(hub.run())
    try:
        deadline = time.monotonic() + 15
        while hub.ha is None or hub.ha.published < 3 * len(CONFIG.devices):
            assert time.monotonic() < deadline and not task.done(), "no discovery published"
            await asyncio.sleep(0.05)
        configs = await _retained(
            mosquitto.port, ["homeassistant/#", "carehub/bridge/state"], 3 * len(CONFIG.devices) + 1
        )
        assert configs["carehub/bridge/state"] == (b"online", True)
        battery_topic = "homeassistant/sensor/carehub_hub-1_btn-1/battery/config"
        payload, retained = configs[battery_topic]
        assert retained and json.loads(payload)["state_topic"] == (
            "carehub/bridge/devices/btn-1/state"
        )
        assert len([t for t in configs if t.endswith("/config")]) == 3 * len(CONFIG.devices)

        status = DeviceStatus(v=1, seq=1, ts=int(time.time() * 1000), battery=42.0, rssi=-70)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="btn-1") as device:
            await device.publish(Topics().device("btn-1", Channel.STATUS), encode(status), qos=1)
        deadline = time.monotonic() + 10
        while True:
            topic = "carehub/bridge/devices/btn-1/state"
            state = await _retained(mosquitto.port, [topic], 1, timeout_s=0.5)
            body = json.loads(state[topic][0]) if topic in state else {}
            if body.get("battery") == 42.0:
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.1)
        assert body["connectivity"] == "online" and body["rssi"] == -70.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_press_is_shown_as_the_last_alarm_and_a_broken_bridge_never_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, link = make_hub(tmp_path, FakeUplink(), ha_discovery=True)
    assert hub.ha is not None
    async with hub.opened():
        assert await hub.refresh_config()
        await hub.handle_message(*button(hub, "btn-1", 1))
        states = [p for p in hub.ha._pending if p.topic.endswith("/btn-1/state")]
        assert json.loads(states[-1].payload)["last_alarm_state"] == "received"

        def broken(*args: object) -> list[Publication]:
            raise RuntimeError("a bug in the bridge")

        monkeypatch.setattr(hub.ha.discovery, "connectivity", broken)
        monkeypatch.setattr(hub.ha.discovery, "alarm", broken)
        await hub.handle_message(*button(hub, "btn-2", 1))
        assert [a.state for d, a in link.acks if d == "btn-2"] == ["received"]
        assert len(await hub.store.alarms_in_state(AlarmState.RECEIVED)) == 2


def test_the_docs_show_every_state_field_and_entity() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "mqtt.md").read_text()
    section = doc[doc.index("## Home Assistant") :]
    state = json.loads(DeviceState().payload())
    for field in state:
        assert f'"{field}"' in section, field
    for entity in ENTITIES:
        assert f"/{entity}/config" in section, entity
