"""The hubs' daily summaries on SQLite and PostgreSQL: one per elder and day (a repeat
changes nothing), deleted after `summary_keep_days` by the runtime's job and with the elder;
and the care plan the hub gets carries the check-in, time zone and inactivity switch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from carehub.api_contract import HUB_CONFIG_PATH, SUMMARIES_PATH, DailySummary
from carehub.clock import FakeClock
from carehub.settings import ServerSettings
from server.app import create_app
from server.db import make_engine
from server.directory import DirectoryError, read_directory
from server.main import prepare_database
from server.notifier import ConsoleNotifier
from server.schema import (
    daily_summaries,
    device_homes,
    devices,
    elders,
    emergency_contacts,
    health_reviews,
    hubs,
)
from server.store import HubIdentity, ServerStore
from server.summary_store import (
    DayProblem,
    Recorded,
    SummaryStore,
    day_problem,
    oldest_kept_day,
    prune_forever,
)
from tests.conftest import DIRECTORY

TOKEN = "hub-token-for-summaries-0123"
DAY_MS = 86_400_000
NOW_MS = 1_796_000_000_000  # 2026-11-30 00:53 UTC


def summary(day: str, **figures: object) -> DailySummary:
    return DailySummary.model_validate({"day": day, "complete": True, **figures})


async def world(database_url: str, tmp_path: Path) -> tuple[ServerStore, HubIdentity]:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN))
    settings = ServerSettings(database_url=database_url)  # type: ignore[call-arg]
    await prepare_database(settings, directory)
    store = ServerStore(make_engine(database_url))
    hub = await store.hub_by_token(TOKEN)
    assert hub is not None
    return store, hub


async def test_one_summary_per_elder_and_day_a_repeat_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    store, hub = await world(database_url, tmp_path)
    summaries = SummaryStore(store)
    first = summary("2026-11-28", resting_hr_bpm=64.0, presses=1)
    assert await summaries.record(hub, first, NOW_MS, "2026-01-01") is Recorded.CREATED
    retry = summary("2026-11-28", resting_hr_bpm=99.0, presses=7)  # same day, other figures
    assert await summaries.record(hub, retry, NOW_MS + 1, "2026-01-01") is Recorded.REPEAT
    assert await summaries.record(hub, summary("2026-11-29"), NOW_MS, "2026-01-01") is (
        Recorded.CREATED
    )
    kept = await summaries.for_elder("elder-1")
    assert [(s.day, s.hub_id, s.received_at_ms) for s in kept] == [
        ("2026-11-28", "hub-1", NOW_MS),
        ("2026-11-29", "hub-1", NOW_MS),
    ]
    assert kept[0].figures["resting_hr_bpm"] == 64.0 and kept[0].figures["presses"] == 1
    assert "day" not in kept[0].figures  # the row's key, not a figure
    # a day older than the server keeps is not stored at all
    assert await summaries.record(hub, summary("2025-01-01"), NOW_MS, "2026-01-01") is (
        Recorded.EXPIRED
    )
    assert len(await summaries.for_elder("elder-1")) == 2
    await store.engine.dispose()


async def test_the_retention_job_deletes_summaries_older_than_the_kept_days(
    database_url: str, tmp_path: Path
) -> None:
    store, hub = await world(database_url, tmp_path)
    summaries = SummaryStore(store)
    for day in ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-30"):
        await summaries.record(hub, summary(day), NOW_MS, "2000-01-01")
    # NOW_MS is 2026-11-30 08:53 in Shanghai; keeping 10 days keeps 2026-11-21 … 2026-11-30
    clock = FakeClock(NOW_MS)
    assert oldest_kept_day(clock.now_ms(), 10, "Asia/Shanghai") == "2026-11-21"
    job = asyncio.create_task(prune_forever(summaries, clock, 10, "Asia/Shanghai"))
    try:
        for _ in range(500):  # the job's first pass runs at once; wait for its commit
            if len(await summaries.for_elder("elder-1")) == 3:
                break
            await asyncio.sleep(0.01)
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert [s.day for s in await summaries.for_elder("elder-1")] == [
        "2026-11-21",
        "2026-11-22",
        "2026-11-30",
    ]
    assert await summaries.delete_before("2026-11-22") == 1
    await store.engine.dispose()


async def test_deleting_the_elder_deletes_their_summaries_and_reviews(
    database_url: str, tmp_path: Path
) -> None:
    store, hub = await world(database_url, tmp_path)
    await SummaryStore(store).record(hub, summary("2026-11-28"), NOW_MS, "2000-01-01")
    async with store.engine.begin() as conn:
        await conn.execute(
            health_reviews.insert().values(
                elder_id="elder-1",
                flag="resting_hr_up",
                day="2026-11-28",
                figures={},
                reviewed_by="dr-a",
                reviewed_at_ms=NOW_MS,
            )
        )
    async with store.engine.begin() as conn:  # the elder leaves: their hub goes first
        await conn.execute(devices.delete())
        await conn.execute(device_homes.delete())
        await conn.execute(hubs.delete())
        await conn.execute(emergency_contacts.delete())
        await conn.execute(elders.delete().where(elders.c.id == "elder-1"))
    async with store.engine.connect() as conn:
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(daily_summaries))
        ).scalar() == 0
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(health_reviews))
        ).scalar() == 0
    await store.engine.dispose()


def test_a_summary_day_must_be_a_real_date_not_in_the_future() -> None:
    assert day_problem("2026-11-30", NOW_MS) is None
    assert day_problem("2026-12-01", NOW_MS + 10 * 3_600_000) is None  # today at UTC+14
    assert day_problem("2026-12-01", NOW_MS) is DayProblem.IN_THE_FUTURE
    assert day_problem("2026-02-30", NOW_MS) is DayProblem.NOT_A_DATE


# ------------------------------------------------------------ over HTTP

CARE_PLAN = """
check_in = {{ window_start = "08:00", window_end = "09:30", movement_counts = true }}
inactivity = false
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    directory = tmp_path / "directory.toml"
    text = DIRECTORY.replace(
        'short_address = "Bldg 3-501"\n', 'short_address = "Bldg 3-501"' + CARE_PLAN
    )
    text = text.replace('name = "Team A"\n', 'name = "Team A"\ntime_zone = "Europe/Berlin"\n', 1)
    directory.write_text(text.format(token=TOKEN))
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    settings = ServerSettings(database_url=url, summary_keep_days=30)  # type: ignore[call-arg]
    asyncio.run(prepare_database(settings, directory))
    with TestClient(create_app(settings, notifier=ConsoleNotifier())) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


