"""The family doctor's review pages over HTTP (server/console/review_routes.py): flagged
elders first, a doctor's own team only, no installer, every view of an elder's flags or
follow-up record in the audit log, and a review that stops the flag sorting first."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from carehub.clock import FakeClock
from server.db import make_engine
from server.health_flags import FlagKind
from server.schema import console_audit, elders, health_reviews
from tests.summary_series import insert_summaries, series
from tests.test_console import _client, _seed, csrf, login
from tests.test_console_alarm import _rows

YESTERDAY = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date() - dt.timedelta(days=1)


async def _seed_summaries(url: str) -> None:
    """elder-a (team-a) with a rising resting HR, a steady team-a elder whose name sorts
    first, and elder-b (team-b) flagged too."""
    await _seed(url, FakeClock())
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                elders.insert().values(id="elder-c", team_id="team-a", name="Aaron Steady")
            )
        await insert_summaries(
            engine, "elder-a", "hub-a", series(YESTERDAY, worse=[FlagKind.RESTING_HR_UP])
        )
        await insert_summaries(engine, "elder-c", "hub-a", series(YESTERDAY))
        await insert_summaries(
            engine, "elder-b", "hub-b", series(YESTERDAY, worse=[FlagKind.ACTIVITY_DOWN])
        )
    finally:
        await engine.dispose()


@pytest.fixture
def seeded(database_url: str) -> str:
    asyncio.run(_seed_summaries(database_url))
    return database_url


@pytest.fixture
def client(seeded: str) -> Iterator[TestClient]:
    yield from _client(seeded)


def _audited(url: str) -> list[tuple[object, ...]]:
    c = console_audit.c
    return _rows(url, sa.select(c.username, c.action, c.elder_id).order_by(c.id))


def _order(page: str) -> list[tuple[str, str]]:
    """(elder id, open?) of each elder section, in page order."""
    return re.findall(r'data-elder-id="([^"]+)" data-open="(yes|no)"', page)


def test_a_doctor_sees_their_team_flagged_first_and_each_view_is_audited(
    client: TestClient, seeded: str
) -> None:
    assert login(client, "doc-a") == 303
    page = client.get("/console/review")
    assert page.status_code == 200
    assert _order(page.text) == [("elder-a", "yes"), ("elder-c", "no")]  # flagged first
    assert "Zhao B" not in page.text  # another team's elder
    assert "Resting heart rate up" in page.text
    assert "Median of the last 14 days with data: 78 bpm" in page.text
    assert 'class="limit"' in page.text  # the plot draws the flag's limit
    # the flagged elder's view is audited; the steady elder's name alone is not
    assert _audited(seeded) == [("doc-a", "health_review", "elder-a")]
    assert 'href="/console/review"' in client.get("/console/elders").text  # the nav link


def test_another_teams_elders_are_refused_and_nothing_of_theirs_is_audited(
    client: TestClient, seeded: str
) -> None:
    assert login(client, "doc-a") == 303
    token = csrf(client)
    assert client.get("/console/review", params={"team": "team-b"}).status_code == 404
    assert client.get("/console/review/elders/elder-b").status_code == 404
    marked = client.post(
        f"/console/review/elders/elder-b/flags/{FlagKind.ACTIVITY_DOWN.value}",
        data={"csrf_token": token, "note": "x"},
    )
    assert marked.status_code == 404
    assert client.get("/console/review/elders/no-such").status_code == 404
    assert _audited(seeded) == []
    assert _rows(seeded, sa.select(health_reviews.c.id)) == []


def test_an_installer_sees_none_of_it(client: TestClient, seeded: str) -> None:
    assert login(client, "inst") == 303
    assert client.get("/console/review").status_code == 403
    assert client.get("/console/review/elders/elder-a").status_code == 403
    assert 'href="/console/review"' not in client.get("/console/health").text
    assert _audited(seeded) == []


def test_a_dispatcher_sees_any_team_read_only(client: TestClient, seeded: str) -> None:
    assert login(client, "disp") == 303
    token = csrf(client)
    first = client.get("/console/review").text
    assert _order(first) == [("elder-a", "yes"), ("elder-c", "no")]  # the first team
    other = client.get("/console/review", params={"team": "team-b"}).text
    assert _order(other) == [("elder-b", "yes")]
    assert "Active minutes falling" in other and "mark-reviewed" not in other
    marked = client.post(
        f"/console/review/elders/elder-b/flags/{FlagKind.ACTIVITY_DOWN.value}",
        data={"csrf_token": token, "note": "x"},
    )
    assert marked.status_code == 403  # the family doctors review
    assert client.get("/console/review", params={"team": "team-z"}).status_code == 404
    assert _audited(seeded) == [
        ("disp", "health_review", "elder-a"),
        ("disp", "health_review", "elder-b"),
    ]


def test_a_reviewed_flag_shows_who_and_note_and_stops_sorting_first(
    client: TestClient, seeded: str
) -> None:
    asyncio.run(_more_flagged(seeded))
    assert login(client, "doc-a") == 303
    token = csrf(client)
    assert [e for e, _ in _order(client.get("/console/review").text)][:2] == [
        "elder-a",
        "elder-d",
    ]
    url = f"/console/review/elders/elder-a/flags/{FlagKind.RESTING_HR_UP.value}"
    done = client.post(
        url,
        data={"csrf_token": token, "note": "Phoned: a cold, rechecking Friday"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console/review?team=team-a#elder-elder-a"
    [(who, flag, day, figures, note)] = _rows(
        seeded,
        sa.select(
            health_reviews.c.reviewed_by,
            health_reviews.c.flag,
            health_reviews.c.day,
            health_reviews.c.figures,
            health_reviews.c.note,
        ),
    )
    assert (who, flag, day) == ("doc-a", "resting_hr_up", YESTERDAY.isoformat())
    assert figures["recent"] == 78.0 and figures["limit"] == 74.0  # type: ignore[index]
    assert note == "Phoned: a cold, rechecking Friday"
    page = client.get("/console/review").text
    # reviewed: after the elder whose flag is still open, before the steady one
    assert _order(page) == [("elder-d", "yes"), ("elder-a", "no"), ("elder-c", "no")]
    assert "Reviewed by doc-a" in page and "Phoned: a cold, rechecking Friday" in page
    # a flag the summaries do not raise cannot be marked
    gone = client.post(
        f"/console/review/elders/elder-a/flags/{FlagKind.ACTIVITY_DOWN.value}",
        data={"csrf_token": token},
    )
    assert gone.status_code == 409
    assert client.post(url, data={"note": "no token"}).status_code == 403


async def _more_flagged(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                elders.insert().values(id="elder-d", team_id="team-a", name="Xu Second")
            )
        await insert_summaries(
            engine, "elder-d", "hub-a", series(YESTERDAY, worse=[FlagKind.NIGHT_RISES_UP])
        )
    finally:
        await engine.dispose()


def test_the_follow_up_record_lists_flags_and_reviews_and_is_audited(
    client: TestClient, seeded: str
) -> None:
    assert login(client, "doc-a") == 303
    token = csrf(client)
    client.post(
        f"/console/review/elders/elder-a/flags/{FlagKind.RESTING_HR_UP.value}",
        data={"csrf_token": token, "note": "seen at home"},
    )
    before = len(_audited(seeded))
    record = client.get("/console/review/elders/elder-a")
    assert record.status_code == 200
    text = record.text
    assert "Follow-up record" in text and "Wang A" in text
    assert "Resting heart rate up" in text and "seen at home" in text
    assert "@media print" not in text and 'id="print"' in text  # print CSS is in console.css
    assert _audited(seeded)[before:] == [("doc-a", "health_record", "elder-a")]
