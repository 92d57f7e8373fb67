"""The Zigbee2MQTT translation, pure: the payloads each supported model's zigbee2mqtt.io
page documents, and hostile ones."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from carehub import api_contract as api
from carehub.mqtt_contract import DeviceType, SensorType
from gateway.zigbee.models import BY_MODEL, MODELS
from gateway.zigbee.translate import (
    Activity,
    BatteryLevel,
    Call,
    RadarFall,
    Refused,
    Z2mDevice,
    Z2mTopic,
    ZigbeeError,
    availability,
    model_for,
    parse_bridge_event,
    parse_devices,
    parse_topic,
    state_events,
)

SOS, SWITCH, RADAR = BY_MODEL["TS0215A_sos"], BY_MODEL["WXKG11LM"], BY_MODEL["MIR-HE200-TY_fall"]
PIR, DOOR = BY_MODEL["RTCGQ11LM"], BY_MODEL["MCCGQ11LM"]


def events(model, payload: dict, before: dict | None = None):  # type: ignore[no-untyped-def]
    return state_events(model, json.dumps(payload).encode(), before or {})[0]


def test_every_model_names_its_page_and_one_meaning() -> None:
    bridge_kinds = set(get_args(DeviceType)) | set(get_args(SensorType))
    for m in MODELS:
        assert api.DeviceKind(m.kind) and m.kind in bridge_kinds  # the server and bridge know it
        assert m.page.endswith(f"/devices/{m.model}.html")
        assert m.call_actions or m.fall_key or m.occupancy_key or m.contact_key


def test_the_sos_button_calls_on_emergency_with_its_battery() -> None:
    assert events(SOS, {"action": "emergency", "battery": 87, "linkquality": 120}) == [
        Call("emergency"),
        BatteryLevel(87.0),
    ]
    assert events(SOS, {"battery": 15, "voltage": 2500}) == [BatteryLevel(15.0)]


def test_the_plain_switch_calls_on_its_chosen_action_only() -> None:
    assert events(SWITCH, {"action": "single", "battery": 100}) == [
        Call("single"),
        BatteryLevel(100.0),
    ]
    assert events(SWITCH, {"action": "double"}) == []
    assert events(SWITCH, {"action": "hold"}) == []


def test_a_radar_fall_counts_once_on_its_edge() -> None:
    first, state = state_events(
        RADAR, b'{"presence": true, "fall_down_status": "none", "occupancy": true}', {}
    )
    assert first == [Activity("presence")]
    fall, state = state_events(RADAR, b'{"presence": true, "fall_down_status": "fall"}', state)
    assert fall == [RadarFall("fall_down_status", "fall")]
    again, state = state_events(RADAR, b'{"presence": true, "fall_down_status": "fall"}', state)
    assert again == []  # the radar repeats its state with each report
    back, state = state_events(RADAR, b'{"fall_down_status": "none"}', state)
    assert back == []
    assert events(RADAR, {"fall_down_status": "maybe_fall"}) == []


def test_motion_and_door_activity_on_edges() -> None:
    assert events(PIR, {"occupancy": True, "illuminance": 12, "battery": 90}) == [
        Activity("motion"),
        BatteryLevel(90.0),
    ]
    assert events(PIR, {"occupancy": True}, {"occupancy": True}) == []
    assert events(PIR, {"occupancy": False}, {"occupancy": True}) == []
    assert events(DOOR, {"contact": False}) == [Activity("door_opened")]
    assert events(DOOR, {"contact": True}) == []  # nothing known before: no edge
    assert events(DOOR, {"contact": True}, {"contact": False}) == [Activity("door_closed")]
    assert events(DOOR, {"contact": False, "battery": 50}, {"contact": False}) == [
        BatteryLevel(50.0)
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {"action": ["emergency"]},
        {"action": "EMERGENCY"},
        {"battery": True},
        {"battery": 101},
        {"battery": -1},
        {"battery": "87"},
        {"fall_down_status": True},
        {"presence": "true"},
        {"occupancy": 1},
        {"contact": "false"},
    ],
)
def test_values_of_the_wrong_type_or_range_mean_nothing(payload: dict) -> None:
    for model in MODELS:
        assert events(model, payload) == []


@pytest.mark.parametrize(
    "raw", [b"", b"nan", b"[]", b"\xff", b"[" * 100_000, b'{"battery": NaN}', b"x" * 70_000]
)
def test_hostile_payloads_are_refused_or_ignored_never_crash(raw: bytes) -> None:
    try:
        got = state_events(SOS, raw, {})[0]
    except ZigbeeError:
        return
    assert got == []


def test_models_are_matched_by_model_and_vendor_or_refused_with_how_to_add() -> None:
    ok = Z2mDevice("0x00158d0001a2b3c4", "hall door", "Aqara", "MCCGQ11LM")
    assert model_for(ok) is DOOR
    assert model_for(Z2mDevice("0x00158d0001a2b3c4", "d", "Xiaomi", "MCCGQ11LM")) is DOOR
    for device in (
        Z2mDevice("0x00158d0001a2b3c4", "lamp", "IKEA", "LED1545G12"),
        Z2mDevice("0x00158d0001a2b3c4", "fake", "Acme", "MCCGQ11LM"),
    ):
        refused = model_for(device)
        assert isinstance(refused, Refused) and refused.reason == "unknown_model"
        assert "gateway/zigbee/models.py" in refused.message
        assert "docs/devices.md" in refused.message
    pending = model_for(Z2mDevice("0x00158d0001a2b3c4", "x", None, None, False, False))
    assert isinstance(pending, Refused) and pending.reason == "not_interviewed"


def test_the_devices_list_and_bridge_events() -> None:
    devices = parse_devices(
        json.dumps(
            [
                {"ieee_address": "0x00124b0000000000", "type": "Coordinator", "friendly_name": "C"},
                {
                    "ieee_address": "0x00158d0001a2b3c4",
                    "type": "EndDevice",
                    "friendly_name": "hall/door",
                    "interview_completed": True,
                    "supported": True,
                    "definition": {"vendor": "Aqara", "model": "MCCGQ11LM", "exposes": []},
                },
                {"ieee_address": "0x00:15", "friendly_name": "bad"},
                "junk",
            ]
        ).encode()
    )
    assert devices == [Z2mDevice("0x00158d0001a2b3c4", "hall/door", "Aqara", "MCCGQ11LM")]
    with pytest.raises(ZigbeeError):
        parse_devices(b'{"not": "a list"}')
    interview = parse_bridge_event(
        json.dumps(
            {
                "type": "device_interview",
                "data": {
                    "friendly_name": "0x00158d0001a2b3c4",
                    "ieee_address": "0x00158d0001a2b3c4",
                    "status": "successful",
                    "supported": True,
                    "definition": {"vendor": "Aqara", "model": "RTCGQ11LM", "exposes": []},
                },
            }
        ).encode()
    )
    assert interview.device == Z2mDevice(
        "0x00158d0001a2b3c4", "0x00158d0001a2b3c4", "Aqara", "RTCGQ11LM"
    )
    joined = parse_bridge_event(
        b'{"type": "device_joined", "data": {"friendly_name": "x",'
        b' "ieee_address": "0x00158d0001a2b3c4"}}'
    )
    assert (joined.kind, joined.device) == ("device_joined", None)
    with pytest.raises(ZigbeeError):
        parse_bridge_event(b'{"type": "device_joined", "data": {"ieee_address": "../x"}}')


def test_topics_and_availability() -> None:
    assert parse_topic("zigbee2mqtt", "carehub/btn-1/button") is None
    assert parse_topic("zigbee2mqtt", "zigbee2mqtt/bridge/devices") == Z2mTopic("devices")
    assert parse_topic("zigbee2mqtt", "zigbee2mqtt/bridge/response/permit_join") == Z2mTopic(
        "response", "permit_join"
    )
    assert parse_topic("zigbee2mqtt", "zigbee2mqtt/hall/door") == Z2mTopic("state", "hall/door")
    assert parse_topic("zigbee2mqtt", "zigbee2mqtt/hall/door/availability") == Z2mTopic(
        "availability", "hall/door"
    )
    assert parse_topic("zigbee2mqtt", "zigbee2mqtt/hall/door/set").what == "ignored"  # type: ignore[union-attr]
    assert availability(b'{"state":"offline"}') is False
    assert availability(b"online") is True
    with pytest.raises(ZigbeeError):
        availability(b'{"state": "asleep"}')