def _day(days_ago: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() - days_ago * 86_400))


def test_the_route_stores_a_day_once_and_refuses_what_is_not_a_day(api: TestClient) -> None:
    body = {"day": _day(2), "complete": True, "resting_hr_bpm": 61.5, "presses": 2}
    r = api.post(SUMMARIES_PATH, json=body)
    assert r.status_code == 201 and r.json() == {"day": body["day"], "created": True}
    again = api.post(SUMMARIES_PATH, json={**body, "presses": 5})
    assert again.status_code == 200 and again.json() == {"day": body["day"], "created": False}
    old = api.post(SUMMARIES_PATH, json={**body, "day": _day(60)})  # kept: 30 days
    assert old.status_code == 200 and old.json()["created"] is False
    assert api.post(SUMMARIES_PATH, json={**body, "day": "2026-02-30"}).status_code == 422
    assert api.post(SUMMARIES_PATH, json={**body, "day": _day(-3)}).status_code == 422
    raw = api.post(SUMMARIES_PATH, json={**body, "day": _day(3), "hr_samples": [60, 61]})
    assert raw.status_code == 422  # aggregates only: an unknown field is refused
    refused = api.post(SUMMARIES_PATH, json=body, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401


def test_the_hub_care_plan_carries_check_in_time_zone_and_inactivity(api: TestClient) -> None:
    plan = api.get(HUB_CONFIG_PATH).json()["care_plan"]
    assert plan["time_zone"] == "Europe/Berlin"
    assert plan["check_in"] == {
        "window_start": "08:00",
        "window_end": "09:30",
        "movement_counts": True,
    }
    assert plan["inactivity"] is False


@pytest.mark.parametrize(
    "check_in",
    [
        '{ window_start = "8:00" }',
        '{ window_start = "24:00" }',
        '{ window_start = "09:00", window_end = "08:00" }',
    ],
)
def test_a_check_in_window_must_be_hh_mm_in_order(tmp_path: Path, check_in: str) -> None:
    directory = tmp_path / "directory.toml"
    text = DIRECTORY.replace(
        'short_address = "Bldg 3-501"\n', f'short_address = "Bldg 3-501"\ncheck_in = {check_in}\n'
    )
    directory.write_text(text.replace("{token}", TOKEN))
    with pytest.raises(DirectoryError, match="check_in"):
        read_directory(directory)
