"""Issue 24's family doctor's review in a real browser (Playwright driving Debian's
chromium) against a real server process holding 90 days of summaries: the flagged elders
come first, a plot opens, a flag is marked reviewed with a note (and stops sorting first),
and the follow-up record prints (print media: no navigation or buttons; a PDF is made).
Screenshots and the PDF go to tests/artifacts/ (not committed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from server.console.console_store import add_account_to
from server.db import make_engine
from server.health_flags import FlagKind
from tests.console_server import console_server
from tests.summary_series import insert_summaries, series
from tests.test_console_browser import browser, contexts  # noqa: F401  (fixtures)
from tests.test_console_shift_browser import sign_in

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
ARTIFACTS = Path(__file__).parent / "artifacts"
YESTERDAY = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date() - dt.timedelta(days=1)
NOTE = "Phoned the daughter: a chest infection, GP visit booked"

pytestmark = pytest.mark.integration


async def _team_with_summaries(url: str) -> None:
    """Team A: Zhang San (the directory's elder-1) with a rising resting heart rate, Li Si
    up more at night, Aaron Steady well (his name sorts first); a doctor of team A."""
    await add_account_to(url, "doc", "correct horse battery", "doctor", "team-a", "en", 0)
    engine = make_engine(url)
    try:
        await insert_summaries(
            engine, "elder-1", "hub-1", series(YESTERDAY, worse=[FlagKind.RESTING_HR_UP])
        )
        await insert_summaries(
            engine, "elder-2", "hub-1", series(YESTERDAY, worse=[FlagKind.NIGHT_RISES_UP])
        )
        await insert_summaries(engine, "elder-3", "hub-1", series(YESTERDAY))
    finally:
        await engine.dispose()


@pytest.fixture
def review_server(tmp_path: Path) -> Iterator[str]:
    with console_server(tmp_path, "disp") as base:
        with sqlite3.connect(tmp_path / "server.db") as db:
            db.executemany(
                "INSERT INTO elders (id, team_id, name, short_address) VALUES (?, 'team-a', ?, ?)",
                [("elder-2", "Li Si", "Bldg 4-202"), ("elder-3", "Aaron Steady", "Bldg 1-101")],
            )
        url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
        with ThreadPoolExecutor(1) as worker:  # Playwright's event loop owns this thread
            worker.submit(asyncio.run, _team_with_summaries(url)).result()
        yield base


def test_the_doctor_reviews_a_flag_and_prints_the_follow_up_record(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    review_server: str,
) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, contexts, review_server, "doc")
    page.click("#nav-review")
    expect(page.locator("#review-team")).to_have_text("Team A")
    sections = page.locator("section.review-elder")
    expect(sections).to_have_count(3)
    names = sections.locator("h2 .name").all_inner_texts()
    opened = [sections.nth(i).get_attribute("data-open") for i in range(3)]
    assert names == ["Li Si", "Zhang San", "Aaron Steady"]  # flagged first, then by name
    assert opened == ["yes", "yes", "no"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-team.png"), full_page=True)

    li = page.locator("#elder-elder-2")
    expect(li.locator(".flag strong")).to_have_text("More nights up")
    plot = li.locator("details.plot svg")
    expect(plot).to_be_hidden()
    li.locator("details.plot summary").click()  # opens the plot
    expect(plot).to_be_visible()
    assert plot.locator("circle.day").count() == 90
    expect(plot.locator("line.limit")).to_have_count(1)

    li.locator("input[name=note]").fill(NOTE)
    li.locator(".mark-reviewed button").click()
    page.wait_for_load_state()
    li = page.locator("#elder-elder-2")
    expect(li).to_have_attribute("data-open", "no")
    expect(li.locator(".review")).to_contain_text("Reviewed by doc")
    expect(li.locator(".review .note")).to_have_text(NOTE)
    names = page.locator("section.review-elder h2 .name").all_inner_texts()
    assert names == ["Zhang San", "Li Si", "Aaron Steady"]  # reviewed: no longer first
    page.screenshot(path=str(ARTIFACTS / "review-reviewed.png"), full_page=True)

    li.locator("a.record-link").click()
    page.wait_for_load_state()
    record = page.locator("#follow-up-record")
    expect(record.locator("h1")).to_have_text("Follow-up record")
    expect(record.locator("#record-elder")).to_contain_text("Li Si")
    expect(record.locator("#record-history")).to_contain_text(NOTE)
    expect(record.locator("section.flag svg")).to_be_visible()  # the plot is on the record
    expect(page.locator("#print")).to_be_visible()
    page.emulate_media(media="print")  # what the browser's print shows
    expect(page.locator("header.bar")).to_be_hidden()
    expect(page.locator("#print")).to_be_hidden()
    expect(record.locator("#record-history")).to_be_visible()
    expect(record.locator(".signature")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "follow-up-record-print.png"), full_page=True)
    pdf = page.pdf(path=str(ARTIFACTS / "follow-up-record.pdf"), format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
