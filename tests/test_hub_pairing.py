"""The running hub and pairing: devices paired or removed on the bridge are known or
forgotten at once; during a self-test the covered devices' alarms upload as tests; the
uplink's device and self-test calls."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from carehub import api_contract as api
from carehub.mqtt_contract import (
    BridgeEvent,
    BridgeTopic,
    SelftestMode,
    Topics,
    encode,
)
from gateway.broker_auth import Listener
from gateway.broker_files import write_all
from gateway.hub_core import TEST_MARK, selftest_marks
from gateway.pairing import BrokerAccounts, PairedDevice
from gateway.uplink import Uplink, UplinkError
from tests.test_hub_shell import FakeUplink, button, make_hub

NOW = 1_764_000_000_000
TOPICS = Topics()


def mode(until: int, devices: list[str], active: bool = True) -> SelftestMode:
    return SelftestMode(v=1, active=active, until_ms=until, devices=devices)


def test_selftest_marks_only_covered_devices_until_the_deadline() -> None:
    assert selftest_marks(mode(NOW + 1, ["btn-1"]), "btn-1", NOW) == {TEST_MARK: True}
    assert selftest_marks(mode(NOW + 1, ["btn-1"]), "btn-2", NOW) == {}
    assert selftest_marks(mode(NOW, ["btn-1"]), "btn-1", NOW) == {}  # over
    assert selftest_marks(mode(NOW + 1, ["btn-1"], active=False), "btn-1", NOW) == {}
    assert selftest_marks(SelftestMode(v=1, active=True), "btn-1", NOW) == {}  # no deadline
    assert selftest_marks(None, "btn-1", NOW) == {}


def event(what: str, device_id: str, kind: str | None = "button") -> tuple[str, bytes]:
    body = BridgeEvent(v=1, event=what, ts=NOW, device_id=device_id, kind=kind)  # type: ignore[arg-type]
    return TOPICS.bridge(BridgeTopic.EVENT), encode(body)


async def test_bridge_events_teach_the_hub_its_devices_and_a_selftest_marks_alarms(
    tmp_path: Path,
) -> None:
    accounts = BrokerAccounts.new().with_device(PairedDevice("old-1", "button", "old-1", "$7$", 0))
    write_all(tmp_path / "broker", accounts, "carehub", Listener())
    hub, link = make_hub(tmp_path, FakeUplink(), hub_broker_dir=tmp_path / "broker")
    async with hub.opened():
        await hub.refresh_config()  # btn-1, btn-2, pend-1
        assert hub.is_known("old-1")  # from the accounts file
        assert not hub.is_known("btn-9")
        await hub.handle_message(*event("device_accepted", "btn-9"))
        assert hub.is_known("btn-9")
        # paired while the hub missed the event: found in the accounts file, not dropped
        later = accounts.with_device(PairedDevice("late-1", "button", "late-1", "$7$", 0))
        write_all(tmp_path / "broker", later, "carehub", Listener())
        await hub.handle_message(*button(hub, "late-1", 1))
        assert hub.is_known("late-1") and link.acks[-1][0] == "late-1"

        until = hub.clock.now_ms() + 60_000
        await hub.handle_message(
            TOPICS.bridge(BridgeTopic.SELFTEST), encode(mode(until, ["btn-9"]))
        )
        await hub.handle_message(*button(hub, "btn-9", 1))
        await hub.handle_message(*button(hub, "btn-1", 1))  # not in the self-test: real
        bodies = []
        while (entry := await hub.store.next_pending()) is not None:
            bodies.append(entry.body)
            await hub.store.mark_sent(entry.id, hub.clock.now_ms())
        assert sorted((b["device_id"], b["test"]) for b in bodies) == [  # devices in turn
            ("btn-1", False),
            ("btn-9", True),
            ("late-1", False),
        ]
        assert all(TEST_MARK not in b["details"] for b in bodies)

        await hub.handle_message(TOPICS.bridge(BridgeTopic.SELFTEST), b"")  # cleared
        assert hub.selftest is None
        await hub.handle_message(*event("device_removed", "btn-9", None))
        assert not hub.is_known("btn-9")
        await hub.handle_message(TOPICS.bridge(BridgeTopic.EVENT), b'{"v": 1, "event": 7}')
        assert hub.dropped == 1  # a bad bridge message is one log line, nothing else
        assert len(link.acks) == 3


def recording_uplink(status: int = 204) -> tuple[Uplink, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"detail": "x"} if status >= 400 else None)

    return Uplink("http://s.test", "tok", 1.0, transport=httpx.MockTransport(answer)), seen


async def test_uplink_registers_removes_and_reports() -> None:
    uplink, seen = recording_uplink()
    await uplink.register_device("btn-1", api.DeviceRegistration(kind=api.DeviceKind.BUTTON))
    assert await uplink.remove_device("btn-1") is True
    report = api.SelftestReport(
        report_id="r1", started_at_ms=1, finished_at_ms=2, passed=True, checks=[]
    )
    await uplink.selftest(report)
    assert [(r.method, r.url.path) for r in seen] == [
        ("PUT", f"{api.HUB_DEVICES_PATH}/btn-1"),
        ("DELETE", f"{api.HUB_DEVICES_PATH}/btn-1"),
        ("POST", api.SELFTESTS_PATH),
    ]
    assert json.loads(seen[0].content) == {"kind": "button", "hardware_id": ""}
    assert all(r.headers["authorization"] == "Bearer tok" for r in seen)
    with pytest.raises(UplinkError):
        await uplink.register_device("../admin", api.DeviceRegistration(kind="button"))  # type: ignore[arg-type]
    await uplink.aclose()


async def test_removing_a_device_the_server_does_not_know_is_done() -> None:
    uplink, _ = recording_uplink(404)
    assert await uplink.remove_device("btn-1") is False  # already gone: said so, not "removed"
    with pytest.raises(UplinkError):
        await uplink.selftest(
            api.SelftestReport(
                report_id="r1", started_at_ms=1, finished_at_ms=2, passed=True, checks=[]
            )
        )
    await uplink.aclose()


def test_the_hub_logs_in_with_its_broker_account(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from carehub.settings import HubSettings
    from gateway.device_link import hub_credentials

    s = HubSettings(hub_broker_dir=tmp_path / "none")
    assert hub_credentials(s) == (None, None)  # a development broker: anonymous
    write_all(tmp_path / "b", BrokerAccounts.new(hub_password="from-file"), "carehub", Listener())
    s = HubSettings(hub_broker_dir=tmp_path / "b")
    assert hub_credentials(s) == ("_hub", "from-file")
    s = HubSettings(
        hub_broker_dir=tmp_path / "b", mqtt_username="me", mqtt_password=SecretStr("explicit")
    )
    assert hub_credentials(s) == ("me", "explicit")
