"""The hub's shell with Zigbee2MQTT messages handed in directly (fake clock, no broker):
supervision by Zigbee2MQTT's availability and state rather than the hub's 3-minute silence
timer, and a radar's fall in the same cancel window as a pendant's."""

from __future__ import annotations

import json
from pathlib import Path

from carehub import api_contract as api
from carehub.alarm_lifecycle import AlarmState
from carehub.clock import FakeClock
from carehub.mqtt_contract import AckState
from tests.test_hub_shell import FakeUplink, button, make_hub

DOOR, RADAR = "0x00158d0003c4d5e6", "0xa4c138f1e2d3c4b5"
CONFIG = api.HubConfig(
    hub_id="hub-1",
    elder_id="elder-1",
    care_plan=api.CarePlan(),
    devices=[
        api.DeviceConfig(device_id="btn-1", kind="button"),
        api.DeviceConfig(device_id=DOOR, kind="door_sensor"),
        api.DeviceConfig(device_id=RADAR, kind="fall_radar"),
    ],
)
DEVICES = [
    {
        "ieee_address": ieee,
        "friendly_name": name,
        "type": "EndDevice",
        "interview_completed": True,
        "supported": True,
        "definition": {"vendor": vendor, "model": model, "exposes": []},
    }
    for ieee, name, vendor, model in (
        (DOOR, "front door", "Aqara", "MCCGQ11LM"),
        (RADAR, "bathroom radar", "TuYa", "MIR-HE200-TY_fall"),
    )
]


class ZigbeeHome(FakeUplink):
    async def config(self) -> api.HubConfig:
        return CONFIG


def z2m(topic: str, body: object) -> tuple[str, bytes]:
    return f"zigbee2mqtt/{topic}", json.dumps(body).encode()


def offline(hub) -> set[str]:  # type: ignore[no-untyped-def]
    return {d for d, f in hub.core.supervisor.active() if f == "device_offline"}


async def test_zigbee_devices_are_supervised_through_zigbee2mqtt(tmp_path: Path) -> None:
    hub, _ = make_hub(tmp_path, ZigbeeHome(), zigbee2mqtt_topic="zigbee2mqtt")
    clock = hub.clock
    assert isinstance(clock, FakeClock)
    async with hub.opened():
        await hub.refresh_config()
        await hub.handle_message(*z2m("bridge/devices", DEVICES))
        clock.advance(3600)  # a door sensor reports about hourly: not offline for that
        await hub.supervision_pass()
        assert offline(hub) == {"btn-1"}
        await hub.handle_message(*z2m("front door/availability", {"state": "offline"}))
        assert offline(hub) == {"btn-1", DOOR}
        await hub.handle_message(*z2m("front door", {"contact": True, "battery": 90}))
        assert offline(hub) == {"btn-1"}
        await hub.handle_message(*z2m("bridge/state", {"state": "offline"}))  # its will
        assert offline(hub) == {"btn-1", DOOR, RADAR}
        await hub.handle_message(*z2m("bathroom radar", {"presence": True}))
        assert offline(hub) == {"btn-1", DOOR}
        clock.advance(26 * 3600 + 1)  # nobody says anything, Zigbee2MQTT included
        await hub.supervision_pass()
        assert offline(hub) == {"btn-1", DOOR, RADAR}


async def test_a_radar_fall_waits_its_window_and_a_carehub_button_cancels_it(
    tmp_path: Path,
) -> None:
    uplink = ZigbeeHome()
    hub, link = make_hub(tmp_path, uplink, zigbee2mqtt_topic="zigbee2mqtt", fall_cancel_window_s=30)
    async with hub.opened():
        await hub.refresh_config()
        await hub.handle_message(*z2m("bridge/devices", DEVICES))
        await hub.handle_message(
            *z2m("bathroom radar", {"presence": True, "fall_down_status": "fall"})
        )
        (pending,) = hub.core.pending.values()
        assert pending.alarm.device_id == RADAR and pending.alarm.kind == "fall"
        await hub.fall_windows_pass()
        heard = {(d, a.state, a.seconds_left) for d, a in link.acks}
        assert ("btn-1", AckState.PENDING, 30) in heard  # the elder's call button
        await hub.handle_message(*button(hub, "btn-1", 1, "cancel"))
        alarm = await hub.store.alarm(pending.alarm.id)
        assert alarm is not None and alarm.state is AlarmState.CANCELLED
        assert hub.core.pending == {}
        while (entry := await hub.store.next_pending()) is not None:
            assert entry.kind != "alarm", "a fall cancelled in its window never leaves the hub"
            await hub.store.mark_sent(entry.id, hub.clock.now_ms())


async def test_after_a_restart_a_press_queued_before_the_device_list_still_calls(
    tmp_path: Path,
) -> None:
    sos = {
        **DEVICES[0],
        "ieee_address": "0x00124b0029a1b2c3",
        "friendly_name": "sos button",
        "definition": {"vendor": "Tuya", "model": "TS0215A_sos", "exposes": []},
    }
    config = CONFIG.model_copy(
        update={
            "devices": [
                *CONFIG.devices,
                api.DeviceConfig(device_id=sos["ieee_address"], kind="button"),
            ]
        }
    )

    class Home(FakeUplink):
        async def config(self) -> api.HubConfig:
            return config

    hub, _ = make_hub(tmp_path, Home(), zigbee2mqtt_topic="zigbee2mqtt")
    async with hub.opened():
        await hub.refresh_config()
        await hub.handle_message(*z2m("bridge/devices", [*DEVICES, sos]))
    again, _ = make_hub(tmp_path, Home(), zigbee2mqtt_topic="zigbee2mqtt")
    async with again.opened():  # the config is cached; the device list not yet received
        await again.handle_message(*z2m("sos button", {"action": "emergency"}))
        entry = await again.store.next_pending()
        assert entry is not None and entry.kind == "alarm"
        assert entry.body["device_id"] == sos["ieee_address"]


async def test_a_paired_device_zigbee2mqtt_no_longer_lists_is_a_fault(tmp_path: Path) -> None:
    hub, _ = make_hub(tmp_path, ZigbeeHome(), zigbee2mqtt_topic="zigbee2mqtt")
    async with hub.opened():
        await hub.refresh_config()
        await hub.handle_message(*z2m("bridge/devices", DEVICES))
        assert offline(hub) == set()
        await hub.handle_message(*z2m("bridge/devices", DEVICES[1:]))  # the door is gone
        assert offline(hub) == {DOOR}
        faults = []
        while (entry := await hub.store.next_pending()) is not None:
            faults.append(entry.body)
            await hub.store.mark_sent(entry.id, hub.clock.now_ms())
        assert [(f["device_id"], f["fault"], f["active"]) for f in faults] == [
            (DOOR, "device_offline", True)
        ]
        assert "pair it again" in faults[0]["detail"]
