"""Hostile input at the server's edge, on SQLite and PostgreSQL: every request that breaks the
contract gets a 4xx with a reason (never a 500 a hub would retry forever), and a hub's token
acts only on that hub's own devices, alarms and reports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from carehub.api_contract import (
    ALARM_REPORTS_PATH,
    ALARM_UPDATES_PATH,
    ALARMS_PATH,
    FALL_WINDOW_MAX_SAMPLES,
    FAULTS_PATH,
    HUB_CONFIG_PATH,
    HUB_HEARTBEAT_PATH,
    MAX_DETAILS_DEPTH,
    AlarmUpload,
)
from carehub.settings import ServerSettings
from server.app import create_app
from server.main import prepare_database
from server.notifier import ConsoleNotifier
from tests.conftest import DIRECTORY

TOKEN = "hub-token-for-tests-0123456789"
TOKEN_2 = "second-hub-token-0123456789"
ADMIN = "admin-token-for-tests"
SECOND_HUB = f"""
[[elders]]
id = "elder-2"
team = "team-a"
name = "Li Si"

[[hubs]]
id = "hub-2"
elder = "elder-2"
token = "{TOKEN_2}"

[[devices]]
id = "btn-9"
hub = "hub-2"
kind = "button"
"""
TOO_BIG = 2**64


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """Hub 1 (devices btn-1, btn-2, pend-1, wear-1) and hub 2 (btn-9); hub 1's token."""
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN) + SECOND_HUB)
    settings = ServerSettings(database_url=database_url, admin_token=ADMIN)  # type: ignore[arg-type]
    asyncio.run(prepare_database(settings, directory))
    with TestClient(create_app(settings, notifier=ConsoleNotifier())) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


HUB_2 = {"Authorization": f"Bearer {TOKEN_2}"}
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def alarm(alarm_id: str = "a-1", device_id: str = "btn-1", **extra: Any) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "device_id": device_id,
        "kind": "button",
        "seq": 1,
        "raised_at_ms": 1_700_000_000_000,
        **extra,
    }


def report(alarm_id: str = "a-1", report_id: str = "r-1", **extra: Any) -> dict[str, Any]:
    return {"report_id": report_id, "alarm_id": alarm_id, "state": "cancelled", "at_ms": 1, **extra}


def fault(report_id: str = "f-1", device_id: str = "btn-1", **extra: Any) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "device_id": device_id,
        "fault": "battery_low",
        "active": True,
        "at_ms": 1,
        **extra,
    }


def heartbeat(**extra: Any) -> dict[str, Any]:
    return {"uptime_s": 1.0, "queue_depth": 0, "devices_online": 1, "version": "1", **extra}


def refused(response: Any, field: str) -> str:
    """The answer is a 422 Problem whose one-line detail names `field`."""
    assert response.status_code == 422, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and field in detail, detail
    return detail


def raw_post(client: TestClient, path: str, text: str, **kw: Any) -> Any:
    return client.post(path, content=text, headers={"Content-Type": "application/json", **kw})


