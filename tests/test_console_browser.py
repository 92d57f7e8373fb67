"""The console in a real browser (Playwright driving Debian's chromium) against real server
and hub processes: a button press on MQTT reaches the queue within a second, the live feed
outlives a server restart, and the roles, sessions and CSRF hold in the browser."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from firmware_sim.button import CallButton
from server.console.console_store import add_account_to

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            "chromium is not installed: run `make test` (it installs it)"
            " or apt-get install chromium"
        )
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(autouse=True)
def console_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployment's server runs on plain http: its cookies cannot be `Secure`."""
    monkeypatch.setenv("CAREHUB_CONSOLE_INSECURE_COOKIES", "true")


def add_accounts(tmp: Path) -> None:
    """A second team beside the deployment's team-a, and an account of each kind (in a
    worker thread: Playwright's event loop owns this one)."""
    with sqlite3.connect(tmp / "server.db") as db:
        db.execute("INSERT INTO teams (id, name) VALUES ('team-b', 'Team B')")
    url = f"sqlite+aiosqlite:///{tmp / 'server.db'}"

    async def add_all() -> None:
        for username, role, team in [
            ("disp", "dispatcher", None),
            ("doc-a", "doctor", "team-a"),
            ("doc-b", "doctor", "team-b"),
        ]:
            await add_account_to(url, username, PASSWORD, role, team, "en", 0)

    with ThreadPoolExecutor(1) as worker:
        worker.submit(asyncio.run, add_all()).result()


@pytest.fixture
def contexts(browser) -> Iterator[list]:  # type: ignore[no-untyped-def]
    """Browser contexts of one test, closed before its deployment stops (an open live feed
    would hold the server's graceful shutdown)."""
    opened: list = []
    yield opened
    for context in opened:
        context.close()


def sign_in(browser, contexts: list, base_url: str, username: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=base_url, locale="en-US")
    contexts.append(context)
    page = context.new_page()
    page.goto("/console/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")
    return page


def press_and_see(page, port: int, device: str) -> float:  # type: ignore[no-untyped-def]
    """Press `device` and return the seconds until its alarm row is on the page."""
    rows = page.locator("tr[data-alarm-id]")
    before = rows.count()
    with CallButton(device, "127.0.0.1", port) as button:
        assert button.connected.wait(5), "the button could not reach the broker"
        start = time.monotonic()
        button.press("press")
        page.wait_for_function(
            f"document.querySelectorAll('tr[data-alarm-id]').length > {before}", timeout=5000
        )
        return time.monotonic() - start


