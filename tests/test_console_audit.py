"""The console's audit log of who saw medical data: the alarm a view names must be one of
that elder's (no forged justification, no other team's alarm, no 500 for odd input), and
the admins' page reaches every row (keyset pages) and filters by account, elder and date."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from carehub.clock import FakeClock
from server.console.console_store import ConsoleStore
from server.db import make_engine
from server.schema import alarms, console_audit
from tests.test_console import _client, _seed, csrf, login
from tests.test_console_alarm import _rows

DAY_MS = 86_400_000
NOON_2025_11_24_SHANGHAI = 1_763_956_800_000  # 2025-11-24 12:00 +08:00


@pytest.fixture
def seeded(database_url: str) -> str:
    asyncio.run(_seed(database_url, FakeClock()))
    return database_url


@pytest.fixture
def client(seeded: str) -> Iterator[TestClient]:
    yield from _client(seeded)


def _alarm_of(url: str, elder_id: str) -> str:
    [(alarm_id,)] = _rows(url, sa.select(alarms.c.id).where(alarms.c.elder_id == elder_id))
    return str(alarm_id)


def _audited(url: str) -> list[tuple[object, ...]]:
    query = sa.select(console_audit.c.username, console_audit.c.alarm_id)
    return _rows(url, query.order_by(console_audit.c.id))


def test_a_view_names_only_an_alarm_of_that_elder(client: TestClient, seeded: str) -> None:
    """A forged justification, another elder's (another team's) alarm, 5 000 characters or a
    NUL: 422 with the reason, nothing written to the audit log and no medical data shown."""
    own, others = _alarm_of(seeded, "elder-a"), _alarm_of(seeded, "elder-b")
    assert login(client, "doc-a") == 303
    token = csrf(client)
    for alarm in ("forged: I was asked to", others, "x" * 5000, "a\0b", ""):
        page = client.get("/console/elders/elder-a", params={"alarm": alarm})
        assert page.status_code == 422, (alarm[:20], page.status_code)
        assert "Warfarin" not in page.text
        reveal = client.post(
            "/console/elders/elder-a/key-safe",
            params={"alarm": alarm},
            data={"csrf_token": token},
        )
        assert reveal.status_code == 422 and "4711" not in reveal.text
    assert (
        "is not an alarm of this elder"
        in client.get("/console/elders/elder-a", params={"alarm": others}).text
    )
    assert _audited(seeded) == []
    page = client.get("/console/elders/elder-a", params={"alarm": own})
    assert page.status_code == 200 and "Warfarin" in page.text
    assert client.get("/console/elders/elder-a").status_code == 200  # no alarm: allowed
    assert _audited(seeded) == [("doc-a", own), ("doc-a", None)]


def _audit_views(url: str, views: list[tuple[str, str, int]]) -> None:
    """(username, elder id, epoch ms) rows, as the console writes them."""

    async def go() -> None:
        engine = make_engine(url)
        store = ConsoleStore(engine)
        accounts = {}
        for username in {u for u, _, _ in views}:
            found = await store.credentials(username)
            assert found is not None
            accounts[username] = found[0]
        for username, elder, at_ms in views:
            await store.audit(accounts[username], "medical_notes", elder, None, at_ms)
        await engine.dispose()

    asyncio.run(go())


ROW = re.compile(r'<td class="time" data-ms="(\d+)"')
"""A row's time: unique per row in these tests."""
CELLS = re.compile(
    r"<tr[^>]*>\s*<td class=\"time\"[^>]*>[^<]*</td>\s*" + r"<td[^>]*>([^<]*)</td>\s*" * 3
)
"""A row's account, action and elder."""
OLDER = re.compile(r'<a id="older" href="([^"]+)"')


def _walk(client: TestClient, first: str) -> list[int]:
    """Every row's time the pages show, following the "older" links from `first`."""
    ids, url = [], first
    while True:
        page = client.get(url.replace("&amp;", "&"))
        assert page.status_code == 200, page.text
        ids += [int(i) for i in ROW.findall(page.text)]
        more = OLDER.search(page.text)
        if more is None:
            return ids
        url = more.group(1)


def test_the_audit_log_pages_through_every_row(client: TestClient, seeded: str) -> None:
    times = [NOON_2025_11_24_SHANGHAI + i for i in range(520)]
    _audit_views(seeded, [("disp", "elder-a", at) for at in times])
    assert login(client, "root") == 303
    assert _walk(client, "/console/audit") == times[::-1]  # every row, newest first


def test_the_audit_log_filters_by_account_elder_and_date(client: TestClient, seeded: str) -> None:
    noon = NOON_2025_11_24_SHANGHAI
    _audit_views(
        seeded,
        [
            ("disp", "elder-a", noon - DAY_MS),  # 2025-11-23
            ("doc-a", "elder-a", noon),  # 2025-11-24
            ("disp", "elder-b", noon + 11 * 3_600_000),  # 23:00 on the 24th
            ("disp", "elder-a", noon + 13 * 3_600_000),  # 01:00 on the 25th in Shanghai
        ],
    )
    assert login(client, "root") == 303

    def shown(**params: str) -> list[tuple[str, str]]:
        page = client.get("/console/audit", params=params)
        assert page.status_code == 200, page.text
        return [(user, elder) for user, _, elder in CELLS.findall(page.text)]

    assert len(shown()) == 4
    assert shown(account="doc-a") == [("doc-a", "elder-a")]
    assert shown(elder="elder-b") == [("disp", "elder-b")]
    assert shown(day_from="2025-11-24", day_to="2025-11-24") == [
        ("disp", "elder-b"),
        ("doc-a", "elder-a"),
    ]
    assert shown(account="disp", elder="elder-a", day_from="2025-11-25") == [("disp", "elder-a")]
    assert shown(day_from="2025-11-25", time_zone="UTC") == []  # 17:00 UTC on the 24th
    for bad in (
        {"account": "x" * 5000},
        {"account": "a\0b"},
        {"elder": "e\0"},
        {"day_from": "yesterday"},
        {"time_zone": "Mars/Base"},
        {"before": "0"},
    ):
        assert client.get("/console/audit", params=bad).status_code in (400, 422), bad


def test_odd_ids_in_console_paths_are_refused_not_failed(client: TestClient) -> None:
    """An id of 5 000 characters or with a NUL: 422, not a database error (500)."""
    assert login(client, "disp") == 303
    token = csrf(client)
    for odd in ("x" * 5000, "a%00b"):
        assert client.get(f"/console/elders/{odd}").status_code == 422
        assert client.get(f"/console/alarms/{odd}").status_code == 422
        posted = client.post(f"/console/alarms/{odd}/note", data={"csrf_token": token})
        assert posted.status_code == 422
