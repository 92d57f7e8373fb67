"""The self-test's checks as plain decisions: what each message proves, and the report."""

from __future__ import annotations

from carehub.mqtt_contract import (
    Ack,
    AckState,
    ButtonEvent,
    DeviceStatus,
    ImuFrame,
    VitalsReading,
)
from gateway.selftest import SelftestCore

T0 = 1_764_000_000_000
HOME = {"btn-1": "button", "pend-1": "pendant", "wear-1": "wearable"}


def status(battery: float, rssi: float) -> DeviceStatus:
    return DeviceStatus(v=1, seq=1, ts=T0, battery=battery, rssi=rssi, firmware="fw\x001")


def test_a_home_passes_once_every_device_has_done_its_part() -> None:
    core = SelftestCore(HOME, battery_low_pct=20, started_at_ms=T0)
    assert len(core.checks) == 3 * 3 + 3 + 1 and not core.passed
    for device in HOME:
        core.seen(device, status(90, -60))
    core.seen("btn-1", ButtonEvent(v=1, seq=5, ts=T0 + 10, action="press"))
    core.acked("btn-1", Ack(v=1, seq=5, alarm_id="a1", state=AckState.RECEIVED))
    assert core.test_alarm_id is None  # the hub has it; the server not yet
    core.acked("btn-1", Ack(v=1, seq=4, alarm_id="a0", state=AckState.DISPATCHED))  # other press
    core.acked("btn-1", Ack(v=1, seq=5, alarm_id="a1", state=AckState.DISPATCHED))
    core.seen("pend-1", ImuFrame(v=1, seq=1, t0=T0, hz=50, acc=[[0, 1, 0], [1.0, 1.5, 0.1]]))
    assert "pend-1: impact felt (not seen)" in core.missing()
    core.seen("pend-1", ImuFrame(v=1, seq=2, t0=T0, hz=50, acc=[[0, 1, 0], [3.0, 1.5, 0.1]]))
    core.seen("wear-1", VitalsReading(v=1, seq=1, ts=T0, hr=70, quality=0.2))  # not worn yet
    assert not core.passed
    core.seen("wear-1", VitalsReading(v=1, seq=2, ts=T0, hr=70, quality=0.9))
    core.seen("stranger", status(90, -60))
    assert core.passed, core.missing()
    report = core.report("r1", T0 + 30_000)
    assert report.passed and report.test_alarm_id == "a1" and len(report.checks) == 13
    assert all("\x00" not in c.detail for c in report.checks)
    assert all(line.startswith("[PASS]") for line in core.checklist())


def test_weak_battery_and_signal_fail_until_better_news() -> None:
    core = SelftestCore({"btn-1": "button"}, battery_low_pct=20, started_at_ms=T0)
    core.seen("btn-1", status(10, -95))
    failed = {c.name: c.detail for c in core.checks if not c.passed}
    assert failed["battery"] == "10 %" and failed["signal"] == "-95 dBm"
    core.seen("btn-1", status(60, -70))
    assert {c.name for c in core.checks if c.passed} == {"heartbeat", "battery", "signal"}


def test_an_old_press_retried_by_the_firmware_is_not_the_test() -> None:
    core = SelftestCore({"btn-1": "button"}, battery_low_pct=20, started_at_ms=T0)
    core.seen("btn-1", ButtonEvent(v=1, seq=1, ts=T0 - 60_000, action="press"))
    core.seen("btn-1", ButtonEvent(v=1, seq=2, ts=T0, action="cancel"))
    assert not any(c.passed for c in core.checks if c.name == "button pressed")


def test_a_home_without_a_button_cannot_prove_its_test_alarm() -> None:
    core = SelftestCore({"wear-1": "wearable"}, battery_low_pct=20, started_at_ms=T0)
    assert "home: test alarm taken by the server (no button)" in core.missing()
    assert not core.report("r", T0).passed
