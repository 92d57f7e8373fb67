"""The console's live feed across server processes: two servers on one PostgreSQL database,
the browser's stream on one, the hub's upload on the other."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from carehub.api_contract import ALARMS_PATH
from harness.broker import free_port
from harness.processes import Child, wait_http_ok
from server.console.console_store import add_account_to
from tests.conftest import DIRECTORY

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


@pytest.fixture
def two_servers(tmp_path: Path, pg_url: str) -> Iterator[tuple[str, str, str]]:
    """Two server processes on one database: (first's URL, second's URL, hub token)."""
    token = secrets.token_urlsafe(24)
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token=token))
    children, urls = [], []
    try:
        for name in ("server-a", "server-b"):
            port = free_port()
            args = ["server", "--directory", str(tmp_path / "directory.toml")]
            child = Child(
                name,
                args if name == "server-a" else ["server"],
                {
                    "CAREHUB_DATABASE_URL": pg_url,
                    "CAREHUB_PORT": str(port),
                    "CAREHUB_CONSOLE_INSECURE_COOKIES": "true",
                },
                tmp_path / f"{name}.log",
            ).start()
            children.append(child)
            urls.append(f"http://127.0.0.1:{port}")
            wait_http_ok(f"{urls[-1]}/healthz", 60, child)
        asyncio.run(add_account_to(pg_url, "disp", PASSWORD, "dispatcher", None, "en", 0))
        yield urls[0], urls[1], token
    finally:
        for child in children:
            child.stop()


def sign_in(client: httpx.Client) -> None:
    page = client.get("/console/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = client.post(
        "/console/login", data={"username": "disp", "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 303, r.text


def test_an_alarm_stored_by_one_process_reaches_the_feed_of_another(
    two_servers: tuple[str, str, str],
) -> None:
    first, second, hub_token = two_servers
    with httpx.Client(base_url=second, timeout=10) as browser:
        sign_in(browser)
        with browser.stream("GET", "/console/events") as feed:
            assert feed.headers["content-type"].startswith("text/event-stream")
            lines = feed.iter_lines()
            assert "event: hello" in [next(lines), next(lines)]
            upload = {
                "alarm_id": uuid.uuid4().hex,
                "device_id": "btn-1",
                "kind": "button",
                "raised_at_ms": int(time.time() * 1000),
            }
            start = time.monotonic()
            stored = httpx.post(
                f"{first}{ALARMS_PATH}",
                json=upload,
                headers={"Authorization": f"Bearer {hub_token}"},
                timeout=10,
            )
            assert stored.status_code == 201, stored.text
            for line in lines:  # keepalives every few seconds: the deadline is checked
                assert time.monotonic() - start < 1.0, "no queue event within 1 s"
                if line == "event: queue":
                    break
        rows = browser.get("/console/", headers={"Accept": "text/html-fragment"}).text
        assert "Zhang San" in rows and "<html" not in rows


def _read_until_closed(lines: Iterator[str], deadline_s: float) -> list[str]:
    """The stream's lines until the server ends it; fails if it goes on past the deadline
    (keepalives every few seconds give the check its turns)."""
    seen, deadline = [], time.monotonic() + deadline_s
    for line in lines:
        seen.append(line)
        assert time.monotonic() < deadline, f"the stream went on: {seen[-4:]}"
    return seen


def _csrf(client: httpx.Client) -> str:
    page = client.get("/console/", headers={"Accept": "text/html"}).text
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_signing_out_ends_every_live_stream_of_that_session(tmp_path: Path) -> None:
    """Signing out ends the session's queue and health streams at once (they said
    ``signed-out``); another session's streams go on; and a session ended elsewhere (as by
    another server process: here, in the database) ends its stream at its next send."""
    from tests.console_server import console_server

    with (
        console_server(tmp_path) as base,
        httpx.Client(base_url=base, timeout=10) as mine,
        httpx.Client(base_url=base, timeout=10) as other,
        contextlib.ExitStack() as streams,
    ):
        sign_in(mine)
        sign_in(other)
        feeds = [
            streams.enter_context(mine.stream("GET", path)).iter_lines()
            for path in ("/console/events", "/console/health/events")
        ]
        others = streams.enter_context(other.stream("GET", "/console/events")).iter_lines()
        for lines in [*feeds, others]:
            assert "event: hello" in [next(lines), next(lines)]
        out = mine.post("/console/logout", data={"csrf_token": _csrf(mine)})
        assert out.status_code == 303
        for lines in feeds:
            assert "event: signed-out" in _read_until_closed(lines, 10)
        still = next(line for line in others if line in (": keepalive", "event: signed-out"))
        assert still == ": keepalive"  # the other session's stream goes on

        with sqlite3.connect(tmp_path / "server.db") as db:
            db.execute("DELETE FROM console_sessions")
        assert "event: signed-out" in _read_until_closed(others, 20)


def test_wrong_passwords_sent_at_once_to_two_processes_are_limited_together(
    two_servers: tuple[str, str, str],
) -> None:
    """The sign-in limit is one for every process on the database: 30 wrong passwords sent
    at once from one address, half to each server, get the allowed five checks in all."""
    servers = two_servers[:2]

    def attempt(i: int) -> int:
        with httpx.Client(base_url=servers[i % 2], timeout=30) as client:
            page = client.get("/console/login").text
            token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            data = {"username": "disp", "password": "wrong password", "csrf_token": token}
            return client.post("/console/login", data=data).status_code

    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(attempt, range(30)))
    assert sorted(codes) == [401] * 5 + [429] * 25, codes
