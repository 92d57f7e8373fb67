"""Acceptance from any phone, end to end over real Mosquitto, a real server and hub, and the
real Twilio SDK aimed at the sandbox: a press, the doctor's SMS, the link opened and
accepted with httpx, the button told who is coming; the sandbox's signed callbacks land."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from harness.sms_sandbox import post_inbound
from tests.conftest import Deployment
from tests.mqtt_tools import AckWatcher, pub, wait_for

pytestmark = pytest.mark.integration

LINK = re.compile(r"(https?://\S+/r/\w+/[\w-]+)")


def test_a_doctor_accepts_from_the_link_and_the_button_names_them(deployment: Deployment) -> None:
    d = deployment
    watcher = AckWatcher(d, "btn-1")
    press = json.dumps({"v": 1, "seq": 5, "ts": int(time.time() * 1000), "action": "press"})
    pub(d, "btn-1", "button", press)
    assert wait_for(lambda: len(d.sms.messages) >= 1, 15), d.server.log_tail()
    sms = d.sms.messages[0]
    assert sms.to == "+8613800000001" and sms.user_agent.startswith("twilio-python/")
    # the callback URL names the message's notification (its callbacks may beat the send)
    assert re.fullmatch(rf"{d.base_url}/twilio/status\?n=[0-9a-f]{{32}}", sms.status_callback)
    match = LINK.search(sms.body)
    assert match is not None and match.group(1).startswith(d.base_url + "/r/"), sms.body

    with httpx.Client(timeout=10) as phone:
        page = phone.get(match.group(1))
        assert page.status_code == 200 and "Zhang" in page.text and "Accept" in page.text
        accepted = phone.post(match.group(1) + "/accept")
        assert accepted.status_code == 200 and "You accepted" in accepted.text

    acks = watcher.collect("accepted")
    watcher.close()
    assert acks[-1]["state"] == "accepted" and acks[-1]["responder"] == "Doctor A", acks
    assert all("responder" not in a for a in acks[:-1])

    # the sandbox posted queued, sent, delivered, signed; the server took all three
    assert wait_for(
        lambda: [c.status for c in d.sms.callbacks if c.sid == sms.sid][-1:] == ["delivered"], 15
    )
    assert [(c.status, c.http_status) for c in d.sms.callbacks if c.sid == sms.sid] == [
        ("queued", 204),
        ("sent", 204),
        ("delivered", 204),
    ]
    alarm = d.alarm(d.alarms()[0]["id"])
    assert alarm["state"] == "accepted"
    step = next(n for n in alarm["notifications"] if n["doctor_id"] == "dr-a")
    assert step["status"] == "delivered" and step["response"] == "accepted"


def test_a_signed_reply_reaches_the_webhook_and_a_forged_one_does_not(
    deployment: Deployment,
) -> None:
    d = deployment
    url = f"{d.base_url}/twilio/sms"
    assert post_inbound(url, "not-the-token", "+8613800000001", "+15550000000", "hi") == 403
    assert post_inbound(url, "test-secret", "+8613800000001", "+15550000000", "hi") == 200