# ------------------------------------------------------------------ integers beyond 64 bits


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (ALARMS_PATH, alarm(raised_at_ms=TOO_BIG), "raised_at_ms"),
        (ALARMS_PATH, alarm(seq=TOO_BIG), "seq"),
        (ALARMS_PATH, alarm(event_ts_ms=TOO_BIG), "event_ts_ms"),
        (ALARM_REPORTS_PATH, report(at_ms=TOO_BIG), "at_ms"),
        (FAULTS_PATH, fault(at_ms=TOO_BIG), "at_ms"),
        (HUB_HEARTBEAT_PATH, heartbeat(queue_depth=TOO_BIG), "queue_depth"),
    ],
)
def test_integers_beyond_64_bits_in_a_body_get_422(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    refused(client.post(path, json=body), field)


def test_query_integers_are_bounded_both_ways(client: TestClient) -> None:
    refused(client.get(ALARM_UPDATES_PATH, params={"after": TOO_BIG}), "after")
    refused(client.get(ALARM_UPDATES_PATH, params={"after": -2}), "after")
    for path in ("/api/v1/admin/alarms", "/api/v1/admin/faults"):
        for limit in (TOO_BIG, -1, 0, 1001):
            refused(client.get(path, params={"limit": limit}, headers=AS_ADMIN), "limit")
        assert client.get(path, params={"limit": 1000}, headers=AS_ADMIN).status_code == 200


def test_a_single_valued_query_parameter_given_twice_gets_422(client: TestClient) -> None:
    """`limit=5&limit=2` would silently mean the last value (found by schemathesis)."""
    twice = client.get("/api/v1/admin/alarms?limit=5&limit=2", headers=AS_ADMIN)
    assert twice.status_code == 422
    assert twice.json()["detail"] == "query parameter(s) given more than once: limit"
    updates = client.get(f"{ALARM_UPDATES_PATH}?after=1&after=2")
    assert updates.status_code == 422 and "after" in updates.json()["detail"]
    assert client.get("/api/v1/admin/alarms?limit=2", headers=AS_ADMIN).status_code == 200


def test_a_refused_alarm_blocks_nothing_behind_it(client: TestClient) -> None:
    refused(client.post(ALARMS_PATH, json=alarm("a-big", raised_at_ms=TOO_BIG)), "raised_at_ms")
    assert client.post(ALARMS_PATH, json=alarm("a-next")).status_code == 201


# ------------------------------------------------------------------ NUL, NaN, Infinity, depth


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (ALARMS_PATH, alarm("a\x00"), "alarm_id"),
        (ALARMS_PATH, alarm(device_id="btn-1\x00"), "device_id"),
        (ALARM_REPORTS_PATH, report(reason="oops\x00"), "reason"),
        (FAULTS_PATH, fault(detail="x\x00y"), "detail"),
        (HUB_HEARTBEAT_PATH, heartbeat(version="1.0\x00"), "version"),
        (ALARMS_PATH, alarm(details={"note": "a\x00b"}), "details"),
        (ALARMS_PATH, alarm(details={"a\x00": 1}), "details"),
        (ALARMS_PATH, alarm(details={"note": ["\ud800"]}), "details"),
        (ALARM_REPORTS_PATH, report(reason="\udfff"), "reason"),
    ],
)
def test_nul_or_lone_surrogates_in_text_get_422(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    refused(raw_post(client, path, json.dumps(body)), field)  # \u escapes: any str


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_anywhere_get_422(client: TestClient, number: str) -> None:
    nested = json.dumps(alarm(details={"window": {"acc": [[0.0, 1.0, "X"]]}})).replace(
        '"X"', number
    )
    refused(raw_post(client, ALARMS_PATH, nested), "details")
    refused(
        raw_post(
            client,
            ALARMS_PATH,
            json.dumps(alarm("a-2", details={"spo2": "X"})).replace('"X"', number),
        ),
        "details",
    )
    refused(
        raw_post(
            client, HUB_HEARTBEAT_PATH, json.dumps(heartbeat(uptime_s="X")).replace('"X"', number)
        ),
        "uptime_s",
    )


def test_details_nested_too_deep_get_422(client: TestClient) -> None:
    deep: Any = 1
    for _ in range(MAX_DETAILS_DEPTH + 1):
        deep = [deep]
    refused(client.post(ALARMS_PATH, json=alarm(details={"x": deep})), "details")
    ok: Any = 1
    for _ in range(MAX_DETAILS_DEPTH - 1):
        ok = [ok]
    assert client.post(ALARMS_PATH, json=alarm(details={"x": ok})).status_code == 201


def window(hz: Any = 50.0, n: int = 350, **extra: Any) -> dict[str, Any]:
    return {"hz": hz, "t0_ms": 1_700_000_000_000, "acc": [[0.0, 0.0, 1.0]] * n, **extra}


@pytest.mark.parametrize(
    ("crafted", "field"),
    [
        (window(hz=1e-300), "window.hz"),  # once froze the console's alarm page
        (window(hz=0), "window.hz"),
        (window(hz=4.9), "window.hz"),
        (window(hz=1001), "window.hz"),
        (window(hz=True), "window.hz"),
        (window(n=FALL_WINDOW_MAX_SAMPLES + 1, hz=1000), "window.acc"),
        (window(hz=5, n=151), "window"),  # 30.2 s
        (window(t0_ms=-1), "window.t0_ms"),
        ({"hz": 50, "t0_ms": 1, "acc": [[0, 0, 65.0]]}, "window.acc"),
        ({"hz": 50, "t0_ms": 1, "acc": [[0, 1]]}, "window.acc"),
        ({"hz": 50, "t0_ms": 1}, "window.acc"),
        ([1, 2, 3], "window"),
    ],
)
def test_a_fall_window_is_bounded_as_the_mqtt_contract_bounds_imu_data(
    client: TestClient, crafted: Any, field: str
) -> None:
    body = alarm(device_id="pend-1", kind="fall", details={"window": crafted})
    detail = refused(client.post(ALARMS_PATH, json=body), field)
    assert "body.details" in detail
    for fine in (window(), window(hz=5, n=150), None):
        ok = alarm(f"ok-{len(str(fine))}", "pend-1", kind="fall", details={"window": fine})
        assert client.post(ALARMS_PATH, json=ok).status_code == 201


def test_nul_in_an_admin_path_gets_422(client: TestClient) -> None:
    refused(client.get("/api/v1/admin/alarms/a%00b", headers=AS_ADMIN), "alarm_id")


def test_a_body_that_is_not_json_gets_422_with_a_reason(client: TestClient) -> None:
    refused(raw_post(client, ALARMS_PATH, "{not json"), "body")


# ------------------------------------------------------------------ ownership


def test_a_hub_cannot_raise_alarms_or_faults_for_devices_it_does_not_serve(
    client: TestClient,
) -> None:
    """A fault is refused; an alarm is never lost: it is the hub's own household's, flagged
    (docs/reliability.md "No alarm ends in silence"), and the device's home hears nothing."""
    for n, device in enumerate(("btn-9", "ghost-1")):  # hub 2's device; no one's device
        assert client.post(ALARMS_PATH, json=alarm(f"a-{n}", device)).status_code == 201
        detail = refused(client.post(FAULTS_PATH, json=fault(device_id=device)), device)
        assert f"device {device} is not paired with this hub" in detail
    stored = client.get("/api/v1/admin/alarms", headers=AS_ADMIN).json()
    assert sorted((a["hub_id"], a["device_id"], a["device_flag"]) for a in stored) == [
        ("hub-1", "btn-9", "device_foreign"),
        ("hub-1", "ghost-1", "device_unknown"),
    ]
    assert (
        client.get(ALARM_UPDATES_PATH, params={"after": 0}, headers=HUB_2).json()["updates"] == []
    )
    assert client.get("/api/v1/admin/faults", headers=AS_ADMIN).json() == []


def test_an_alarm_id_used_by_another_hub_is_a_new_alarm_and_leaks_nothing(
    client: TestClient,
) -> None:
    first = client.post(ALARMS_PATH, json=alarm("same-id"))
    assert first.status_code == 201
    assert client.post(ALARM_REPORTS_PATH, json=report("same-id", "r-1")).json() == {
        "alarm_id": "same-id",
        "state": "cancelled",
    }
    second = client.post(ALARMS_PATH, json=alarm("same-id", "btn-9"), headers=HUB_2)
    assert second.status_code == 201
    assert second.json() == {"alarm_id": "same-id", "state": "received", "created": True}
    stored = client.get("/api/v1/admin/alarms", headers=AS_ADMIN).json()
    assert sorted((a["hub_id"], a["hub_alarm_id"], a["device_id"]) for a in stored) == [
        ("hub-1", "same-id", "btn-1"),
        ("hub-2", "same-id", "btn-9"),
    ]
    assert len({a["id"] for a in stored}) == 2
    # each hub's feed speaks of its own alarm only, in its own ids
    feed_2 = client.get(ALARM_UPDATES_PATH, params={"after": 0}, headers=HUB_2).json()
    assert {u["state"] for u in feed_2["updates"]} <= {"received", "dispatched"}
    assert {u["alarm_id"] for u in feed_2["updates"]} == {"same-id"}
    # a report id already used by hub 1 still applies to hub 2's alarm
    cancel_2 = client.post(ALARM_REPORTS_PATH, json=report("same-id", "r-1"), headers=HUB_2)
    assert cancel_2.json()["state"] == "cancelled"


def test_another_hubs_alarm_is_answered_like_a_missing_one(client: TestClient) -> None:
    assert client.post(ALARMS_PATH, json=alarm("only-hub-2", "btn-9"), headers=HUB_2).is_success
    theirs = client.post(ALARM_REPORTS_PATH, json=report("only-hub-2"))
    missing = client.post(ALARM_REPORTS_PATH, json=report("never-raised", "r-2"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    again = client.post(ALARMS_PATH, json=alarm("only-hub-2", "btn-9"), headers=HUB_2)
    assert again.status_code == 200 and again.json()["state"] != "cancelled"


def test_fault_report_ids_are_scoped_per_hub(client: TestClient) -> None:
    assert client.post(FAULTS_PATH, json=fault("f-1", "btn-1")).status_code == 204
    assert client.post(FAULTS_PATH, json=fault("f-1", "btn-9"), headers=HUB_2).status_code == 204
    stored = client.get("/api/v1/admin/faults", headers=AS_ADMIN).json()
    assert sorted((f["hub_id"], f["device_id"]) for f in stored) == [
        ("hub-1", "btn-1"),
        ("hub-2", "btn-9"),
    ]


# ------------------------------------------------------------------ the model, as a property

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(details=st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_accepted_details_are_always_storable(details: dict[str, Any]) -> None:
    """Whatever `details` a hub sends, the model either refuses it or it is strict JSON
    (finite numbers, 64-bit integers, no NUL) that any database stores."""
    try:
        upload = AlarmUpload.model_validate(alarm(details=details))
    except ValidationError:
        return
    text = json.dumps(upload.details, allow_nan=False)
    assert "\\u0000" not in text

    def ints(v: Any) -> list[int]:
        if isinstance(v, dict):
            return [i for x in v.values() for i in ints(x)]
        if isinstance(v, list):
            return [i for x in v for i in ints(x)]
        return [v] if isinstance(v, int) and not isinstance(v, bool) else []

    assert all(abs(i) < 2**63 for i in ints(upload.details))


def test_unknown_query_parameters_get_422(client: TestClient) -> None:
    refused(client.get(HUB_CONFIG_PATH, params={"verbose": 1}), "verbose")
    refused(client.get("/api/v1/admin/alarms", params={"limt": 5}, headers=AS_ADMIN), "limt")
    assert client.get(ALARM_UPDATES_PATH, params={"after": 0, "wait_s": 0}).status_code == 200
