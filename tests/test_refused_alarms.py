"""No alarm ends in silence, on the server (SQLite and PostgreSQL): an authenticated hub's
alarm from a device its household does not own is stored, flagged and dispatched; a device
id belongs to one household (another home's hub is refused with 409, an admin releases it);
a failed self-test is recorded like a passed one; a moved hub still calling with its revoked
credential shows on the health board, and the answer tells a caller nothing more."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.admin_contract import ADMIN_PREFIX
from carehub.api_contract import (
    ALARMS_PATH,
    ENROLL_PATH,
    HUB_CONFIG_PATH,
    HUB_DEVICES_PATH,
    SELFTESTS_PATH,
    DeviceFlag,
)
from carehub.settings import ServerSettings
from server.app import create_app
from server.console.alarm_detail import alarm_view
from server.console.health_board import health_board
from server.console.live_queue import open_alarms
from server.db import make_engine
from server.device_homes import Claim, alarm_flag, claim
from server.main import prepare_database
from server.notifier import ConsoleNotifier
from server.store import REFUSED_QUIET_MS, ServerStore
from tests.conftest import DIRECTORY

T = TypeVar("T")
TOKEN = "hub-token-for-refusal-tests-0123456"
ADMIN = {"Authorization": "Bearer admin-token-for-refusal-tests"}
SECOND_ELDER = """
[[elders]]
id = "elder-2"
team = "team-a"
name = "Li Si"
short_address = "Bldg 9-101"
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, ConsoleNotifier]]:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN) + SECOND_ELDER)
    settings = ServerSettings(
        database_url=database_url,  # type: ignore[arg-type]
        admin_token="admin-token-for-refusal-tests",  # type: ignore[arg-type]
        enroll_max_attempts_per_client=20,
    )
    asyncio.run(prepare_database(settings, directory))
    notifier = ConsoleNotifier()
    with TestClient(create_app(settings, notifier=notifier)) as client:
        yield client, notifier


