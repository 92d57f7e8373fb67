"""The hub-facing API over SQLite and PostgreSQL: auth, idempotency, dispatch, long-poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carehub.api_contract import (
    ALARM_REPORTS_PATH,
    ALARM_UPDATES_PATH,
    ALARMS_PATH,
    FAULTS_PATH,
    HUB_CONFIG_PATH,
)
from carehub.settings import ServerSettings
from server.app import create_app
from server.main import prepare_database
from server.notifier import ConsoleNotifier
from tests.conftest import DIRECTORY

TOKEN = "hub-token-for-tests-0123456789"
ADMIN = "admin-token-for-tests"


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, ConsoleNotifier]]:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN))
    settings = ServerSettings(database_url=database_url, admin_token=ADMIN)  # type: ignore[arg-type]
    asyncio.run(prepare_database(settings, directory))
    notifier = ConsoleNotifier()
    with TestClient(create_app(settings, notifier=notifier)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, notifier


def upload(alarm_id: str = "a-1", **extra: object) -> dict:
    return {
        "alarm_id": alarm_id,
        "device_id": "btn-1",
        "kind": "button",
        "seq": 3,
        "raised_at_ms": int(time.time() * 1000),
        **extra,
    }


def server_id(client: TestClient, hub_alarm_id: str) -> str:
    """The server's id of this hub's alarm (the admin API names alarms by it)."""
    alarms = client.get("/api/v1/admin/alarms", headers={"Authorization": f"Bearer {ADMIN}"})
    return next(a["id"] for a in alarms.json() if a["hub_alarm_id"] == hub_alarm_id)


def wait_state(client: TestClient, alarm_id: str, state: str) -> dict:
    """Wait until the hub's alarm `alarm_id` is in `state`; its admin view."""
    path = f"/api/v1/admin/alarms/{server_id(client, alarm_id)}"
    for _ in range(100):
        alarm = client.get(path, headers={"Authorization": f"Bearer {ADMIN}"}).json()
        if alarm["state"] == state:
            return alarm
        time.sleep(0.05)
    raise AssertionError(alarm)


def test_unknown_or_missing_token_is_refused(api: tuple[TestClient, ConsoleNotifier]) -> None:
    client, _ = api
    assert (
        client.post(
            ALARMS_PATH, json=upload(), headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    r = client.post(ALARMS_PATH, json=upload(), headers={"Authorization": ""})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]


def test_upload_is_idempotent_and_dispatches_once(api: tuple[TestClient, ConsoleNotifier]) -> None:
    client, notifier = api
    first = client.post(ALARMS_PATH, json=upload())
    assert first.status_code == 201 and first.json() == {
        "alarm_id": "a-1",
        "state": "received",
        "created": True,
    }
    alarm = wait_state(client, "a-1", "dispatched")
    again = client.post(ALARMS_PATH, json=upload())
    assert (
        again.status_code == 200
        and again.json()["created"] is False
        and again.json()["state"] == "dispatched"
    )
    assert len(notifier.sent) == 1 and notifier.sent[0][0] == "+8613800000001"
    assert [e["kind"] for e in alarm["events"]] == ["state", "step", "sms_sent", "state"]
    assert alarm["doctor_id"] == "dr-a"


def test_bad_upload_gets_a_clear_422(api: tuple[TestClient, ConsoleNotifier]) -> None:
    client, _ = api
    r = client.post(ALARMS_PATH, json=upload(kind="earthquake"))
    assert r.status_code == 422 and "kind" in str(r.json()["detail"])
    r = client.post(ALARMS_PATH, json={**upload(), "priority": "high"})  # requests stay strict
    assert r.status_code == 422 and "priority" in str(r.json()["detail"])


def test_updates_long_poll_returns_state_changes_in_order(
    api: tuple[TestClient, ConsoleNotifier],
) -> None:
    client, _ = api
    client.post(ALARMS_PATH, json=upload("a-2"))
    wait_state(client, "a-2", "dispatched")
    batch = client.get(ALARM_UPDATES_PATH, params={"after": 0}).json()
    assert [(u["alarm_id"], u["state"]) for u in batch["updates"]] == [
        ("a-2", "received"),
        ("a-2", "dispatched"),
    ]
    store = client.app.state.runtime.store  # type: ignore[attr-defined]
    reads: list[int] = []
    read = store.updates_for_hub

    async def counted(hub_id: str, after: int, limit: int = 200) -> object:
        reads.append(after)
        return await read(hub_id, after, limit)

    store.updates_for_hub = counted
    started = time.monotonic()
    empty = client.get(ALARM_UPDATES_PATH, params={"after": batch["cursor"], "wait_s": 1.5}).json()
    assert empty["updates"] == [] and empty["cursor"] == batch["cursor"]
    assert time.monotonic() - started >= 1.4
    # nothing changed: one read when the poll came in, none when it woke after a second
    assert reads == [batch["cursor"]]


def test_cancel_report_is_idempotent_and_final(api: tuple[TestClient, ConsoleNotifier]) -> None:
    client, _ = api
    client.post(ALARMS_PATH, json=upload("a-3"))
    wait_state(client, "a-3", "dispatched")
    report = {
        "report_id": "r-1",
        "alarm_id": "a-3",
        "state": "cancelled",
        "at_ms": 1,
        "reason": "mistake",
    }
    assert client.post(ALARM_REPORTS_PATH, json=report).json()["state"] == "cancelled"
    assert client.post(ALARM_REPORTS_PATH, json=report).json()["state"] == "cancelled"
    events = wait_state(client, "a-3", "cancelled")["events"]
    assert sum(1 for e in events if e["state"] == "cancelled") == 1
    missing = client.post(
        ALARM_REPORTS_PATH, json={**report, "report_id": "r-2", "alarm_id": "nope"}
    )
    assert missing.status_code == 404


def test_hub_config_names_devices_not_people(api: tuple[TestClient, ConsoleNotifier]) -> None:
    client, _ = api
    config = client.get(HUB_CONFIG_PATH).json()
    assert config["hub_id"] == "hub-1" and {d["device_id"] for d in config["devices"]} >= {
        "btn-1",
        "pend-1",
    }
    assert "Zhang" not in str(config)


def test_fault_reports_are_stored_once(api: tuple[TestClient, ConsoleNotifier]) -> None:
    client, _ = api
    fault = {
        "report_id": "f-1",
        "device_id": "wear-1",
        "fault": "battery_low",
        "active": True,
        "at_ms": 5,
    }
    assert client.post(FAULTS_PATH, json=fault).status_code == 204
    assert client.post(FAULTS_PATH, json=fault).status_code == 204
    faults = client.get("/api/v1/admin/faults", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert len(faults) == 1 and faults[0]["fault"] == "battery_low"


def test_a_fault_repeated_with_a_new_report_id_is_not_a_new_fault(
    api: tuple[TestClient, ConsoleNotifier],
) -> None:
    client, _ = api
    base = {"device_id": "wear-1", "fault": "device_offline", "detail": "silent"}
    for i, (active, at) in enumerate([(True, 10), (True, 20), (False, 30), (True, 25)]):
        body = {**base, "report_id": f"r-{i}", "active": active, "at_ms": at}
        assert client.post(FAULTS_PATH, json=body).status_code == 204
    faults = client.get("/api/v1/admin/faults", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    # raised once, cleared once; the repeat (hub restart) and the stale report are ignored
    assert [(f["active"], f["since_ms"]) for f in faults] == [(False, 30), (True, 10)]