def test_a_press_reaches_the_live_queue_within_a_second_and_after_a_restart(
    browser, contexts, deployment
) -> None:  # type: ignore[no-untyped-def]
    add_accounts(deployment.tmp)
    page = sign_in(browser, contexts, deployment.base_url, "disp")
    live = page.locator("#live")
    playwright_sync.expect(live).to_have_text("Live", timeout=5000)
    assert page.locator("tr.empty").count() == 1

    seconds = press_and_see(page, deployment.broker.port, "btn-1")
    assert seconds < 1.0, f"the alarm took {seconds:.2f} s to appear"
    row = page.locator("tr[data-alarm-id]").first
    playwright_sync.expect(row).to_have_class(re.compile(r"\bnew\b"))  # the visual cue
    playwright_sync.expect(row).to_contain_text("Zhang San")
    playwright_sync.expect(row).to_contain_text("Bldg 3-501")
    playwright_sync.expect(row).to_contain_text("Help button")
    playwright_sync.expect(page.locator("#new-alarm")).to_be_visible()
    playwright_sync.expect(row.locator("td.due")).to_have_text(re.compile(r"^\d+:\d\d$|due now"))
    # the escalator's first step shows up live: who was told, the SMS status, the countdown
    playwright_sync.expect(row.locator(".sms")).to_contain_text("Doctor A", timeout=5000)
    playwright_sync.expect(row).to_contain_text("step 1")
    playwright_sync.expect(row.locator("td.due")).to_have_text(re.compile(r"^\d+:\d\d$"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

    deployment.server.stop()
    playwright_sync.expect(live).to_have_text("Reconnecting…", timeout=5000)
    deployment.server.start()
    playwright_sync.expect(live).to_have_text("Live", timeout=20000)
    deployment.wait_hub_online()
    seconds = press_and_see(page, deployment.broker.port, "btn-2")
    assert seconds < 1.0, f"after the restart the alarm took {seconds:.2f} s to appear"
    assert page.locator("tr[data-alarm-id]").count() == 2

    # pressed again while its alarm is open: the same row updates and flashes, no new row
    # (a fresh seq: the simulated button counts from the clock's second, and the hub drops a
    # seq it has already taken as a retry)
    later = int(time.time()) + 1000
    with CallButton("btn-2", "127.0.0.1", deployment.broker.port, first_seq=later) as button:
        assert button.connected.wait(5)
        # held connected until the hub acks: `press` publishes from a firmware thread, and
        # leaving the block at once could stop the button before it had published at all
        button.press("press", wait_s=10)
    again = page.locator("tr[data-repeats='1']")
    playwright_sync.expect(again).to_have_class(re.compile(r"\brepeated\b"), timeout=5000)
    playwright_sync.expect(again).to_contain_text("2× from this device")
    assert page.locator("tr[data-alarm-id]").count() == 2


def test_roles_sessions_and_csrf_hold_in_the_browser(browser, contexts, deployment) -> None:  # type: ignore[no-untyped-def]
    add_accounts(deployment.tmp)
    dispatcher = sign_in(browser, contexts, deployment.base_url, "disp")
    press_and_see(dispatcher, deployment.broker.port, "btn-1")

    # a dispatcher cannot open the admin pages
    for path in ("/console/audit", "/console/accounts"):
        response = dispatcher.goto(path)
        assert response is not None and response.status == 403
    dispatcher.goto("/console/")

    # a form posted without its CSRF token (or with a forged one) is refused
    assert dispatcher.request.post("/console/logout").status == 403
    forged = dispatcher.request.post("/console/logout", form={"csrf_token": "forged"})
    assert forged.status == 403
    assert dispatcher.request.get("/console/").status == 200  # still signed in

    # a doctor sees their own team's alarms only
    doctor_a = sign_in(browser, contexts, deployment.base_url, "doc-a")
    playwright_sync.expect(doctor_a.locator("tr[data-alarm-id]")).to_contain_text("Zhang San")
    doctor_b = sign_in(browser, contexts, deployment.base_url, "doc-b")
    playwright_sync.expect(doctor_b.locator("tr.empty")).to_be_visible()
    assert "Zhang San" not in doctor_b.request.get("/console/").text()

    # the language is switched from the page and kept on the account
    dispatcher.click("#language-form button[value=zh]")
    playwright_sync.expect(dispatcher.locator("h1")).to_have_text("未处理的警报")
    playwright_sync.expect(dispatcher.locator("#live")).to_have_text("实时")
    ARTIFACTS.mkdir(exist_ok=True)
    dispatcher.screenshot(path=str(ARTIFACTS / "queue-zh.png"), full_page=True)

    # logging out ends the session: the old cookie no longer works, and the session's live
    # pages in other tabs are told at once (their stream's `signed-out`) and leave
    board = dispatcher.context.new_page()
    board.goto("/console/health")
    playwright_sync.expect(board.locator("#live")).to_have_text("实时", timeout=5000)
    old = dispatcher.context.cookies()
    dispatcher.click("#logout-form button")  # 退出
    dispatcher.wait_for_url("**/console/login")
    board.wait_for_url("**/console/login", timeout=10000)
    replay = browser.new_context(base_url=deployment.base_url)
    contexts.append(replay)
    replay.add_cookies(old)
    page = replay.new_page()
    page.goto("/console/")
    assert page.url.endswith("/console/login")
    assert page.request.get("/console/").status == 401


def test_an_operator_works_an_alarm_from_its_page(browser, contexts, deployment) -> None:  # type: ignore[no-untyped-def]
    """A real button press over MQTT, then acknowledge, assign, note and resolve from the
    alarm's page: each step shows on the timeline and the resolution reaches the server's
    record the hub reads."""
    add_accounts(deployment.tmp)
    page = sign_in(browser, contexts, deployment.base_url, "disp")
    with CallButton("btn-1", "127.0.0.1", deployment.broker.port) as button:
        assert button.connected.wait(5), "the button could not reach the broker"
        seq = button.press("press")
        page.wait_for_selector("tr[data-alarm-id] a.open-alarm", timeout=5000)
        _work_the_alarm(page, deployment)
        resolved = button.acks.wait_for(lambda a: a.seq == seq and a.state.value == "resolved", 10)
        assert resolved is not None, "the hub did not tell the button the alarm was resolved"
    page.goto("/console/")
    playwright_sync.expect(page.locator("tr.empty")).to_be_visible()  # off the queue


def _work_the_alarm(page, deployment) -> None:  # type: ignore[no-untyped-def]
    page.locator("tr[data-alarm-id] a.open-alarm").first.click()
    page.wait_for_url(re.compile(r".*/console/alarms/\w+$"))
    alarm_id = page.url.rsplit("/", 1)[1]
    timeline = page.locator("#timeline")
    playwright_sync.expect(timeline).to_contain_text("Hub raised")
    playwright_sync.expect(page.locator("#lifecycle")).to_contain_text("unacknowledged")

    page.click("#ack-form button")
    playwright_sync.expect(page.locator("#lifecycle")).to_contain_text("acknowledged")
    playwright_sync.expect(timeline.locator("li.ev-acknowledged .actor")).to_have_text("disp")

    page.select_option("#assign-form select", "dr-b")
    page.click("#assign-form button")
    playwright_sync.expect(page.locator("#lifecycle")).to_contain_text("assigned to: Doctor B")
    playwright_sync.expect(timeline.locator("li.ev-assigned")).to_contain_text("Doctor B")
    deadline = time.monotonic() + 10
    while not any(m.to == "+8613800000002" for m in deployment.sms.messages):
        assert time.monotonic() < deadline, "Doctor B was not sent the alarm"
        time.sleep(0.05)
    assert any("/r/" in m.body for m in deployment.sms.messages if m.to == "+8613800000002")

    page.fill("#note-form input[name=text]", "Daughter has a key, on her way")
    page.click("#note-form button")
    playwright_sync.expect(timeline.locator("li.ev-note")).to_contain_text("Daughter has a key")

    page.select_option("#resolve-form select", "home_visit")
    page.click("#resolve-form button")
    playwright_sync.expect(page.locator("#lifecycle")).to_contain_text("cleared")
    playwright_sync.expect(timeline.locator("li.ev-state").last).to_contain_text("resolved")
    assert deployment.alarm(alarm_id)["state"] == "resolved"


def _fall_upload(now_ms: int) -> dict:
    """A fall as the hub uploads it: 2 s before the impact to 5 s after, at 50 Hz."""
    import numpy as np

    from firmware_sim.pendant import synthetic_fall

    hz = 50.0
    acc = synthetic_fall(hz, np.random.default_rng(7), lying_s=6.0, upright_s=4.0)
    impact = int(np.argmax(np.linalg.norm(acc, axis=1)))
    window = acc[impact - 100 : impact + 250]
    t0 = now_ms - 8000
    return {
        "alarm_id": "fall-" + str(now_ms),
        "device_id": "pend-1",
        "kind": "fall",
        "severity": "critical",
        "raised_at_ms": now_ms - 1000,
        "event_ts_ms": t0 + 2000,
        "details": {
            "impact_ts_ms": t0 + 2000,
            "peak_g": float(np.linalg.norm(acc[impact])),
            "window": {"hz": hz, "t0_ms": t0, "acc": np.round(window, 3).tolist()},
        },
    }


def test_fall_detail_health_and_kpi_pages_screenshots(browser, contexts, deployment) -> None:  # type: ignore[no-untyped-def]
    import httpx

    add_accounts(deployment.tmp)
    upload = _fall_upload(int(time.time() * 1000))
    r = httpx.post(
        f"{deployment.base_url}/api/v1/alarms",
        json=upload,
        headers={"Authorization": f"Bearer {deployment.token}"},
    )
    assert r.status_code in (200, 201), r.text
    page = sign_in(browser, contexts, deployment.base_url, "disp")
    page.locator("tr[data-alarm-id] a.open-alarm").first.click()
    playwright_sync.expect(page.locator("#fall-plot svg polyline")).to_be_visible()
    playwright_sync.expect(page.locator("#fall-plot line.impact")).to_have_count(1)
    playwright_sync.expect(page.locator("#timeline")).to_contain_text("Device event")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "fall-detail.png"), full_page=True)

    page.goto("/console/health")
    playwright_sync.expect(page.locator("#hubs-offline")).to_be_visible()
    playwright_sync.expect(page.locator("#live")).to_have_text("Live", timeout=5000)
    # the board is live: a battery running low appears without a reload
    battery = page.locator("#battery-low")
    playwright_sync.expect(battery).not_to_contain_text("btn-2")
    with CallButton("btn-2", "127.0.0.1", deployment.broker.port) as button:
        assert button.connected.wait(5)
        button.send_status(battery=12.0)
        playwright_sync.expect(battery).to_contain_text("btn-2", timeout=10000)
    page.goto("/console/kpi")
    playwright_sync.expect(page.locator("#kpi-teams")).to_contain_text("team-a")
    playwright_sync.expect(page.locator("#plot-accepted svg")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "kpi.png"), full_page=True)


