"""Device supervision core: faults on change only, cleared when the device returns."""

from __future__ import annotations

from gateway.supervision import FaultChange, Supervisor


def test_silence_beyond_the_interval_raises_offline_once_and_a_message_clears_it() -> None:
    s = Supervisor(offline_after_ms=60_000)
    s.expect(["btn-1", "wear-1"], now_ms=0)
    assert s.seen("btn-1", 50_000) == []
    assert s.tick(61_000) == [FaultChange("wear-1", "device_offline", True, "silent for 61 s")]
    assert s.tick(62_000) == []  # deduplicated
    assert s.online() == 1
    assert s.seen("wear-1", 63_000) == [FaultChange("wear-1", "device_offline", False, "back")]
    assert s.tick(111_000) == [FaultChange("btn-1", "device_offline", True, "silent for 61 s")]


def test_last_will_is_offline_at_once() -> None:
    s = Supervisor(offline_after_ms=600_000)
    s.expect(["btn-1"], 0)
    assert [c.active for c in s.last_will("btn-1", 10)] == [True]
    assert s.last_will("btn-1", 20) == []
    assert [c.active for c in s.seen("btn-1", 30)] == [False]


def test_battery_low_has_hysteresis() -> None:
    s = Supervisor(offline_after_ms=60_000, battery_low_pct=20, battery_hysteresis_pct=5)
    s.expect(["wear-1"], 0)
    assert s.battery("wear-1", 50) == []
    assert [c.active for c in s.battery("wear-1", 19)] == [True]
    assert s.battery("wear-1", 21) == []  # hovering at the threshold: no flapping
    assert s.battery("wear-1", 18) == []
    assert [c.active for c in s.battery("wear-1", 25)] == [False]


def test_faults_restored_after_a_restart_are_not_reported_again() -> None:
    s = Supervisor(offline_after_ms=60_000)
    s.restore("wear-1", "device_offline")
    s.expect(["wear-1"], 0)
    assert s.tick(100_000) == []
    assert [c.active for c in s.seen("wear-1", 100_001)] == [False]


def test_sensor_not_worn_comes_from_the_vitals_detector() -> None:
    s = Supervisor(offline_after_ms=60_000)
    assert [(c.fault, c.active) for c in s.worn("wear-1", False, "no pulse")] == [
        ("sensor_not_worn", True)
    ]
    assert s.worn("wear-1", False, "no pulse") == []
    assert [c.active for c in s.worn("wear-1", True, "pulse back")] == [False]
