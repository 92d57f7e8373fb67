"""The installer's self-test includes a test call when the hub is set up for calls: it
passes once the home's devices hear `talking` (the centre answered the test alarm's call)."""

from __future__ import annotations

from carehub.mqtt_contract import Ack, AckState
from gateway.selftest import TEST_CALL, SelftestCore

DEVICES = {"btn-1": "button"}


def test_a_hub_with_voice_needs_its_test_call_answered() -> None:
    core = SelftestCore(DEVICES, 20.0, 0, voice=True)
    assert any(TEST_CALL in line for line in core.missing())
    core.acked("btn-1", Ack(v=1, seq=None, alarm_id="a-1", state=AckState.RECEIVED))
    assert any(TEST_CALL in line for line in core.missing())
    core.acked("btn-9", Ack(v=1, seq=None, alarm_id="a-1", state=AckState.TALKING))
    assert any(TEST_CALL in line for line in core.missing())  # not a device of this home
    core.acked("btn-1", Ack(v=1, seq=None, alarm_id="a-1", state=AckState.TALKING))
    assert not any(TEST_CALL in line for line in core.missing())
    [check] = [c for c in core.report("r-1", 1).checks if c.name == TEST_CALL]
    assert check.passed and "a-1" in check.detail


def test_a_hub_without_voice_has_no_test_call() -> None:
    core = SelftestCore(DEVICES, 20.0, 0)
    assert all(c.name != TEST_CALL for c in core.report("r-1", 1).checks)