ATTACKER = "http://attacker.test"
"""Another site: Playwright answers its page itself (`page.route`), nothing listens there."""


def test_a_sign_in_posted_from_another_site_is_refused(browser, contexts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Login CSRF: a page elsewhere posts the sign-in form with the attacker's credentials
    and the old stand-in token (a NUL, then "missing"), never having fetched the form.
    The victim's browser must not end up signed in as the attacker."""
    from tests.console_server import console_server

    with console_server(tmp_path) as base:
        context = browser.new_context(locale="en-US")
        contexts.append(context)
        page = context.new_page()
        form = (
            f'<form id="f" method="post" action="{base}/console/login">'
            f'<input name="username" value="disp"><input name="password" value="{PASSWORD}">'
            '<input name="csrf_token" id="t"></form>'
            "<script>document.getElementById('t').value = '\\u0000missing';"
            "document.getElementById('f').submit();</script>"
        )
        page.route(
            f"{ATTACKER}/**",
            lambda route: route.fulfill(status=200, content_type="text/html", body=form),
        )
        with page.expect_response(f"{base}/console/login") as posted:
            page.goto(f"{ATTACKER}/")
        assert posted.value.request.method == "POST"
        assert posted.value.status == 403, posted.value.status
        assert not [c for c in context.cookies() if c["name"] == "carehub_session"]
        context.close()
        contexts.remove(context)
