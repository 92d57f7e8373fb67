"""Every way the server (or something pretending to be it) can answer wrongly comes out of
the uplink as an `UplinkError`, never as a pydantic, JSON, key or httpx exception."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carehub import api_contract as api
from gateway.uplink import Uplink, UplinkError

ALARM = {"alarm_id": "a-1", "device_id": "btn-1", "kind": "button", "raised_at_ms": 1}
ACCEPTED = {"alarm_id": "a-1", "state": "received", "created": True}
PORTAL = b"<html><body>Welcome to FreeWifi. Please log in.</body></html>"
BEAT = api.HubHeartbeat(uptime_s=1, queue_depth=0, devices_online=0, version="t")


def mock_uplink(status: int, body: bytes, content_type: str = "application/json") -> Uplink:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return Uplink("http://server.test", "token", 1.0, transport=httpx.MockTransport(answer))


async def outcome(uplink: Uplink, call: str) -> Any:
    try:
        if call == "alarm":
            return await uplink.send("alarm", ALARM)
        if call == "report":
            return await uplink.send("report", {"report_id": "r", "alarm_id": "a-1"})
        if call == "fault":
            return await uplink.send("fault", {"report_id": "f"})
        if call == "updates":
            return await uplink.updates(0, 0)
        if call == "config":
            return await uplink.config()
        return await uplink.heartbeat(BEAT)
    finally:
        await uplink.aclose()


CALLS = ["alarm", "report", "fault", "updates", "config", "heartbeat"]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, PORTAL, "text/html"),  # captive portal
        (302, b"", "text/html"),  # captive portal redirect
        (200, b'{"alarm_id": "a-1", "sta', "application/json"),  # truncated JSON
        (200, b'{"unexpected": true}', "application/json"),  # wrong schema
        (200, b"[1, 2, 3]", "application/json"),  # JSON, not an object
        (200, b"\xff\xfe\x00garbage", "application/octet-stream"),  # not UTF-8
        (503, b"maintenance", "text/plain"),
    ],
)
async def test_wrong_answers_are_uplink_errors(
    call: str, status: int, body: bytes, content_type: str
) -> None:
    with pytest.raises(UplinkError) as caught:
        await outcome(mock_uplink(status, body, content_type), call)
    assert caught.value.retryable


async def test_an_alarm_answer_is_validated_and_returned() -> None:
    assert await outcome(mock_uplink(201, json.dumps(ACCEPTED).encode()), "alarm") == ACCEPTED
    bad_state = json.dumps({**ACCEPTED, "state": "on_fire"}).encode()
    with pytest.raises(UplinkError, match="AlarmAccepted"):
        await outcome(mock_uplink(201, bad_state), "alarm")
    with pytest.raises(UplinkError, match="AlarmAccepted"):
        await outcome(mock_uplink(200, b""), "alarm")  # an empty 200 is not an answer


async def test_a_newer_servers_answers_with_fields_this_hub_does_not_know_are_read() -> None:
    """Servers are upgraded before hubs: an answer may carry fields this hub predates."""
    update = {"cursor": 3, "alarm_id": "a-1", "state": "accepted", "at_ms": 5, "eta_s": 300}
    page = json.dumps({"updates": [update], "cursor": 3, "next_poll_s": 1}).encode()
    got = await outcome(mock_uplink(200, page), "updates")
    assert [(u.alarm_id, u.state) for u in got.updates] == [("a-1", "accepted")]
    plan = {"fall_sensitivity": 0.7, "night_mode": True}
    config = {"hub_id": "h", "elder_id": "e", "care_plan": plan, "devices": [], "region": "x"}
    got_config = await outcome(mock_uplink(200, json.dumps(config).encode()), "config")
    assert got_config.care_plan.fall_sensitivity == 0.7
    newer = json.dumps({**ACCEPTED, "dispatch_eta_s": 60}).encode()
    assert await outcome(mock_uplink(201, newer), "alarm") == ACCEPTED


async def test_a_refusal_for_good_is_not_retryable() -> None:
    with pytest.raises(UplinkError) as caught:
        await outcome(mock_uplink(422, b'{"detail": "bad"}'), "alarm")
    assert not caught.value.retryable


async def test_an_empty_204_is_what_faults_and_heartbeats_expect() -> None:
    assert await outcome(mock_uplink(204, b""), "fault") is None
    assert await outcome(mock_uplink(204, b""), "heartbeat") is None


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    call=st.sampled_from(CALLS),
    status=st.sampled_from([200, 201, 204, 301, 400, 404, 422, 500]),
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.sampled_from(list(ACCEPTED) + ["x"]), inner, max_size=4)
            ),
            max_leaves=8,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_any_answer_is_a_result_or_an_uplink_error(call: str, status: int, body: bytes) -> None:
    try:
        asyncio.run(outcome(mock_uplink(status, body), call))
    except UplinkError:
        pass


# ------------------------------------------------------------ real sockets


@pytest.fixture
def tcp_server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """A local TCP server running `behave(conn)` for each connection; yields a starter."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def start(behave: Callable[[socket.socket], None]) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.1)
        listeners.append(listener)

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=behave, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    stop.set()
    for listener in listeners:
        listener.close()


def reset(conn: socket.socket) -> None:
    """Read the request, then abort the connection (RST)."""
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def silent(conn: socket.socket) -> None:
    """Read the request, then never answer (a server stuck, a black-holed link)."""
    conn.recv(65536)
    threading.Event().wait(5)
    conn.close()


def plain_http(conn: socket.socket) -> None:
    """Answer anything with a plain-HTTP 200, as a server without TLS would."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
    conn.close()


@pytest.mark.parametrize(
    ("behave", "scheme", "call"),
    [
        (behave, scheme, call)
        for behave, scheme in [(reset, "http"), (silent, "http"), (plain_http, "https")]
        for call in CALLS
        if not (behave is silent and call == "updates")  # a long-poll waits wait_s + 10 s
    ],
)
async def test_network_failures_are_uplink_errors(
    tcp_server: Callable[[Callable[[socket.socket], None]], int],
    call: str,
    behave: Callable[[socket.socket], None],
    scheme: str,
) -> None:
    port = tcp_server(behave)
    uplink = Uplink(f"{scheme}://127.0.0.1:{port}", "token", 0.3)
    with pytest.raises(UplinkError):
        await outcome(uplink, call)


async def test_nothing_listening_is_an_uplink_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(UplinkError, match="ConnectError"):
        await outcome(Uplink(f"http://127.0.0.1:{port}", "token", 1.0), "alarm")
