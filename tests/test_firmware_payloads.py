"""The simulated firmware speaks the strict contract: whatever its sensors produce (garbage
spikes, "no reading" zeros, a wearable cooling on a table), what it puts on the wire parses."""

from __future__ import annotations

import numpy as np

from carehub.mqtt_contract import (
    Channel,
    ImuFrame,
    VitalsReading,
    encode,
    parse_payload,
)
from firmware_sim.button import CallButton
from firmware_sim.pendant import FallPendant, synthetic_fall
from firmware_sim.vitals_model import ElderProfile, ElderVitalsModel
from firmware_sim.wearable import Wearable, from_model, steady_elder, taken_off

NOWHERE = ("127.0.0.1", 9)  # the devices are never started: no socket is opened


def test_wearable_readings_parse_even_when_the_sensor_gives_garbage() -> None:
    profile = ElderProfile(spikes_per_h=120.0, take_offs_per_day=24.0, offbody_reports_zeros=True)
    wearable = Wearable("w-1", *NOWHERE, source=from_model(ElderVitalsModel(3, profile)))
    sent = nulled = 0
    for t in range(0, 3 * 3600, 3):
        reading = wearable.reading(float(t))
        if reading is None:
            continue
        parsed = parse_payload(Channel.VITALS, encode(reading))
        assert isinstance(parsed, VitalsReading)
        sent += 1
        nulled += parsed.hr is None
    assert sent > 1000 and nulled > 0  # garbage and zeros went out as null, not refused


def test_a_wearable_taken_off_keeps_reporting_the_room_temperature() -> None:
    wearable = Wearable("w-2", *NOWHERE, source=taken_off(steady_elder, at_s=10.0))
    late = wearable.reading(3600.0)
    assert late is not None
    parsed = parse_payload(Channel.VITALS, encode(late))
    assert isinstance(parsed, VitalsReading) and parsed.temp is not None and parsed.temp < 25


def test_button_and_pendant_messages_parse() -> None:
    button = CallButton("b-1", *NOWHERE)
    sent: list[tuple[Channel, bytes]] = []
    button.publish = lambda channel, message: sent.append((channel, encode(message)))  # type: ignore[method-assign]
    button.send_status(battery=87.0)
    pendant = FallPendant("p-1", *NOWHERE, hz=50.0)
    acc = synthetic_fall(50.0, np.random.default_rng(1))
    gyr = np.gradient(acc, axis=0) * 500.0
    for i in range(0, len(acc), 50):
        frame = pendant.frame(acc[i : i + 50], gyr[i : i + 50], 1_764_000_000_000 + 20 * i)
        sent.append((Channel.IMU, encode(frame)))
    assert len(sent) > 20
    for channel, raw in sent:
        assert parse_payload(channel, raw)
    assert all(isinstance(parse_payload(c, r), ImuFrame) for c, r in sent if c is Channel.IMU)
