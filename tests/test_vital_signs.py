"""The streaming vital-sign detector: persistence, hysteresis, artefacts and wear faults."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.vital_signs import VitalsDetector, VitalsEvent, VitalsSample, VitalsSettings
from firmware_sim.vitals_model import Deterioration, ElderVitalsModel

T0 = 1_700_000_000_000  # ms since epoch
Scenario = Callable[[float, np.random.Generator], dict[str, Any] | None]
Steady = Callable[[float, np.random.Generator], dict[str, Any]]


def healthy(
    hr: float = 72.0,
    spo2: float = 96.5,
    rr: float = 16.0,
    temp: float = 36.7,
    **extra: Any,
) -> Steady:
    """Measured values with realistic noise around the given means (bpm, %, /min, °C)."""

    def at(_t: float, rng: np.random.Generator) -> dict[str, Any]:
        return {
            "hr": round(hr + rng.normal(0, 1.5)),
            "spo2": min(round(spo2 + rng.normal(0, 0.6)), 100),
            "rr": round(rr + rng.normal(0, 1.0)),
            "temp": round(temp + rng.normal(0, 0.05), 1),
            "motion": 0.03,
            "quality": 0.95,
            **extra,
        }

    return at


def run(
    det: VitalsDetector,
    scenario: Scenario,
    start_s: float,
    seconds: float,
    *,
    seed: int = 0,
    period_s: float = 1.0,
) -> list[tuple[float, VitalsEvent]]:
    """Push one sample every ``period_s`` over [start_s, start_s + seconds); (t_s, event)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, VitalsEvent]] = []
    for t in np.arange(start_s, start_s + seconds, period_s):
        fields = scenario(float(t), rng)
        ts = T0 + int(round(t * 1000))
        if fields is not None:
            for e in det.push(VitalsSample(ts, **fields)):
                out.append((float(t), e))
        if int(t) % 5 == 0:
            for e in det.tick(ts):
                out.append((float(t), e))
    return out


def kinds(events: list[tuple[float, VitalsEvent]]) -> list[tuple[str, str | None]]:
    return [(e.kind, e.severity or e.fault) for _, e in events]


def alarms(events: list[tuple[float, VitalsEvent]]) -> list[tuple[float, VitalsEvent]]:
    return [(t, e) for t, e in events if e.kind == "alarm"]


# ----- scoring, persistence, hysteresis ------------------------------------------------------


def test_a_healthy_elder_raises_nothing() -> None:
    det = VitalsDetector()
    assert run(det, healthy(), 0, 3 * 3600) == []
    assert det.alarm_level is None and det.fault is None


def test_sustained_red_spo2_is_critical_after_the_persistence_time() -> None:
    det = VitalsDetector()
    events = run(det, healthy(), 0, 600)
    events += run(det, healthy(spo2=88.0), 600, 900, seed=1)
    [(t, alarm)] = alarms(events)
    assert alarm.severity == "critical"
    persistence = det.settings.critical_persistence_s
    assert 600 + 0.8 * persistence <= t <= 600 + persistence + 30
    assert alarm.scores["spo2"] == 3
    assert "spo2" in alarm.reason
    assert alarm.readings and all("spo2" in r and "ts_ms" in r for r in alarm.readings)
    assert any(r["spo2"] is not None and r["spo2"] <= 91 for r in alarm.readings)
    assert kinds(events) == [("alarm", "critical")]  # one alarm per episode


def test_an_abnormal_stretch_shorter_than_the_persistence_time_is_ignored() -> None:
    det = VitalsDetector()
    events = run(det, healthy(), 0, 600)
    events += run(det, healthy(spo2=87.0, hr=135.0), 600, 60, seed=1)
    events += run(det, healthy(), 660, 1200, seed=2)
    assert events == []


def test_persistence_is_configurable() -> None:
    det = VitalsDetector(VitalsSettings(critical_persistence_s=300.0))
    events = run(det, healthy(), 0, 600)
    events += run(det, healthy(hr=140.0), 600, 200, seed=1)
    assert events == []
    events = run(det, healthy(hr=140.0), 800, 300, seed=2)
    [(t, alarm)] = alarms(events)
    assert alarm.severity == "critical" and alarm.scores["hr"] == 3
    assert t <= 600 + 300 + 40


