"""The alarm page follows a call through the console's live feed, not by polling
(docs/voice.md): Debian's chromium (Playwright) on the alarm page of a real server
process, the browser's own clock stopped so that no timer of the page can fire, while the
hub's side (its HTTP API) offers a call, another operator answers it and the hub ends it:
the page shows each state as it happens. With the feed down, the page falls back to
fetching the state every few seconds of its clock."""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from carehub.api_contract import ALARMS_PATH, CALLS_PATH
from tests.console_server import PASSWORD, console_server
from tests.test_console_browser import browser, contexts  # noqa: F401  (fixtures)
from tests.test_console_shift_browser import _in_worker

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
pytestmark = pytest.mark.integration

FALLBACK_MS = 5000  # call.js: the state's fetch while the live feed is down


class Home:
    """The hub's side of the server's API (hub-1's token): an alarm, then its calls."""

    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def press(self, db: Path) -> str:
        """A button alarm from the home; the server's id of it."""
        body = {"alarm_id": "a-1", "device_id": "btn-1", "kind": "button", "raised_at_ms": 1}
        assert self.http.post(ALARMS_PATH, json=body).status_code == 201
        with sqlite3.connect(db) as conn:
            return str(conn.execute("SELECT id FROM alarms").fetchone()[0])

    def offer(self, call_id: str) -> None:
        offer = {"call_id": call_id, "alarm_id": "a-1", "sdp": "v=0 hub offer"}
        assert self.http.post(CALLS_PATH, json=offer).status_code == 204

    def hang_up(self, call_id: str, reason: str) -> None:
        done = self.http.post(f"{CALLS_PATH}/{call_id}/hangup", json={"reason": reason})
        assert done.status_code == 204


def operator(base: str, username: str) -> tuple[httpx.Client, str]:
    """Another operator's signed-in console session and its CSRF token."""
    client = httpx.Client(base_url=base, timeout=10)
    page = client.get("/console/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    login = {"username": username, "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/console/login", data=login).status_code in (200, 303)
    queue = client.get("/console/", headers={"Accept": "text/html"}).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', queue)
    assert csrf is not None
    return client, csrf.group(1)


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[tuple[str, Home, str]]:
    """(base URL, the home, the open alarm's id) of a real server process."""
    from server.console.console_store import add_account_to

    token = secrets.token_urlsafe(24)
    with console_server(tmp_path, "disp", hub_token=token) as base:
        url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
        _in_worker(add_account_to(url, "disp2", PASSWORD, "dispatcher", None, "en", 0))
        home = Home(base, token)
        yield base, home, home.press(tmp_path / "server.db")
        home.http.close()


def alarm_page(chromium, opened: list, base: str, alarm_id: str, feed: bool = True):  # type: ignore[no-untyped-def]
    """The alarm page, signed in as disp, its clock stopped: only the feed (or a timer
    this test moves) can make it fetch anything."""
    context = chromium.new_context(base_url=base, locale="en-US")
    opened.append(context)
    page = context.new_page()
    page.goto("/console/login")
    page.fill("input[name=username]", "disp")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")
    now_ms = int(time.time() * 1000)
    page.clock.install(time=now_ms)
    page.clock.pause_at(now_ms + 60_000)
    if not feed:
        page.route("**/console/events", lambda route: route.abort())
    page.goto(f"/console/alarms/{alarm_id}")
    return page


def test_ring_answer_and_end_show_through_the_live_feed(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: tuple[str, Home, str],
) -> None:
    base, home, alarm_id = centre
    page = alarm_page(browser, contexts, base, alarm_id)
    panel = page.locator("#call")
    expect(panel).to_have_attribute("data-feed", "on")
    expect(panel).to_have_attribute("data-state", "idle")
    home.offer("c-1")
    expect(panel).to_have_attribute("data-state", "ringing")  # the queue's feed rang it
    other, csrf = operator(base, "disp2")
    answered = other.post("/console/calls/c-1/answer", data={"csrf_token": csrf, "sdp": "v=0"})
    assert answered.status_code == 200, answered.text
    expect(panel).to_have_attribute("data-state", "taken")  # another operator has it
    home.hang_up("c-1", "max_length")
    expect(panel).to_have_attribute("data-state", "ended")
    expect(panel).to_have_attribute("data-reason", "max_length")
    other.close()


def test_with_the_feed_down_the_page_falls_back_to_a_slow_fetch(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: tuple[str, Home, str],
) -> None:
    base, home, alarm_id = centre
    page = alarm_page(browser, contexts, base, alarm_id, feed=False)
    panel = page.locator("#call")
    expect(panel).to_have_attribute("data-state", "idle")  # the page's first fetch
    expect(panel).to_have_attribute("data-feed", "off")
    home.offer("c-1")
    page.clock.run_for(FALLBACK_MS)  # the fallback's next fetch is due
    expect(panel).to_have_attribute("data-state", "ringing")
    home.hang_up("c-1", "no_answer")
    page.clock.run_for(FALLBACK_MS)
    expect(panel).to_have_attribute("data-state", "ended")
    expect(panel).to_have_attribute("data-reason", "no_answer")
