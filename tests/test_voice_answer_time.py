"""A voice call answered is the operator's answer to its alarm (docs/voice.md): the home's
call answered by an operator, or the operator's call answered by the home, sets the alarm's
time to answer (`alarms.operator_at_ms`, read by the KPIs) once; a later outcome does not
move it, and a call nobody answered sets nothing. SQLite and PostgreSQL, through the routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carehub.api_contract import CALLS_PATH
from tests.test_voice_signalling import ADMIN, HUB, _client, calls, raise_alarm, sign_in


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(database_url, tmp_path)


def _later(client: TestClient, seconds: float) -> int:
    """Move the server's fake clock on; the new now (ms)."""
    clock = client.app.state.runtime.clock  # type: ignore[attr-defined]
    clock.advance(seconds)
    return int(clock.now_ms())


def _answered_at(client: TestClient, alarm: str) -> int | None:
    r = client.get(f"/api/v1/admin/alarms/{alarm}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    return r.json()["operator_at_ms"]


def test_the_operator_answering_the_homes_call_answers_the_alarm(client: TestClient) -> None:
    alarm = raise_alarm(client)
    csrf = sign_in(client, "disp")
    _later(client, 20)
    offer = {"call_id": "c-1", "alarm_id": "a-1", "sdp": "v=0 hub offer"}
    assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204
    assert _answered_at(client, alarm) is None  # ringing is not answering
    answered = _later(client, 15)
    r = client.post("/console/calls/c-1/answer", data={"csrf_token": csrf, "sdp": "v=0 console"})
    assert r.status_code == 200, r.text
    assert _answered_at(client, alarm) == answered
    _later(client, 60)
    r = client.post(
        f"/console/alarms/{alarm}/triage",
        data={"csrf_token": csrf, "outcome": "send_doctor"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert _answered_at(client, alarm) == answered  # the first answer stays


def test_the_home_answering_the_operators_call_answers_the_alarm(client: TestClient) -> None:
    alarm = raise_alarm(client)
    csrf = sign_in(client, "disp")
    r = client.post(f"/console/alarms/{alarm}/call", data={"csrf_token": csrf, "sdp": "v=0 op"})
    assert r.status_code == 200, r.text
    call_id = r.json()["call"]["id"]
    assert _answered_at(client, alarm) is None  # calling is not answering
    answered = _later(client, 8)
    r = client.post(f"{CALLS_PATH}/{call_id}/answer", json={"sdp": "v=0 hub"}, headers=HUB)
    assert r.status_code == 204, r.text
    assert _answered_at(client, alarm) == answered


def test_a_call_nobody_answered_sets_nothing(client: TestClient) -> None:
    alarm = raise_alarm(client)
    csrf = sign_in(client, "disp")
    offer = {"call_id": "c-1", "alarm_id": "a-1", "sdp": "v=0 hub offer"}
    assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204
    _later(client, 30)
    hangup = client.post(f"{CALLS_PATH}/c-1/hangup", json={"reason": "refused"}, headers=HUB)
    assert hangup.status_code == 204
    r = client.post(f"/console/alarms/{alarm}/call", data={"csrf_token": csrf, "sdp": "v=0 op"})
    assert r.status_code == 200, r.text
    call_id = r.json()["call"]["id"]
    r = client.post(
        f"/console/calls/{call_id}/hangup", data={"csrf_token": csrf, "reason": "hangup_console"}
    )
    assert r.status_code == 200, r.text
    assert [c.state for c in calls(client).calls] == ["ended", "ended"]
    assert _answered_at(client, alarm) is None
