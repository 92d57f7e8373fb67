"""Voice call signalling through the server (docs/voice.md), SQLite and PostgreSQL: the hub's
offer rings in the console and the operator's answer wakes the hub's long-poll; the hub
answers the operator's call by itself; either side hangs up; a hub sees and touches only
its own calls; every call an operator takes or makes is audited. Only SDPs pass through
the server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carehub.api_contract import ALARMS_PATH, CALLS_PATH, CallList
from carehub.clock import FakeClock
from carehub.settings import ServerSettings
from server.app import create_app
from server.console.audit_log import AuditFilter, PageKey
from server.console.console_store import ConsoleStore
from server.db import make_engine
from server.main import prepare_database
from server.notifier import ConsoleNotifier
from tests.conftest import DIRECTORY

TOKEN, TOKEN_2 = "hub-token-for-voice-tests-0123", "hub-2-token-for-voice-tests-01"
ADMIN = "admin-token-for-voice-tests"
PASSWORD = "correct horse battery"
OTHER_HOME = """
[[elders]]
id = "elder-2"
team = "team-a"
name = "Li Si"

[[hubs]]
id = "hub-2"
elder = "elder-2"
token = "{token}"

[[devices]]
id = "btn-9"
hub = "hub-2"
kind = "button"
"""
HUB = {"Authorization": f"Bearer {TOKEN}"}
HUB_2 = {"Authorization": f"Bearer {TOKEN_2}"}


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(database_url, tmp_path)


def _client(database_url: str, tmp_path: Path, **extra: object) -> Iterator[TestClient]:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN) + OTHER_HOME.format(token=TOKEN_2))
    settings = ServerSettings(
        database_url=database_url,
        admin_token=ADMIN,  # type: ignore[arg-type]
        console_insecure_cookies=True,
        voice_ice_servers=[
            {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}
        ],  # type: ignore[list-item]
        **extra,  # type: ignore[arg-type]
    )
    asyncio.run(prepare_database(settings, directory))

    async def accounts() -> None:
        engine = make_engine(database_url)
        try:
            for name in ("disp", "disp2"):
                await ConsoleStore(engine).add_account(name, PASSWORD, "dispatcher", None, "en", 0)
            await ConsoleStore(engine).add_account("root", PASSWORD, "admin", None, "en", 0)
        finally:
            await engine.dispose()

    asyncio.run(accounts())
    # a fake clock: a long-poll can end only by being woken, never by its deadline
    app = create_app(settings, notifier=ConsoleNotifier(), clock=FakeClock())
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def sign_in(client: TestClient, username: str) -> str:
    """Sign `client` in; the session's CSRF token."""
    page = client.get("/console/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = client.post(
        "/console/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    queue = client.get("/console/", headers={"Accept": "text/html"})
    return queue.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def raise_alarm(client: TestClient, alarm_id: str = "a-1", device: str = "btn-1") -> str:
    """Upload a press; the server's id of the alarm."""
    r = client.post(
        ALARMS_PATH,
        json={"alarm_id": alarm_id, "device_id": device, "kind": "button", "raised_at_ms": 1},
        headers=HUB if device == "btn-1" else HUB_2,
    )
    assert r.status_code == 201, r.text
    alarms = client.get("/api/v1/admin/alarms", headers={"Authorization": f"Bearer {ADMIN}"})
    return next(a["id"] for a in alarms.json() if a["hub_alarm_id"] == alarm_id)


def calls(client: TestClient, seen: str = "", wait_s: float = 0) -> CallList:
    r = client.get(CALLS_PATH, params={"seen": seen, "wait_s": wait_s}, headers=HUB)
    assert r.status_code == 200, r.text
    return CallList.model_validate(r.json())


class LongPoll(threading.Thread):
    """The hub's long-poll, held open in a thread until the server wakes it."""

    def __init__(self, client: TestClient, seen: str) -> None:
        super().__init__(daemon=True)
        self.client, self.seen = client, seen
        self.answer: CallList | None = None

    def run(self) -> None:
        self.answer = calls(self.client, self.seen, wait_s=60)

    def woken(self) -> CallList:
        self.join(10)
        answered = self.answer
        if answered is None:  # end the held request (the fake clock passes its deadline)
            self.client.app.state.runtime.clock.advance(3600)  # type: ignore[attr-defined]
            self.join(10)
        assert answered is not None, "the long-poll was never woken"
        return answered


def test_the_hubs_offer_rings_and_the_operators_answer_wakes_the_hub(client: TestClient) -> None:
    alarm = raise_alarm(client)
    empty = calls(client)
    assert empty.calls == []
    offer = {"call_id": "c-1", "alarm_id": "a-1", "sdp": "v=0 hub offer"}
    assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204
    assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204  # a retry
    ringing = calls(client)
    assert [(c.call_id, c.state, c.direction, c.sdp) for c in ringing.calls] == [
        ("c-1", "ringing", "from_home", None)
    ]
    csrf = sign_in(client, "disp")
    assert 'data-ringing="1"' in client.get("/console/", headers={"Accept": "text/html"}).text
    state = client.get(f"/console/alarms/{alarm}/call").json()
    assert state["call"]["state"] == "ringing" and state["call"]["sdp"] == "v=0 hub offer"
    assert state["ice_servers"][0]["urls"] == "turn:turn.example.org:3478"

    poll = LongPoll(client, ringing.digest)
    poll.start()
    r = client.post("/console/calls/c-1/answer", data={"csrf_token": csrf, "sdp": "v=0 console"})
    assert r.status_code == 200, r.text
    woken = poll.woken()
    assert [(c.state, c.sdp) for c in woken.calls] == [("answered", "v=0 console")]

    client.cookies.clear()  # another dispatcher, too late
    csrf_2 = sign_in(client, "disp2")
    r = client.post("/console/calls/c-1/answer", data={"csrf_token": csrf_2, "sdp": "v=0 late"})
    assert r.status_code == 409 and "disp" in r.json()["detail"]

    hangup = client.post(f"{CALLS_PATH}/c-1/hangup", json={"reason": "max_length"}, headers=HUB)
    assert hangup.status_code == 204
    ended = client.get(f"/console/alarms/{alarm}/call").json()["call"]
    assert (ended["state"], ended["end_reason"], ended["answered_by"]) == (
        "ended",
        "max_length",
        "disp",
    )
    assert ended["sdp"] is None
    assert 'data-ringing="1"' not in client.get("/console/", headers={"Accept": "text/html"}).text
    audit = client.get("/console/audit")  # disp is no admin: the table holds the row
    assert audit.status_code == 403
    rows = _audit(client)
    assert [(r["username"], r["action"], r["alarm_id"]) for r in rows] == [
        ("disp", "voice_call", alarm)
    ]


def _audit(client: TestClient) -> list[dict]:
    """The audit log, read on the app's own event loop."""
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    page = client.portal.call(  # type: ignore[union-attr]
        ConsoleStore(rt.store.engine).audit_log, AuditFilter()
    )
    return [dict(r) for r in page.rows]


def test_the_hub_answers_the_operators_call_and_hears_the_hang_up(client: TestClient) -> None:
    alarm = raise_alarm(client)
    csrf = sign_in(client, "disp")
    seen = calls(client).digest
    poll = LongPoll(client, seen)
    poll.start()
    r = client.post(f"/console/alarms/{alarm}/call", data={"csrf_token": csrf, "sdp": "v=0 op"})
    assert r.status_code == 200, r.text
    [call] = poll.woken().calls
    assert (call.direction, call.state, call.sdp, call.alarm_id) == (
        "to_home",
        "ringing",
        "v=0 op",
        "a-1",  # the hub's own id of the alarm
    )
    again = client.post(f"/console/alarms/{alarm}/call", data={"csrf_token": csrf, "sdp": "x"})
    assert again.status_code == 409  # one call per home at a time
    answer = client.post(
        f"{CALLS_PATH}/{call.call_id}/answer", json={"sdp": "v=0 hub answer"}, headers=HUB
    )
    assert answer.status_code == 204
    seen_call = client.get(f"/console/alarms/{alarm}/call").json()["call"]
    assert (seen_call["state"], seen_call["sdp"], seen_call["answered_by"]) == (
        "answered",
        "v=0 hub answer",
        "disp",
    )
    seen = calls(client).digest
    poll = LongPoll(client, seen)
    poll.start()
    r = client.post(
        f"/console/calls/{call.call_id}/hangup",
        data={"csrf_token": csrf, "reason": "no_connection"},
    )
    assert r.status_code == 200
    [ended] = poll.woken().calls
    assert (ended.state, ended.end_reason) == ("ended", "no_connection")
    bad = client.post(
        f"/console/calls/{call.call_id}/hangup", data={"csrf_token": csrf, "reason": "silence"}
    )
    assert bad.status_code == 400  # the hub's reasons are the hub's to give
    no_csrf = client.post(f"/console/alarms/{alarm}/call", data={"sdp": "v=0"})
    assert no_csrf.status_code == 403


def test_a_call_nobody_answered_is_in_the_audit_log(client: TestClient) -> None:
    """Every call is in the audit log (who, when, how long): a home's call that rang out
    unanswered has nobody's name on it, but its row says when it rang, for how long and
    why it ended; an answered call keeps its operator's row."""
    alarm = raise_alarm(client)
    clock = client.app.state.runtime.clock  # type: ignore[attr-defined]
    rang_at = clock.now_ms()
    offer = {"call_id": "c-1", "alarm_id": "a-1", "sdp": "v=0 hub offer"}
    assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204
    clock.advance(90)
    hangup = client.post(f"{CALLS_PATH}/c-1/hangup", json={"reason": "no_answer"}, headers=HUB)
    assert hangup.status_code == 204
    clock.advance(5)
    csrf = sign_in(client, "disp")  # a second call, answered by disp
    offer = {"call_id": "c-2", "alarm_id": "a-1", "sdp": "v=0 hub offer"}
    assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204
    r = client.post("/console/calls/c-2/answer", data={"csrf_token": csrf, "sdp": "v=0 console"})
    assert r.status_code == 200, r.text
    rows = _audit(client)
    assert [(r["username"], r["action"], r["alarm_id"], r["at_ms"]) for r in rows] == [
        ("disp", "voice_call", alarm, rang_at + 95_000),
        (None, "voice_call_unanswered", alarm, rang_at),
    ]
    assert (rows[1]["duration_ms"], rows[1]["end_reason"]) == (90_000, "no_answer")
    assert rows[1]["elder_id"] == "elder-1"

    client.cookies.clear()
    sign_in(client, "root")
    page = client.get("/console/audit")
    assert page.status_code == 200, page.text
    assert "not answered" in page.text and "rang 90 s" in page.text
    assert "nobody answered" in page.text  # the end reason
    only_disp = client.get("/console/audit", params={"account": "disp"}).text
    assert "not answered" not in only_disp and "voice call" in only_disp
    assert "not answered" in client.get("/console/audit", params={"elder": "elder-1"}).text
    assert "not answered" not in client.get("/console/audit", params={"elder": "elder-2"}).text


def test_the_audit_log_pages_through_views_and_unanswered_calls_alike(client: TestClient) -> None:
    """Rows of both sources at the same millisecond: pages of two rows reach every row once,
    in the order of one page holding them all."""
    raise_alarm(client)
    for n in range(3):  # each new offer replaces the call still ringing: none answered
        offer = {"call_id": f"c-{n}", "alarm_id": "a-1", "sdp": "v=0 hub offer"}
        assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204
    hung_up = client.post(f"{CALLS_PATH}/c-2/hangup", json={"reason": "no_answer"}, headers=HUB)
    assert hung_up.status_code == 204
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    store = ConsoleStore(rt.store.engine)

    async def views() -> None:
        found = await store.credentials("disp")
        assert found is not None
        for _ in range(3):
            await store.audit(found[0], "medical_notes", "elder-1", None, rt.clock.now_ms())

    client.portal.call(views)  # type: ignore[union-attr]
    everything = client.portal.call(store.audit_log, AuditFilter())  # type: ignore[union-attr]
    assert len(everything.rows) == 6 and everything.older_than is None
    walked, key = [], None
    while True:
        page = client.portal.call(store.audit_log, AuditFilter(), key, 2)  # type: ignore[union-attr]
        walked += page.rows
        if page.older_than is None:
            break
        assert PageKey.parse(page.older_than.text()) == page.older_than  # the link's form
        key = page.older_than
    assert walked == everything.rows
    assert (
        sorted(r["action"] for r in walked) == ["medical_notes"] * 3 + ["voice_call_unanswered"] * 3
    )


def test_a_hub_sees_and_touches_only_its_own_calls(client: TestClient) -> None:
    raise_alarm(client)
    raise_alarm(client, "b-1", "btn-9")
    offer = {"call_id": "c-1", "alarm_id": "a-1", "sdp": "v=0 hub offer"}
    assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204
    assert client.get(CALLS_PATH, headers=HUB_2).json()["calls"] == []
    # hub-2 names hub-1's call or alarm: as if they did not exist
    assert (
        client.post(
            f"{CALLS_PATH}/c-1/hangup", json={"reason": "refused"}, headers=HUB_2
        ).status_code
        == 404
    )
    assert (
        client.post(f"{CALLS_PATH}/c-1/answer", json={"sdp": "x"}, headers=HUB_2).status_code == 404
    )
    stolen = {"call_id": "c-2", "alarm_id": "a-1", "sdp": "v=0"}
    assert client.post(CALLS_PATH, json=stolen, headers=HUB_2).status_code == 404
    reused = {"call_id": "c-1", "alarm_id": "b-1", "sdp": "v=0"}
    assert client.post(CALLS_PATH, json=reused, headers=HUB_2).status_code == 409
    assert client.get(CALLS_PATH).status_code == 401
    # a hub's new offer replaces its call still ringing (one call per home)
    newer = {"call_id": "c-3", "alarm_id": "a-1", "sdp": "v=0 again"}
    assert client.post(CALLS_PATH, json=newer, headers=HUB).status_code == 204
    states = {c.call_id: (c.state, c.end_reason) for c in calls(client).calls}
    assert states == {"c-1": ("ended", "replaced"), "c-3": ("ringing", None)}


def test_a_hub_that_goes_offline_ends_its_calls(database_url: str, tmp_path: Path) -> None:
    """No console rings on, or talks, to a hub whose heartbeats stopped."""
    for client in _client(database_url, tmp_path, hub_offline_after_s=0.3):
        raise_alarm(client)
        beat = {"uptime_s": 1, "queue_depth": 0, "devices_online": 1, "version": "t"}
        assert client.post("/api/v1/hub/heartbeat", json=beat, headers=HUB).status_code == 204
        admin = {"Authorization": f"Bearer {ADMIN}"}
        offer = {"call_id": "c-1", "alarm_id": "a-1", "sdp": "v=0 hub offer"}
        assert client.post(CALLS_PATH, json=offer, headers=HUB).status_code == 204
        deadline = time.monotonic() + 10
        while not any(h["online"] for h in client.get("/api/v1/admin/hubs", headers=admin).json()):
            assert time.monotonic() < deadline, "the heartbeat was never stored"
            time.sleep(0.05)
        client.app.state.runtime.clock.advance(60)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while calls(client).calls[0].state != "ended":
            assert time.monotonic() < deadline, "the offline hub's call still rings"
            time.sleep(0.05)
        [call] = calls(client).calls
        assert call.end_reason == "network_lost"
