"""Issue 23 in a real browser (Playwright driving Debian's chromium) against a real server
process: actions without a page load, no risky default choice, the installer's landing
page, and times in the account's language and the centre's zone whatever the browser's.
Screenshots of the pages in both languages go to tests/artifacts/ (not committed)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.api_contract import AlarmUpload
from server.console.console_store import add_account_to
from server.db import make_engine
from server.schema import alarms
from server.store import HubIdentity, ServerStore
from tests.console_server import PASSWORD, console_server
from tests.test_console_browser import browser, contexts  # noqa: F401  (fixtures)

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
ARTIFACTS = Path(__file__).parent / "artifacts"
HUB = HubIdentity("hub-1", "elder-1")

pytestmark = pytest.mark.integration


def _in_worker(coro: object) -> object:
    """Run a coroutine on its own loop (Playwright's sync API owns this thread's)."""
    with ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


async def _accounts_and_alarm(url: str) -> str:
    for username, role, language in [
        ("disp-zh", "dispatcher", "zh"),
        ("fitter", "installer", "en"),
    ]:
        await add_account_to(url, username, PASSWORD, role, None, language, 0)
    engine = make_engine(url)
    try:
        now = int(datetime.now(UTC).timestamp() * 1000)
        upload = AlarmUpload(
            alarm_id=uuid.uuid4().hex,
            device_id="btn-1",
            kind=AlarmKind.BUTTON,
            severity=Severity.CRITICAL,
            raised_at_ms=now,
        )
        await ServerStore(engine).store_alarm(HUB, upload, now)
        async with engine.connect() as conn:
            found = await conn.scalar(sa.select(alarms.c.id))
        return str(found)
    finally:
        await engine.dispose()


@pytest.fixture
def shift(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(base URL, an open alarm's id, the database file) of a real server process."""
    with console_server(tmp_path, "disp") as base:
        url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
        alarm_id = _in_worker(_accounts_and_alarm(url))
        yield base, str(alarm_id), tmp_path / "server.db"


def sign_in(chromium, opened: list, base: str, username: str, **options):  # type: ignore[no-untyped-def]
    context = chromium.new_context(base_url=base, **{"locale": "en-US", **options})
    opened.append(context)
    page = context.new_page()
    page.goto("/console/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def audit_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM console_audit").fetchone()[0])


def test_9_10_actions_do_not_reload_and_nothing_risky_is_preselected(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    shift: tuple[str, str, Path],
) -> None:  # type: ignore[no-untyped-def]
    base, alarm_id, db = shift
    page = sign_in(browser, contexts, base, "disp")
    page.goto(f"/console/alarms/{alarm_id}")
    expect(page.locator("#timeline")).to_be_visible()

    # 10: Resolve and Assign start on an empty, required choice; duty is marked
    assert page.locator("#resolve-form select").input_value() == ""
    assert page.locator("#assign-form select").input_value() == ""
    options = page.locator("#assign-form select option").all_inner_texts()
    assert all(re.search(r"(on|off) duty$", o) for o in options[1:]), options
    page.click("#resolve-form button")  # nothing chosen: the browser asks, nothing is posted
    assert page.locator("#resolve-form select:invalid").count() == 1
    expect(page.locator("#lifecycle")).to_contain_text("active")

    # 9: an action changes the screen without loading the page (or auditing a view again)
    views = audit_rows(db)
    page.evaluate("window.__stayed = 'yes'")
    page.fill("#note-form input[name=text]", "son is on his way")
    page.click("#note-form button")
    expect(page.locator("#timeline")).to_contain_text("son is on his way")
    page.click("#ack-form button")
    expect(page.locator("#lifecycle")).to_contain_text("acknowledged")
    assert page.evaluate("window.__stayed") == "yes", "the page was reloaded"
    assert audit_rows(db) == views
    shot(page, "alarm-actions-en.png")

    page.select_option("#resolve-form select", "home_visit")
    page.click("#resolve-form button")
    expect(page.locator("#lifecycle")).to_contain_text("cleared")
    assert page.evaluate("window.__stayed") == "yes"


def test_11_an_installer_lands_on_the_health_board(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    shift: tuple[str, str, Path],
) -> None:  # type: ignore[no-untyped-def]
    base, _, _ = shift
    page = sign_in(browser, contexts, base, "fitter")
    page.wait_for_url("**/console/health")
    expect(page.locator("#hubs-offline")).to_be_visible()
    assert "detail" not in page.content().lower()[:200]  # a page, not a JSON refusal
    shot(page, "health-installer-en.png")
    page.goto("/console/")
    page.wait_for_url("**/console/health")


