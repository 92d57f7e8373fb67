"""Store before PUBACK: a press published once at QoS 1 by a device that trusts MQTT (no
firmware retries) survives a SIGKILL of the hub while it is being handled — the broker
redelivers it to the restarted hub — and becomes exactly one alarm on the server."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Deployment
from tests.mqtt_tools import pub

pytestmark = pytest.mark.integration


@pytest.fixture
def server_env() -> dict[str, str]:
    """Each press is followed to its own alarm here; by default a press while the button's
    alarm is open joins it as a repeat (tested in test_alarm_repeats)."""
    return {"CAREHUB_MERGE_REPEATS": "false"}


HANDLING = "handling carehub/btn-1/button"
CONNECTED = "connected to broker"


@pytest.fixture
def hub_env() -> dict[str, str]:
    # slow handling makes the window between arrival and commit wide enough to SIGKILL into
    return {"CAREHUB_DEBUG_HANDLER_DELAY_S": "1.0", "CAREHUB_MERGE_REPEATS": "false"}


def log_count(d: Deployment, line: str) -> int:
    return (d.tmp / "hub.log").read_text(errors="replace").count(line)


def wait_for_count(d: Deployment, line: str, at_least: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while log_count(d, line) < at_least:
        assert d.hub.running, d.hub.log_tail()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{line!r} not seen {at_least} times\n{d.hub.log_tail()}")
        time.sleep(0.02)


def button_alarms(d: Deployment) -> list[tuple[str, int]]:
    return [(a["device_id"], a["seq"]) for a in d.alarms(limit=1000) if a["kind"] == "button"]


def test_presses_published_once_survive_a_hub_killed_while_handling(
    deployment: Deployment,
) -> None:
    d = deployment
    seqs = [101, 102, 103, 104]
    for i, seq in enumerate(seqs):
        handling, connected = log_count(d, HANDLING), log_count(d, CONNECTED)
        press = {"v": 1, "seq": seq, "ts": int(time.time() * 1000), "action": "press"}
        pub(d, "btn-1", "button", json.dumps(press))  # once: no firmware retry behind it
        wait_for_count(d, HANDLING, handling + 1)  # the hub has it, not yet committed
        d.hub.kill()
        d.hub.start()
        wait_for_count(d, CONNECTED, connected + 1)
        deadline = time.monotonic() + 30
        while len(button_alarms(d)) < i + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(button_alarms(d)) == i + 1, f"press {seq} lost\n{d.hub.log_tail()}"
    assert sorted(button_alarms(d)) == [("btn-1", s) for s in seqs], "each exactly once"
