"""Issue 2, acceptance 2 and 3: a press published with mosquitto_pub reaches the doctor's
phone once, through a real broker, server and hub; bad input is dropped and logged."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import BOTH_DATABASES, Deployment
from tests.mqtt_tools import AckWatcher, pub, wait_for

pytestmark = pytest.mark.integration


@BOTH_DATABASES
def test_press_reaches_the_doctor_exactly_once(deployment: Deployment) -> None:
    d = deployment
    watcher = AckWatcher(d, "btn-1")
    press = json.dumps({"v": 1, "seq": 17, "ts": int(time.time() * 1000), "action": "press"})
    pub(d, "btn-1", "button", press)
    acks = watcher.collect("dispatched")
    assert [a["state"] for a in acks] == ["received", "dispatched"], acks
    assert all(a["seq"] == 17 for a in acks)
    alarm_id = acks[0]["alarm_id"]

    for _ in range(3):  # firmware retries of the same event
        pub(d, "btn-1", "button", press)
    repeats = watcher.drain(2.0)[2:]
    watcher.close()
    assert repeats and all(
        a["alarm_id"] == alarm_id and a["state"] == "dispatched" for a in repeats
    )

    # the state change made on the server reaches the device within 2 s (long-poll)
    alarms = d.alarms()
    assert len(alarms) == 1 and alarms[0]["hub_alarm_id"] == alarm_id
    events = d.alarm(alarms[0]["id"])["events"]
    dispatched_ms = next(e["at_ms"] for e in events if e["state"] == "dispatched")
    ack_ms = next(a["_received_ms"] for a in acks if a["state"] == "dispatched")
    assert 0 <= ack_ms - dispatched_ms <= 2000, (dispatched_ms, ack_ms)

    alarms = d.alarms()
    assert len(alarms) == 1 and alarms[0]["hub_alarm_id"] == alarm_id
    assert alarms[0]["state"] == "dispatched" and alarms[0]["doctor_id"] == "dr-a"
    assert len(d.sms.messages) == 1
    sms = d.sms.messages[0]
    assert sms.to == "+8613800000001" and sms.from_ == "+15550000000"
    assert sms.user_agent.startswith("twilio-python/"), "sent by the real Twilio SDK"
    assert "Zhang" in sms.body and "Bldg 3-501" in sms.body and "San" not in sms.body


MALFORMED = [
    ("btn-1", b"press!", "not JSON"),
    ("btn-1", b'{"v": 1, "seq": "seventeen", "ts": 1, "action": "press"}', "seq: Input should be"),
    ("btn-1", b'{"v": 1, "seq": 1, "ts": 1, "action": "explode"}', "action: Input should be"),
    ("btn-1", b'{"v": 1, "seq": 2, "ts": 1, "pad": "' + b"x" * 70_000 + b'"}', "exceeds"),
    ("stranger-9", b'{"v": 1, "seq": 1, "ts": 1, "action": "press"}', "unknown device"),
    ("btn-1", b'{"v": 7, "seq": 1, "ts": 1, "action": "press"}', "unsupported contract version"),
    (
        "pend-1",
        b'{"v": 1, "seq": 1, "t0": 1, "hz": 50, "acc": [[1, 2]]}',
        "acc.0: List should have",
    ),
]


def test_malformed_input_is_logged_dropped_and_others_still_served(deployment: Deployment) -> None:
    d = deployment
    for device, payload, _ in MALFORMED:
        channel = "imu" if device.startswith("pend") else "button"
        pub(d, device, channel, payload)
    for _, _, reason in MALFORMED:
        assert wait_for(lambda r=reason: r in d.hub.log_path.read_text(), 10), (
            reason,
            d.hub.log_tail(),
        )
    watcher = AckWatcher(d, "btn-2")
    pub(
        d,
        "btn-2",
        "button",
        json.dumps({"v": 1, "seq": 5, "ts": int(time.time() * 1000), "action": "press"}),
    )
    acks = watcher.collect("dispatched")
    watcher.close()
    assert acks and acks[-1]["state"] == "dispatched"
    assert d.hub.running
    assert [a["device_id"] for a in d.alarms()] == ["btn-2"], "no alarm from a malformed message"
