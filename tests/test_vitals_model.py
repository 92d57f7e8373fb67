"""The seeded elder model and the simulated wearable that plays it over MQTT."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from carehub.mqtt_contract import Channel, Topics, VitalsReading, parse_payload
from edge.vital_signs import VitalsDetector, VitalsSample, VitalsSettings
from firmware_sim.vitals_model import Deterioration, ElderProfile, ElderVitalsModel
from firmware_sim.wearable import Wearable, from_model, silent, steady_elder, taken_off
from harness.broker import Mosquitto


def test_the_model_is_a_pure_function_of_seed_and_time() -> None:
    a = ElderVitalsModel(5).simulate(7200, start_s=3000)
    b = ElderVitalsModel(5).simulate(7200, start_s=3000)
    c = ElderVitalsModel(6).simulate(7200, start_s=3000)
    np.testing.assert_array_equal(a.hr, b.hr)
    np.testing.assert_array_equal(a.present, b.present)
    assert not np.array_equal(a.true_hr, c.true_hr)
    # the streaming API returns the same numbers as the batch one
    m = ElderVitalsModel(5)
    for i in range(3000, 3000 + 7200, 397):
        s = m.sample(i)
        j = i - 3000
        if not a.present[j]:
            assert s is None
            continue
        assert s is not None
        for name in ("hr", "spo2", "rr", "temp", "motion", "quality"):
            v = getattr(a, name)[j]
            assert (s[name] is None and np.isnan(v)) or s[name] == v


def test_clean_physiology_is_plausible_with_a_circadian_rhythm() -> None:
    profile = ElderProfile(sleep_start_h=22.0, sleep_end_h=6.0)
    m = ElderVitalsModel(1, profile, start_hour=0.0, artefacts=False)
    day = m.simulate(86400)
    hours = (day.t_s / 3600.0) % 24
    night, afternoon = (hours >= 1) & (hours < 5), (hours >= 13) & (hours < 17)
    assert np.nanmedian(day.true_hr[night]) < np.nanmedian(day.true_hr[afternoon]) - 5
    assert 45 < np.nanmin(day.true_hr) and np.nanmax(day.true_hr) < 125
    assert 90 < np.nanmin(day.true_spo2) <= np.nanmax(day.true_spo2) <= 100
    assert 35.8 < np.nanmin(day.true_temp) and np.nanmax(day.true_temp) < 37.5
    assert np.nanmedian(day.motion[night]) < np.nanmedian(day.motion[afternoon])


def test_artefacts_happen_as_a_wearable_misbehaves() -> None:
    m = ElderVitalsModel(2, ElderProfile(dropouts_per_day=40, spikes_per_h=2.0))
    rec = m.simulate(2 * 86400)
    assert 0.80 < rec.present.mean() < 0.999  # dropouts, take-offs
    assert np.nanmax(rec.hr) > 250 or np.nanmin(rec.hr) <= 0  # garbage values
    # the true signal never is garbage
    assert np.nanmax(rec.true_hr) < 200


@pytest.mark.parametrize(
    ("kind", "signal", "reached"),
    [
        ("hypoxaemia", "true_spo2", lambda x: x < 91.5),
        ("tachycardia", "true_hr", lambda x: x >= 130.5),
        ("bradycardia", "true_hr", lambda x: x < 40.5),
        ("tachypnoea", "true_rr", lambda x: x >= 24.5),
        ("fever", "true_temp", lambda x: x >= 39.05),
    ],
)
def test_injected_deteriorations_reach_their_news2_level(kind, signal, reached) -> None:  # type: ignore[no-untyped-def]
    profile = ElderProfile()
    m = ElderVitalsModel(3, profile, deterioration=Deterioration(kind, onset_s=1800))
    rec = m.simulate(4 * 3600 + 1800)
    before = getattr(rec, signal)[rec.t_s < 1800]
    assert not reached(before).any()
    level = m.level_reached_s(rec.t_s.size)
    assert level is not None and level >= 1800
    assert reached(getattr(rec, signal)[int(level)])


def test_taking_the_model_off_gives_no_pulse_and_a_cooling_temperature() -> None:
    m = ElderVitalsModel(4, take_off_at_s=600, artefacts=False)
    rec = m.simulate(2400)
    off = rec.t_s >= 600
    assert np.isnan(rec.hr[off]).all() and (rec.quality[off] == 0).all()
    assert rec.temp[-1] < 28.0


def test_the_scenarios_for_end_to_end_tests() -> None:
    assert silent(3.0) is None  # type: ignore[func-returns-value]
    play = taken_off(steady_elder, at_s=100.0)
    assert play(50.0) == steady_elder(50.0)
    later = play(1000.0)
    assert later is not None
    assert "hr" not in later and later["quality"] == 0.0 and later["temp"] < 30.0
    assert taken_off(steady_elder, 100.0, reports=False)(1000.0) is None


def test_the_wearable_turns_a_source_into_contract_readings() -> None:
    model = ElderVitalsModel(8, artefacts=False)
    w = Wearable("w-unit", "127.0.0.1", 1, source=from_model(model), time_scale=10.0)
    reading = w.reading(12.0)
    assert isinstance(reading, VitalsReading)
    assert reading.hr == model.sample(12.0)["hr"]  # type: ignore[index]
    nan_source = {"hr": float("nan"), "spo2": 97.0, "motion": -1.0, "quality": 1.5}
    w.set_source(lambda _t: nan_source)
    r = w.reading(13.0)
    assert r is not None and r.hr is None and r.motion is None and r.quality == 1.0
    assert r.ts - w.reading(12.0).ts == 1000  # type: ignore[union-attr]
    w.set_source(silent)
    assert w.reading(14.0) is None
    with pytest.raises(ValueError):
        Wearable("w-bad", "127.0.0.1", 1, time_scale=0.0)


def test_the_detector_sees_a_short_deterioration_played_by_the_model() -> None:
    """The scenario an end-to-end test plays: 2-min onset, clean signal."""
    model = ElderVitalsModel(
        9, deterioration=Deterioration("hypoxaemia", 300, ramp_s=60, target=84), artefacts=False
    )
    det = VitalsDetector(VitalsSettings(spo2_scale2=model.profile.spo2_scale2))
    events = []
    for t, fields in model.iter_samples(0, 900):
        sample = VitalsSample(1_700_000_000_000 + int(t * 1000), **fields)  # type: ignore[arg-type]
        events += [(t, e) for e in det.push(sample)]
    [(t_alarm, alarm)] = events
    assert alarm.kind == "alarm" and alarm.severity == "critical"
    assert 300 < t_alarm < 300 + 60 + 180


@pytest.mark.integration
def test_the_wearable_publishes_faster_than_real_time(mosquitto: Mosquitto) -> None:
    topics = Topics("carehub")
    got: list[VitalsReading] = []
    lock = threading.Lock()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        r = parse_payload(Channel.VITALS, bytes(msg.payload))
        assert isinstance(r, VitalsReading)
        with lock:
            got.append(r)

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe(topics.device("w-e2e", Channel.VITALS), qos=0)
    sub.loop_start()
    try:
        time.sleep(0.3)
        source = taken_off(steady_elder, at_s=20.0)
        with Wearable("w-e2e", "127.0.0.1", mosquitto.port, source=source, time_scale=20.0):
            time.sleep(2.0)  # ~40 wearable seconds
        time.sleep(0.2)
    finally:
        sub.loop_stop()
        sub.disconnect()
    with lock:
        readings = list(got)
    assert len(readings) >= 25
    steps = np.diff([r.ts for r in readings])
    assert (steps == 1000).mean() > 0.9  # stamped in wearable time, 1 s apart
    assert json.loads(readings[0].model_dump_json())["hr"] == 72.0
    assert readings[-1].hr is None and readings[-1].quality == 0.0
