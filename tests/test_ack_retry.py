"""A state ack the broker could not take is sent again: the dispatcher's `accepted` reaches
the elder's button although the hub's broker was away the moment the server said so (real
Mosquitto restarted on the same port, real server and hub)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import httpx
import pytest

from tests.conftest import Deployment
from tests.mqtt_tools import pub, wait_for

pytestmark = pytest.mark.integration

LINK = re.compile(r"(https?://\S+/r/\w+/[\w-]+)")


class DeviceAcks:
    """The button's ack topic, as a device keeps it: a persistent session (clean session
    off, fixed client id) that reconnects after the broker restarts."""

    def __init__(self, d: Deployment) -> None:
        port = str(d.broker.port)
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-c", "-i", "btn-1-dev"]
            + ["-t", "carehub/btn-1/ack"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.states: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.states.append(json.loads(line)["state"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def test_accepted_reaches_the_button_after_the_broker_was_away(deployment: Deployment) -> None:
    d = deployment
    device = DeviceAcks(d)
    try:
        time.sleep(0.3)  # let it subscribe (its session then outlives the broker restart)
        press = {"v": 1, "seq": 9, "ts": int(time.time() * 1000), "action": "press"}
        pub(d, "btn-1", "button", json.dumps(press))
        assert wait_for(lambda: "received" in device.states, 15), device.states
        assert wait_for(lambda: len(d.sms.messages) >= 1, 15), d.server.log_tail()
        match = LINK.search(d.sms.messages[0].body)
        assert match is not None

        d.broker.stop()
        with httpx.Client(timeout=10) as phone:
            assert phone.post(match.group(1) + "/accept").status_code == 200
        assert wait_for(lambda: "is now accepted" in d.hub.log_tail(200), 30), d.hub.log_tail()
        d.broker.start()

        assert wait_for(lambda: "accepted" in device.states, 30), (
            f"the button never heard 'accepted': {device.states}\n{d.hub.log_tail()}"
        )
    finally:
        device.close()