def test_alarm_clears_only_after_recovery_and_values_near_the_edge_do_not_rearm() -> None:
    s = VitalsSettings()
    det = VitalsDetector(s)
    events = run(det, healthy(), 0, 600)
    events += run(det, healthy(spo2=88.0), 600, 300, seed=1)
    assert kinds(events) == [("alarm", "critical")]
    # hovering around the red edge (91/92 %) for 20 min: still the same episode
    events = run(det, healthy(spo2=91.5), 900, 1200, seed=2)
    assert events == []
    assert det.alarm_level == "critical"
    # back to normal: cleared once, clear_after_s later
    events = run(det, healthy(), 2100, 1200, seed=3)
    assert kinds(events) == [("alarm_cleared", "critical")]
    t_clear = events[0][0]
    assert 2100 + s.clear_after_s <= t_clear <= 2100 + s.clear_after_s + 30
    # a new episode is a new alarm
    events = run(det, healthy(spo2=88.0), 3300, 300, seed=4)
    assert kinds(events) == [("alarm", "critical")]


def test_scale2_elder_at_her_target_saturation_is_not_alarmed() -> None:
    for scale2, expect in ((True, []), (False, [("alarm", "critical")])):
        det = VitalsDetector(VitalsSettings(spo2_scale2=scale2))
        events = run(det, healthy(spo2=89.0), 0, 1800)
        assert kinds(events) == expect, scale2
    det = VitalsDetector(VitalsSettings(spo2_scale2=True))
    events = run(det, healthy(spo2=89.0), 0, 600)
    events += run(det, healthy(spo2=81.0), 600, 600, seed=1)
    [(_, alarm)] = alarms(events)
    assert alarm.severity == "critical" and alarm.scores["spo2"] == 3


def test_aggregate_five_is_a_warning_and_escalates_once_to_critical() -> None:
    s = VitalsSettings()
    det = VitalsDetector(s)
    events = run(det, healthy(), 0, 600)
    # pulse 115 (2) + respiration 22 (2) + SpO2 95 (1) = 5, no red sub-score
    events += run(det, healthy(hr=115.0, rr=22.0, spo2=95.0), 600, 1200, seed=1)
    [(t, warning)] = alarms(events)
    assert warning.severity == "warning"
    assert warning.scores["total"] >= 5
    assert t <= 600 + s.warning_persistence_s + 60
    events = run(det, healthy(hr=115.0, rr=26.0, spo2=95.0), 1800, 600, seed=2)
    [(_, critical)] = alarms(events)
    assert critical.severity == "critical" and critical.scores["rr"] == 3
    assert det.alarm_level == "critical"


def test_change_from_the_personal_baseline_is_a_warning_before_news2_notices() -> None:
    det = VitalsDetector()
    day = healthy(hr=58.0, spo2=97.0, rr=14.0)
    events = run(det, day, 0, 14 * 3600, period_s=5.0)
    assert events == []
    # 86 bpm scores 0 on the chart, but it is 28 bpm above this elder's normal
    events = run(det, healthy(hr=86.0, spo2=97.0, rr=14.0), 14 * 3600, 3600, seed=1, period_s=5)
    [(_, warning)] = alarms(events)
    assert warning.severity == "warning"
    assert "baseline" in warning.reason and "hr" in warning.reason
    assert warning.scores["total"] == 0


# ----- artefacts never raise an emergency -----------------------------------------------------


def with_baseline(det: VitalsDetector) -> list[tuple[float, VitalsEvent]]:
    return run(det, healthy(), 0, 600)


def test_impossible_values_are_dropped() -> None:
    garbage: list[Any] = [0, -1, 255, 1e4, 300, float("nan"), float("inf"), None, "x", True]

    def scenario(t: float, rng: np.random.Generator) -> dict[str, Any]:
        fields = healthy()(t, rng)
        bad = garbage[int(t) % len(garbage)]
        for name in ("hr", "spo2", "rr", "temp", "sbp"):
            if int(t) % 2:
                fields[name] = bad
        return fields

    det = VitalsDetector()
    events = with_baseline(det) + run(det, scenario, 600, 3600, seed=1)
    assert events == []


def test_isolated_jumps_are_dropped() -> None:
    def scenario(t: float, rng: np.random.Generator) -> dict[str, Any]:
        fields = healthy()(t, rng)
        if int(t) % 20 in (0, 1):  # two-sample spikes every 20 s
            fields.update(hr=180, spo2=70, rr=40)
        return fields

    det = VitalsDetector()
    assert with_baseline(det) + run(det, scenario, 600, 3600, seed=1) == []


def test_frozen_abnormal_values_are_not_scored_and_become_a_wear_fault() -> None:
    frozen = {"hr": 135.0, "spo2": 85.0, "rr": 30.0, "temp": 36.5, "motion": 0.0, "quality": 0.9}
    det = VitalsDetector()
    events = with_baseline(det) + run(det, lambda t, rng: dict(frozen), 600, 1800, seed=1)
    assert [k for k, _ in kinds(events)] == ["fault"]
    assert events[0][1].fault == "sensor_not_worn"
    assert events[0][1].severity is None