def second_home_hub(client: TestClient) -> dict[str, str]:
    """Household home-2 (elder-2) with an enrolled hub: its grant."""
    r = client.post(f"{ADMIN_PREFIX}/households", json={"id": "home-2"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    r = client.put(f"{ADMIN_PREFIX}/households/home-2/elders/elder-2", headers=ADMIN)
    assert r.status_code == 200, r.text
    return enroll(client, "home-2")


def enroll(client: TestClient, household: str) -> dict[str, str]:
    code = client.post(f"{ADMIN_PREFIX}/households/{household}/enrollment-codes", headers=ADMIN)
    assert code.status_code == 201, code.text
    r = client.post(
        ENROLL_PATH, json={"code": code.json()["code"], "hardware_id": "pi-7", "version": "1"}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def pair(client: TestClient, device_id: str, auth: dict[str, str]) -> int:
    return client.put(
        f"{HUB_DEVICES_PATH}/{device_id}", json={"kind": "button"}, headers=auth
    ).status_code


def press(client: TestClient, alarm_id: str, device_id: str, auth: dict[str, str]) -> int:
    body = {
        "alarm_id": alarm_id,
        "device_id": device_id,
        "kind": "button",
        "seq": 1,
        "raised_at_ms": int(time.time() * 1000),
    }
    return client.post(ALARMS_PATH, json=body, headers=auth).status_code


def admin_alarm(client: TestClient, hub_alarm_id: str, state: str) -> dict:
    """The admin view of the hub's alarm once it reached `state` (polled, 10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        listed = client.get(f"{ADMIN_PREFIX}/alarms", headers=ADMIN).json()
        found = [a for a in listed if a["hub_alarm_id"] == hub_alarm_id]
        if found:
            alarm = client.get(f"{ADMIN_PREFIX}/alarms/{found[0]['id']}", headers=ADMIN).json()
            if alarm["state"] == state:
                return dict(alarm)
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def on_database(client: TestClient, read: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """`read` run on an engine of its own (the app's lives in the test client's loop)."""
    url = client.app.state.runtime.settings.database_url  # type: ignore[attr-defined]

    async def run() -> T:
        engine = make_engine(str(url))
        try:
            return await read(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


# ------------------------------------------------------------ the pure decisions


def test_a_device_belongs_to_one_household() -> None:
    assert alarm_flag(None, "home-1") is DeviceFlag.UNKNOWN
    assert alarm_flag("home-2", "home-1") is DeviceFlag.FOREIGN
    assert alarm_flag("home-1", "home-1") is None
    assert claim(None, None, "hub-a", "home-1") is Claim.NEW
    assert claim("home-1", "hub-a", "hub-a", "home-1") is Claim.SAME
    assert claim("home-1", "hub-old", "hub-a", "home-1") is Claim.MOVED  # re-enrolled
    assert claim("home-1", None, "hub-a", "home-1") is Claim.NEW  # unpaired by a move
    assert claim("home-2", None, "hub-a", "home-1") is Claim.REFUSED
    assert claim("home-2", "hub-b", "hub-a", "home-1") is Claim.REFUSED


# ------------------------------------------------------------ the API


def test_an_alarm_from_a_device_not_the_homes_is_stored_flagged_and_dispatched(
    api: tuple[TestClient, ConsoleNotifier],
) -> None:
    client, notifier = api
    home_2 = bearer(second_home_hub(client)["token"])
    assert pair(client, "btn-9", home_2) == 201
    hub_1 = bearer(TOKEN)

    assert press(client, "a-unknown", "btn-never-paired", hub_1) == 201
    unknown = admin_alarm(client, "a-unknown", "dispatched")
    assert unknown["device_flag"] == "device_unknown" and unknown["elder_id"] == "elder-1"
    assert [e["kind"] for e in unknown["events"]][:2] == ["state", "device_flag"]
    assert press(client, "a-unknown", "btn-never-paired", hub_1) == 200  # a retry: no second

    assert press(client, "a-foreign", "btn-9", hub_1) == 201  # home-2's button, hub-1's home
    foreign = admin_alarm(client, "a-foreign", "dispatched")
    assert foreign["device_flag"] == "device_foreign" and foreign["elder_id"] == "elder-1"
    assert foreign["doctor_id"] == "dr-a"
    assert [to for to, _ in notifier.sent] == ["+8613800000001", "+8613800000001"]

    assert press(client, "a-own", "btn-9", home_2) == 201  # its own home: not flagged
    assert admin_alarm(client, "a-own", "dispatched")["device_flag"] is None
    # the console shows the flag in the queue and on the alarm's page
    queue = on_database(client, open_alarms)
    assert {r.alarm_id: r.device_flag for r in queue} == {
        unknown["id"]: "device_unknown",
        foreign["id"]: "device_foreign",
        admin_alarm(client, "a-own", "dispatched")["id"]: None,
    }
    view = on_database(client, lambda e: alarm_view(e, foreign["id"]))
    assert view is not None and view.device_flag == "device_foreign"


def test_another_homes_device_is_refused_until_an_admin_releases_it(
    api: tuple[TestClient, ConsoleNotifier],
) -> None:
    client, _ = api
    grant = second_home_hub(client)
    home_2 = bearer(grant["token"])
    assert pair(client, "btn-7", home_2) == 201
    hub_1 = bearer(TOKEN)
    r = client.put(f"{HUB_DEVICES_PATH}/btn-7", json={"kind": "button"}, headers=hub_1)
    assert r.status_code == 409 and "another household" in r.json()["detail"]
    assert "release-device" in r.json()["detail"]
    # the hub moved away: its devices are unpaired but stay home-2's
    moved = client.put(
        f"{ADMIN_PREFIX}/hubs/{grant['hub_id']}/household",
        json={"household_id": "elder-1"},
        headers=ADMIN,
    )
    assert moved.status_code == 200, moved.text
    assert pair(client, "btn-7", hub_1) == 409
    # home-2's next hub takes its own device back
    again = bearer(enroll(client, "home-2")["token"])
    assert pair(client, "btn-7", again) == 201
    assert pair(client, "btn-7", hub_1) == 409
    # an admin frees it; then hub-1 may pair it
    freed = client.delete(f"{ADMIN_PREFIX}/devices/btn-7", headers=ADMIN)
    assert freed.status_code == 200 and freed.json() == {
        "device_id": "btn-7",
        "household_id": "home-2",
    }
    assert client.delete(f"{ADMIN_PREFIX}/devices/btn-7", headers=ADMIN).status_code == 404
    assert client.delete(f"{ADMIN_PREFIX}/devices/btn-7").status_code == 401
    assert pair(client, "btn-7", hub_1) == 201


def test_a_re_enrolled_hub_keeps_its_homes_devices(
    api: tuple[TestClient, ConsoleNotifier],
) -> None:
    client, _ = api
    first = bearer(second_home_hub(client)["token"])
    assert pair(client, "btn-5", first) == 201
    second = enroll(client, "home-2")  # the same home's hub, enrolled again
    auth = bearer(second["token"])
    assert press(client, "a-1", "btn-5", auth) == 201  # before pairing again: not flagged
    assert admin_alarm(client, "a-1", "dispatched")["device_flag"] is None
    assert pair(client, "btn-5", auth) == 201  # moves to the new hub
    config = client.get(HUB_CONFIG_PATH, headers=auth).json()
    assert [d["device_id"] for d in config["devices"]] == ["btn-5"]


def test_a_failed_selftest_is_recorded_like_a_passed_one(
    api: tuple[TestClient, ConsoleNotifier],
) -> None:
    client, _ = api
    auth = bearer(second_home_hub(client)["token"])
    assert pair(client, "btn-3", auth) == 201
    now = int(time.time() * 1000)
    report = {
        "report_id": "st-1",
        "started_at_ms": now - 60_000,
        "finished_at_ms": now,
        "passed": True,
        "checks": [
            {"name": "button pressed", "device_id": "btn-3", "passed": True},
            {"name": "button pressed", "device_id": "btn-1", "passed": True},  # hub-1's
        ],
    }
    assert client.post(SELFTESTS_PATH, json=report, headers=auth).status_code == 204
    homes = {h["id"]: h for h in client.get(f"{ADMIN_PREFIX}/households", headers=ADMIN).json()}
    last = homes["home-2"]["last_selftest"]
    assert last["report_id"] == "st-1" and last["passed"] is False
    assert last["failed_checks"] == ["button pressed"]


def test_a_moved_hub_still_calling_is_on_the_health_board(
    api: tuple[TestClient, ConsoleNotifier],
) -> None:
    client, _ = api
    grant = second_home_hub(client)
    auth = bearer(grant["token"])
    assert client.get(HUB_CONFIG_PATH, headers=auth).status_code == 200
    moved = client.put(
        f"{ADMIN_PREFIX}/hubs/{grant['hub_id']}/household",
        json={"household_id": "elder-1"},
        headers=ADMIN,
    )
    assert moved.status_code == 200
    stranger = client.post(ALARMS_PATH, json={}, headers=bearer("a-token-nobody-ever-had-00"))
    refused = client.post(ALARMS_PATH, json={}, headers=auth)
    assert refused.status_code == stranger.status_code == 401
    assert refused.json() == stranger.json()  # the answer tells nothing more
    for _ in range(3):
        assert press(client, "a-1", "btn-1", auth) == 401
    board = on_database(client, health_board)
    assert [p.subject for p in board.faults["hub_refused"]] == [grant["hub_id"]]  # a hub's own
    assert all(not f for k, f in board.faults.items() if k != "hub_refused")
    faults = client.get(f"{ADMIN_PREFIX}/faults", headers=ADMIN).json()
    assert [(f["hub_id"], f["fault"], f["active"]) for f in faults] == [
        (grant["hub_id"], "hub_refused", True)
    ]
    # quiet for 10 min (re-enrolled, switched off): the fault clears
    now = int(time.time() * 1000)
    assert on_database(client, lambda e: ServerStore(e).clear_quiet_refused(now)) == []
    later = now + REFUSED_QUIET_MS + 60_000
    cleared = on_database(client, lambda e: ServerStore(e).clear_quiet_refused(later))
    assert cleared == [grant["hub_id"]]
    assert on_database(client, health_board).faults["hub_refused"] == []
