"""`carehub sim summaries`: 90 plausible days of one home from a seeded generator, a
deteriorating home drifting as the review's flags look for, posted as the hub to a real
server process (stored once: a second run stores nothing)."""

from __future__ import annotations

import asyncio
import secrets
import statistics
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carehub.api_contract import DailySummary
from cli.main import app
from cli.summary_days import DRIFT_DAYS, home_days
from harness.broker import free_port
from harness.processes import Child, wait_http_ok
from server.db import make_engine
from server.store import ServerStore
from server.summary_store import SummaryStore
from tests.conftest import DIRECTORY

LAST = date(2026, 11, 30)


def _typical(days: list[DailySummary], figure: Callable[[DailySummary], float | None]) -> float:
    return statistics.median(v for v in map(figure, days) if v is not None)


def test_ninety_days_seeded_and_a_deterioration_that_shows_in_the_last_weeks() -> None:
    stable = home_days(90, LAST, seed=7)
    assert [s.day for s in stable] == [
        (LAST - timedelta(days=89 - i)).isoformat() for i in range(90)
    ]
    assert home_days(90, LAST, seed=7) == stable  # pure: the same seed, the same days
    assert home_days(90, LAST, seed=8) != stable
    worse = home_days(90, LAST, seed=7, deteriorating=True)
    assert worse[: 90 - DRIFT_DAYS] == stable[: 90 - DRIFT_DAYS]  # the same home until then
    before, recent = slice(0, 60), slice(-14, None)
    for days, drifts in ((stable, False), (worse, True)):

        def change(figure: Callable[[DailySummary], float | None], d: list = days) -> float:
            return _typical(d[recent], figure) - _typical(d[before], figure)

        hr = change(lambda s: s.resting_hr_bpm)
        low_spo2 = change(lambda s: s.night_spo2_below_90_min)
        active = change(lambda s: s.active_min) / _typical(days[before], lambda s: s.active_min)
        rises = change(lambda s: s.night_rises)
        near_falls = sum(s.near_falls for s in days[recent])
        worn = change(lambda s: s.worn_h)
        if drifts:
            assert hr >= 6 and low_spo2 >= 30 and active <= -0.25
            assert rises >= 1 and near_falls >= 2 and worn <= -4
        else:
            assert abs(hr) < 2 and abs(low_spo2) < 10 and abs(active) < 0.15
            assert abs(rises) < 0.8 and near_falls <= 2 and abs(worn) < 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A real server process on SQLite: its base URL, hub-1's token and its database URL."""
    token = secrets.token_urlsafe(24)
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token=token))
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    port = free_port()
    child = Child(
        "server",
        ["server", "--directory", str(tmp_path / "directory.toml")],
        {"CAREHUB_DATABASE_URL": url, "CAREHUB_PORT": str(port)},
        tmp_path / "server.log",
    ).start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/healthz", 60, child)
        yield base, token, url
    finally:
        child.stop()


async def _stored(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        return [s.day for s in await SummaryStore(ServerStore(engine)).for_elder("elder-1")]
    finally:
        await engine.dispose()


def test_the_sim_posts_ninety_days_as_the_hub_once(server: tuple[str, str, str]) -> None:
    base, token, url = server
    yesterday = date.today() - timedelta(days=1)
    args = ["sim", "summaries", "--server", base, "--hub-token", token, "--days", "90"]
    args += ["--until", yesterday.isoformat(), "--deteriorate", "--seed", "3"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "90 stored, 0 already there" in first.output
    days = asyncio.run(_stored(url))
    assert len(days) == 90 and days[-1] == yesterday.isoformat()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 stored, 90 already there" in again.output
    wrong = CliRunner().invoke(app, [*args[:4], "--hub-token", "not-a-hub-token-0000"])
    assert wrong.exit_code == 1 and "refused (401)" in wrong.output