def test_one_frozen_channel_is_not_scored() -> None:
    def scenario(t: float, rng: np.random.Generator) -> dict[str, Any]:
        return {**healthy()(t, rng), "hr": 140.0}  # firmware stuck on one value

    det = VitalsDetector()
    assert with_baseline(det) + run(det, scenario, 600, 1800, seed=1) == []


def test_low_quality_values_are_not_scored() -> None:
    det = VitalsDetector()
    events = with_baseline(det)
    events += run(det, healthy(spo2=84.0, hr=140.0, quality=0.2), 600, 1800, seed=1)
    assert alarms(events) == []


def test_motion_reported_by_the_wearable_suppresses_ppg_values() -> None:
    det = VitalsDetector()
    events = with_baseline(det)
    # walking: PPG locks onto the cadence (140) and SpO2 reads low
    events += run(det, healthy(hr=140.0, spo2=88.0, motion=0.7), 600, 1800, seed=1)
    assert alarms(events) == []


def test_motion_from_the_pendant_suppresses_ppg_values() -> None:
    det = VitalsDetector()
    events = with_baseline(det)
    rng = np.random.default_rng(1)
    for t in range(600, 2400):
        det.push_motion(T0 + t * 1000 - 500, 0.8)
        fields = healthy(hr=140.0, spo2=88.0)(t, rng)
        events += [(t, e) for e in det.push(VitalsSample(T0 + t * 1000, **fields))]
    assert alarms(events) == []
    # the same values without motion are an emergency
    events = run(det, healthy(hr=140.0, spo2=88.0), 2400, 600, seed=2)
    assert [k for k, _ in kinds(events)] == ["alarm"]


def test_loose_strap_scatter_is_not_scored() -> None:
    def scenario(t: float, rng: np.random.Generator) -> dict[str, Any]:
        fields = healthy()(t, rng)
        fields["spo2"] = min(round(89 + rng.normal(0, 4)), 100)  # scattered, falsely low
        fields["hr"] = round(72 + rng.normal(0, 25))
        return fields

    det = VitalsDetector()
    assert alarms(with_baseline(det) + run(det, scenario, 600, 3600, seed=1)) == []


@pytest.mark.parametrize("zeros", [False, True])
def test_taking_the_wearable_off_is_a_fault_never_an_alarm(zeros: bool) -> None:
    def off(t: float, _rng: np.random.Generator) -> dict[str, Any]:
        temp = 22.0 + (36.5 - 22.0) * math.exp(-(t - 600) / 300.0)
        fill = 0.0 if zeros else None
        return {"hr": fill, "spo2": fill, "rr": fill, "temp": round(temp, 1), "quality": 0.0}

    det = VitalsDetector()
    events = with_baseline(det) + run(det, off, 600, 3600, seed=1)
    assert kinds(events) == [("fault", "sensor_not_worn")]
    assert events[0][0] <= 600 + det.settings.no_pulse_s + 20
    # put back on: the fault clears once good readings have been back fault_clear_s
    events = run(det, healthy(), 4200, 600, seed=2)
    assert kinds(events) == [("fault_cleared", "sensor_not_worn")]
    assert events[0][0] <= 4200 + det.settings.fault_clear_s + 30


def test_a_silent_wearable_raises_sensor_not_worn_once_on_tick() -> None:
    det = VitalsDetector()
    with_baseline(det)
    last = T0 + 599_000
    assert det.tick(last + 60_000) == []
    [fault] = det.tick(last + int(det.settings.no_data_s * 1000))
    assert fault.kind == "fault" and fault.fault == "sensor_not_worn"
    assert det.tick(last + 600_000) == []  # one fault per episode
    events = run(det, healthy(), 1800, 300, seed=1)
    assert kinds(events) == [("fault_cleared", "sensor_not_worn")]


def test_no_alarm_while_not_worn_even_if_the_values_look_alarming() -> None:
    det = VitalsDetector()
    with_baseline(det)
    det.tick(T0 + 800_000)  # silent for 200 s: fault
    assert det.fault is not None
    events = run(det, healthy(hr=140.0, spo2=85.0, quality=0.2), 800, 1800, seed=1)
    assert alarms(events) == []


