"""The self-test walks through the Zigbee devices too: each button pressed and its test
alarm taken by the server, each sensor tripped, battery reported (pure core here; through
a real broker, hub and server in test_zigbee_e2e)."""

from __future__ import annotations

from carehub.mqtt_contract import Ack, AckState
from gateway.selftest import SelftestCore
from gateway.zigbee.bridge import Heard
from gateway.zigbee.translate import Activity, BatteryLevel, Call

T0 = 1_764_000_000_000
SOS, RADAR, PIR, DOOR = "0x01", "0x02", "0x03", "0x04"
HOME = {SOS: "button", RADAR: "fall_radar", PIR: "motion_sensor", DOOR: "door_sensor"}


def test_zigbee_devices_pass_by_being_heard_pressed_and_tripped() -> None:
    core = SelftestCore(HOME, battery_low_pct=20, started_at_ms=T0, zigbee=frozenset(HOME))
    names = sorted((c.device_id or "", c.name) for c in core.checks)
    assert (SOS, "signal") not in names  # Zigbee2MQTT reports no dBm
    assert (RADAR, "battery") not in names and (PIR, "battery") in names  # a radar is mains
    assert (RADAR, "presence seen") in names and (DOOR, "door opened") in names
    for device in HOME:
        core.zigbee_seen(device, Heard())
        core.zigbee_seen(device, BatteryLevel(80))
    core.zigbee_seen(SOS, Call("emergency"))
    core.zigbee_seen(RADAR, Activity("presence"))
    core.zigbee_seen(PIR, Activity("motion"))
    core.zigbee_seen(DOOR, Activity("door_closed"))
    assert f"{DOOR}: door opened (not seen)" in core.missing()
    core.zigbee_seen(DOOR, Activity("door_opened"))
    core.acked(SOS, Ack(v=1, seq=None, alarm_id="a1", state=AckState.RECEIVED))
    assert not core.passed
    core.acked(SOS, Ack(v=1, seq=None, alarm_id="a1", state=AckState.DISPATCHED))
    assert core.passed, core.missing()
    assert core.report("r1", T0 + 1).test_alarm_id == "a1"


def test_a_zigbee_battery_under_the_threshold_fails() -> None:
    core = SelftestCore({PIR: "motion_sensor"}, 20, T0, zigbee=frozenset({PIR}))
    core.zigbee_seen(PIR, BatteryLevel(9))
    core.zigbee_seen("0x99", Heard())  # not paired: nothing
    failed = {c.name: c.detail for c in core.checks if not c.passed}
    assert failed == {
        "battery": "9 %",
        "heartbeat": "not seen",
        "motion seen": "not seen",
        "test alarm taken by the server": "no button",
    }
