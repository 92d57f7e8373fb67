"""Issue 4, acceptance 2: a simulated wearable over real Mosquitto develops hypoxaemia and
the server receives one critical alarm with the readings attached; a wearable taken off
gives one `sensor_not_worn` fault and no alarm.

The wearable plays its model 30x faster than real time and stamps readings with its own
clock, so minutes of physiology take seconds; the hub's detector runs on those stamps. A
clock running 30x fast is exactly what the hub's device-clock guard re-stamps (docs/mqtt.md),
so this test's hub tolerates a day of drift."""

from __future__ import annotations

import time

import pytest

from firmware_sim.vitals_model import Deterioration, ElderVitalsModel
from firmware_sim.wearable import Wearable, from_model, taken_off
from tests.conftest import Deployment
from tests.mqtt_tools import wait_for

pytestmark = pytest.mark.integration
SPEED = 30.0


@pytest.fixture
def hub_env() -> dict[str, str]:
    return {"CAREHUB_DEVICE_CLOCK_TOLERANCE_S": "86400"}


def test_hypoxaemia_raises_one_critical_alarm_with_the_readings(deployment: Deployment) -> None:
    d = deployment
    model = ElderVitalsModel(
        11,
        deterioration=Deterioration("hypoxaemia", onset_s=240, ramp_s=60, target=84),
        artefacts=False,
    )
    with Wearable("wear-1", "127.0.0.1", d.broker.port, source=from_model(model), time_scale=SPEED):
        alarms = wait_for(lambda: [a for a in d.alarms() if a["kind"] == "vitals"], 60)
        assert alarms, d.hub.log_tail()
        time.sleep(120 / SPEED + 2)  # two more wearable minutes of low SpO2: still one alarm
    alarms = [a for a in d.alarms() if a["kind"] == "vitals"]
    assert len(alarms) == 1, alarms
    assert alarms[0]["severity"] == "critical" and alarms[0]["device_id"] == "wear-1"
    details = d.alarm(alarms[0]["id"])["details"]
    assert details["scores"]["spo2"] == 3, details["scores"]
    assert details["readings"] and min(r["spo2"] for r in details["readings"] if r["spo2"]) < 92
    assert wait_for(lambda: len(d.sms.messages) == 1, 10), "dispatched like a press"
    assert not d.faults("wear-1", "sensor_not_worn")


def test_a_wearable_taken_off_is_a_fault_not_an_alarm(deployment: Deployment) -> None:
    d = deployment
    model = ElderVitalsModel(12, artefacts=False)
    source = taken_off(from_model(model), at_s=120)
    with Wearable("wear-1", "127.0.0.1", d.broker.port, source=source, time_scale=SPEED):
        faults = wait_for(lambda: d.faults("wear-1", "sensor_not_worn"), 60)
        assert faults, d.hub.log_tail()
        time.sleep(300 / SPEED)  # five more wearable minutes off the body
    faults = d.faults("wear-1", "sensor_not_worn")
    assert [f["active"] for f in faults] == [True]
    assert d.alarms() == [] and d.sms.messages == []