def test_simulated_take_off_and_battery_death_raise_faults_only() -> None:
    model = ElderVitalsModel(3, take_off_at_s=3 * 3600, battery_dies_at_s=5 * 3600)
    rec = model.simulate(6 * 3600)
    det = VitalsDetector(VitalsSettings(spo2_scale2=model.profile.spo2_scale2))
    p = rec.present
    ts = T0 + (rec.t_s[p] * 1000).astype(np.int64)
    cols = {c: getattr(rec, c)[p] for c in ("hr", "spo2", "rr", "temp", "motion", "quality")}
    events = det.push_many(ts, **cols)
    events += det.tick(int(ts[-1]) + 600_000)
    assert not [e for e in events if e.kind == "alarm"]
    assert any(e.kind == "fault" and e.ts_ms <= T0 + (3 * 3600 + 400) * 1000 for e in events)


# ----- robustness and the offline path ------------------------------------------------------


def test_out_of_order_and_invalid_timestamps_are_ignored() -> None:
    det = VitalsDetector()
    assert det.push(VitalsSample(T0, hr=72.0)) == []
    assert det.push(VitalsSample(T0 - 5000, hr=140.0)) == []
    assert det.push(VitalsSample(T0, hr=140.0)) == []
    for bad in (float("nan"), None, "soon", float("inf")):
        assert det.push(VitalsSample(bad, hr=72.0)) == []  # type: ignore[arg-type]
        assert det.tick(bad) == []  # type: ignore[arg-type]
    det.push_motion(bad, 1.0)  # type: ignore[arg-type]
    det.push_motion(T0, float("nan"))
    assert det.push(VitalsSample(int(T0 + 1000), hr=72.0)) == []


finite_or_junk = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**6), max_value=10**6),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-5_000, max_value=600_000),
            finite_or_junk,
            finite_or_junk,
            finite_or_junk,
            finite_or_junk,
            finite_or_junk,
            finite_or_junk,
        ),
        max_size=200,
    )
)
def test_any_input_is_tolerated(rows: list[tuple[Any, ...]]) -> None:
    det = VitalsDetector()
    for dt, hr, spo2, rr, temp, motion, quality in rows:
        det.push(VitalsSample(T0 + dt, hr, spo2, rr, temp, None, motion, quality))
        det.push_motion(T0 + dt, motion)
        det.tick(T0 + dt)


def test_push_many_matches_push_sample_by_sample() -> None:
    model = ElderVitalsModel(
        11, deterioration=Deterioration("hypoxaemia", onset_s=5 * 3600, ramp_s=600)
    )
    rec = model.simulate(7 * 3600)
    p = rec.present
    ts = T0 + (rec.t_s[p] * 1000).astype(np.int64)
    names = ("hr", "spo2", "rr", "temp", "motion", "quality")
    cols = {c: getattr(rec, c)[p] for c in names}
    s = VitalsSettings(spo2_scale2=model.profile.spo2_scale2)

    batch = VitalsDetector(s).push_many(ts, **cols)

    det = VitalsDetector(s)
    streamed: list[VitalsEvent] = []
    no_data_ms = int(s.no_data_s * 1000)
    last: int | None = None
    for i, t in enumerate(ts.tolist()):
        if last is not None and t - last > no_data_ms:
            streamed += det.tick(last + no_data_ms)  # the hub's periodic tick
        row = {c: float(cols[c][i]) for c in names}
        streamed += det.push(VitalsSample(t, **{k: None if v != v else v for k, v in row.items()}))
        last = t
    assert streamed == batch
    assert any(e.kind == "alarm" and e.severity == "critical" for e in batch)


def test_a_freeze_on_an_abnormal_value_is_forgotten() -> None:
    """A short real dip, then the firmware froze on its last (red) value: not an emergency.
    (Found on the tuning seeds: the frozen epochs used to complete the persistence window.)"""

    def scenario(t: float, rng: np.random.Generator) -> dict[str, Any]:
        fields = healthy()(t, rng)
        fields["spo2"] = round(85 + rng.normal(0, 1.0))
        if t >= 1138:
            fields.update(hr=76.0, spo2=85.0, rr=16.0)
        return fields

    det = VitalsDetector()
    events = run(det, healthy(), 0, 1125) + run(det, scenario, 1125, 600, seed=1)
    assert alarms(events) == []


def test_a_low_systolic_pressure_from_a_cuff_is_critical() -> None:
    def scenario(t: float, rng: np.random.Generator) -> dict[str, Any]:
        fields = healthy()(t, rng)
        if int(t) % 300 == 0:  # a cuff measures every 5 min
            fields["sbp"] = 118.0 if t < 1200 else 86.0
        return fields

    det = VitalsDetector()
    events = run(det, scenario, 0, 1800)
    [(t, alarm)] = alarms(events)
    assert alarm.severity == "critical" and alarm.scores["sbp"] == 3
    assert 1200 < t <= 1200 + det.settings.critical_persistence_s + 30