def test_12_times_follow_the_account_and_the_centre_not_the_browser(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    shift: tuple[str, str, Path],
) -> None:  # type: ignore[no-untyped-def]
    """A Chinese dispatcher on a browser set to American English in New York reads the
    centre's clock (Asia/Shanghai) in Chinese order, and the timeline in Chinese."""
    base, alarm_id, _ = shift
    page = sign_in(browser, contexts, base, "disp-zh", timezone_id="America/New_York")
    page.goto(f"/console/alarms/{alarm_id}")
    first = page.locator("#timeline time").first
    expect(first).not_to_be_empty()
    at_ms = int(first.get_attribute("data-ms") or 0)
    local = datetime.fromtimestamp(at_ms / 1000, ZoneInfo("Asia/Shanghai"))
    assert first.inner_text() == local.strftime("%Y/%m/%d %H:%M:%S"), first.inner_text()
    timeline = page.locator("#timeline").inner_text()
    assert "网关触发" in timeline and "Hub raised" not in timeline and "system" not in timeline
    expect(page.locator("h1")).to_contain_text("呼救按钮")
    shot(page, "alarm-zh.png")
    page.goto("/console/kpi")
    expect(page.locator("h1")).to_contain_text("最近 14 天")
    shot(page, "kpi-zh.png")
    page.goto("/console/")
    expect(page.locator("td.step").first).to_contain_text("第")
    shot(page, "queue-zh.png")

    english = sign_in(browser, contexts, base, "disp", timezone_id="America/New_York")
    english.goto(f"/console/alarms/{alarm_id}")
    shot(english, "alarm-en.png")
    english.goto("/console/kpi")
    shot(english, "kpi-en.png")


def test_claims_two_dispatchers_see_who_has_the_alarm(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    shift: tuple[str, str, Path],
) -> None:  # type: ignore[no-untyped-def]
    """Two dispatchers' browsers: one claims the alarm, the other's live queue shows who has
    it at once; the second takes it over, and the first's queue says so."""
    base, alarm_id, _ = shift
    first = sign_in(browser, contexts, base, "disp")
    second = sign_in(browser, contexts, base, "disp-zh")
    row = f"tr[data-alarm-id='{alarm_id}'] .owner"
    expect(second.locator("#live")).to_have_text("实时", timeout=5000)
    expect(second.locator(row)).to_have_text("无人认领")

    first.goto(f"/console/alarms/{alarm_id}")
    first.click("#claim-form button")
    expect(first.locator("#claim .owner")).to_have_text("yours")
    expect(second.locator(row)).to_have_text("由 disp 处理", timeout=5000)  # live, no reload
    shot(second, "queue-claimed-zh.png")

    second.goto(f"/console/alarms/{alarm_id}")
    expect(second.locator("#claim .owner")).to_have_text("由 disp 处理")
    second.click("#take-over-form button")
    expect(second.locator("#claim .owner")).to_have_text("由您处理")
    shot(second, "alarm-taken-over-zh.png")
    first.goto("/console/")
    expect(first.locator(row)).to_have_text("with disp-zh")
    shot(first, "queue-claimed-en.png")


def test_cue_the_queue_marks_then_pulses_an_alarm_left_unclaimed(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    shift: tuple[str, str, Path],
) -> None:  # type: ignore[no-untyped-def]
    """The browser's own clock moves on (the page is not reloaded): the row's cue rises.
    The live feed and its fetches of fresh rows are held back from the start (a fetch the
    stream's hello began could land after the clock moved): a fresh copy of the rows
    re-syncs the page to the server's clock, which this test's fast-forwarded browser clock
    is ahead of. The queue page itself still loads."""
    base, alarm_id, _ = shift
    context = browser.new_context(base_url=base, locale="en-US")
    contexts.append(context)
    page = context.new_page()
    page.clock.install()
    page.route("**/console/events", lambda route: route.abort())

    def page_not_rows(route) -> None:  # type: ignore[no-untyped-def]
        fragment = route.request.headers.get("accept") == "text/html-fragment"
        route.abort() if fragment else route.continue_()

    page.route("**/console/", page_not_rows)
    page.goto("/console/login")
    page.fill("input[name=username]", "disp")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    row = page.locator(f"tr[data-alarm-id='{alarm_id}']")
    expect(row).to_have_class(re.compile(r"\bcue-0\b"))
    # the queue's script has run (it fills the age cells): its clock offset is taken from
    # the page before the clock moves, not after (the server's own cue-0 is there before it)
    expect(row.locator("td.age[data-since]").first).to_have_text(re.compile(r"\d+:\d\d"))
    page.clock.fast_forward("01:05")
    expect(row).to_have_class(re.compile(r"\bcue-1\b"))
    page.clock.fast_forward("02:00")
    expect(row).to_have_class(re.compile(r"\bcue-2\b"))
    shot(page, "queue-unclaimed-en.png")
