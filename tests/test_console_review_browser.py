"""Issue 24's family doctor's review in a real browser (Playwright driving Debian's
chromium) against a real server process holding 90 days of summaries: the flagged elders
come first, a plot opens, a flag is marked reviewed with a note (and stops sorting first),
and the follow-up record prints (print media: no navigation or buttons; a PDF is made).
Screenshots and the PDF go to tests/artifacts/ (not committed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from carehub.settings import TrendThresholds
from cli.summary_days import home_days
from server.console.console_store import add_account_to
from server.db import make_engine
from server.health_flags import FIGURE, FlagKind, daily_value
from tests.conftest import DIRECTORY
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


# ------------------------------------------------------------ the sim's homes, the real route

HUB_2_TOKEN = secrets.token_urlsafe(24)
TWO_HOMES = (
    DIRECTORY
    + f"""
[[elders]]
id = "elder-2"
team = "team-a"
name = "Li Si"
short_address = "Bldg 4-202"

[[hubs]]
id = "hub-2"
elder = "elder-2"
token = "{HUB_2_TOKEN}"
"""
)
WORSE_SEED, STEADY_SEED = 5, 6


def _sim(base: str, token: str, *options: str) -> None:
    """`carehub sim summaries` as its own process: 90 days up to yesterday, as the hub."""
    command = [sys.executable, "-m", "cli", "sim", "summaries", "--server", base, *options]
    done = subprocess.run(
        command,
        env={**os.environ, "CAREHUB_HUB_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "90 stored, 0 already there" in done.stdout, done.stdout


@pytest.fixture
def simulated_homes(tmp_path: Path) -> Iterator[str]:
    """Zhang San's home (hub-1) deteriorating, Li Si's (hub-2) steady, both posted by the
    sim through ``POST /api/v1/hub/summaries``; a doctor of their team."""
    hub_1 = secrets.token_urlsafe(24)
    with console_server(tmp_path, "disp", hub_1, TWO_HOMES) as base:
        url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
        add = add_account_to(url, "doc", "correct horse battery", "doctor", "team-a", "en", 0)
        with ThreadPoolExecutor(1) as worker:  # Playwright's event loop owns this thread
            worker.submit(asyncio.run, add).result()
        _sim(base, hub_1, "--deteriorate", "--seed", str(WORSE_SEED))
        _sim(base, HUB_2_TOKEN, "--seed", str(STEADY_SEED))
        yield base


def test_the_sims_deteriorating_home_is_flagged_first_reviewed_and_printed(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    simulated_homes: str,
) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, contexts, simulated_homes, "doc")
    page.click("#nav-review")
    sections = page.locator("section.review-elder")
    expect(sections).to_have_count(2)
    names = sections.locator("h2 .name").all_inner_texts()
    assert names == ["Zhang San", "Li Si"]  # flagged first, though "Li" sorts first
    zhang, li = page.locator("#elder-elder-1"), page.locator("#elder-elder-2")
    expect(zhang).to_have_attribute("data-open", "yes")
    expect(li).to_have_attribute("data-open", "no")
    expect(li.locator(".flag")).to_have_count(0)
    expect(zhang.locator(".flag")).to_have_count(len(FlagKind))
    flagged = {zhang.locator(".flag").nth(i).get_attribute("data-flag") for i in range(6)}
    assert flagged == {k.value for k in FlagKind}  # every flag, with default thresholds
    page.screenshot(path=str(ARTIFACTS / "review-sim-team.png"), full_page=True)

    hr = zhang.locator('.flag[data-flag="resting_hr_up"]')
    expect(hr.locator("strong")).to_have_text("Resting heart rate up")
    plot = hr.locator("details.plot svg")
    hr.locator("details.plot summary").click()
    expect(plot).to_be_visible()
    days = home_days(90, YESTERDAY, WORSE_SEED, deteriorating=True)
    counted = [daily_value(FlagKind.RESTING_HR_UP, d, TrendThresholds()) for d in days]
    assert plot.locator("circle.day").count() == sum(v is not None for v in counted)
    expect(hr.locator("figure")).to_have_attribute("data-figure", FIGURE[FlagKind.RESTING_HR_UP])

    hr.locator("input[name=note]").fill(NOTE)
    hr.locator(".mark-reviewed button").click()
    page.wait_for_load_state()
    hr = page.locator('#elder-elder-1 .flag[data-flag="resting_hr_up"]')
    expect(hr.locator(".review .note")).to_have_text(NOTE)
    expect(page.locator("#elder-elder-1")).to_have_attribute("data-open", "yes")  # five open

    page.locator("#elder-elder-1 a.record-link").click()
    page.wait_for_load_state()
    record = page.locator("#follow-up-record")
    expect(record.locator("#record-elder")).to_contain_text("Zhang San")
    expect(record.locator("#record-history")).to_contain_text(NOTE)
    expect(record.locator("section.flag svg")).to_have_count(6)
    page.emulate_media(media="print")
    expect(page.locator("#print")).to_be_hidden()
    pdf = page.pdf(path=str(ARTIFACTS / "follow-up-record-sim.pdf"), format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
