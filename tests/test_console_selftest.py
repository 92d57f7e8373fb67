"""The console's side of installation: the health board lists homes whose last self-test
failed or which never had one; test alarms carry a TEST badge in the queue and on their
page; installers and admins (not doctors) make enrollment codes on the households page."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi.testclient import TestClient

from carehub.alarm_lifecycle import AlarmKind
from carehub.api_contract import AlarmUpload, SelftestCheck, SelftestReport
from server.console.selftest_board import homes_to_selftest
from server.db import make_engine
from server.household_store import HouseholdStore
from server.schema import alarms
from server.store import HubIdentity, ServerStore
from tests.test_console import client, csrf, db_url, login  # noqa: F401 (fixtures)


def _report(report_id: str, passed: bool, at_ms: int) -> SelftestReport:
    return SelftestReport(
        report_id=report_id,
        started_at_ms=at_ms - 1000,
        finished_at_ms=at_ms,
        passed=passed,
        checks=[
            SelftestCheck(name="button pressed", passed=True),
            SelftestCheck(name="test SMS", passed=passed),
        ],
    )


async def _selftests(url: str) -> None:
    """hub-a's home fails, then hub-b's home passes; a test alarm from hub-a."""
    engine = make_engine(url)
    try:
        homes = HouseholdStore(engine)
        await homes.record_selftest(HubIdentity("hub-a", "elder-a"), _report("s1", True, 1000), 1)
        await homes.record_selftest(HubIdentity("hub-a", "elder-a"), _report("s2", False, 2000), 2)
        await homes.record_selftest(HubIdentity("hub-b", "elder-b"), _report("s3", True, 3000), 3)
        upload = AlarmUpload(
            alarm_id=uuid.uuid4().hex,
            device_id="btn-a",
            kind=AlarmKind.BUTTON,
            raised_at_ms=5000,
            test=True,
        )
        await ServerStore(engine).store_alarm(HubIdentity("hub-a", "elder-a"), upload, 5000)
    finally:
        await engine.dispose()


async def test_homes_listed_until_their_latest_selftest_passed(db_url: str) -> None:  # noqa: F811
    engine = make_engine(db_url)
    try:
        before = await homes_to_selftest(engine)
        assert [(h.subject, h.since_ms, h.failed) for h in before] == [
            ("elder-a", None, False),  # the directory's homes: never self-tested
            ("elder-b", None, False),
        ]
        await _selftests(db_url)
        after = await homes_to_selftest(engine)
        assert [(h.subject, h.since_ms, h.detail, h.where) for h in after] == [
            ("elder-a", 2000, "test SMS", "A 1-101")  # failed last; elder-b's latest passed
        ]
        assert await homes_to_selftest(engine, "team-b") == []
    finally:
        await engine.dispose()


def test_board_and_test_badge_in_the_console(client: TestClient, db_url: str) -> None:  # noqa: F811
    asyncio.run(_selftests(db_url))
    assert login(client, "inst") == 303
    board = client.get("/console/health").text
    section = board.split('id="selftest"', 1)[1].split("</section>", 1)[0]
    assert "elder-a" in section and "test SMS" in section and "elder-b" not in section
    assert login(client, "disp") == 303
    queue = client.get("/console/").text
    assert queue.count('class="badge test"') == 1

    async def test_alarm_id() -> str:
        engine = make_engine(db_url)
        try:
            async with engine.connect() as conn:
                found = (
                    await conn.execute(alarms.select().where(alarms.c.is_test.is_(True)))
                ).first()
            assert found is not None
            return str(found.id)
        finally:
            await engine.dispose()

    page = client.get(f"/console/alarms/{asyncio.run(test_alarm_id())}").text
    assert 'class="badge test"' in page and "TEST" in page


@pytest.mark.parametrize(("user", "allowed"), [("inst", True), ("root", True), ("doc-a", False)])
def test_installers_make_codes_on_the_households_page(
    client: TestClient,  # noqa: F811
    user: str,
    allowed: bool,
) -> None:
    assert login(client, user) == 303
    page = client.get("/console/households", headers={"Accept": "text/html"})
    if not allowed:
        assert page.status_code == 403
        return
    assert page.status_code == 200 and 'data-household="elder-a"' in page.text
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    path = "/console/households/elder-a/enrollment-code"
    assert client.post(path).status_code == 403  # a session alone: no CSRF token
    made = client.post(path, data={"csrf_token": token})
    assert made.status_code == 200, made.text
    code = made.text.split('<code id="enroll-code">', 1)[1].split("<", 1)[0]
    assert len(code) == 14 and code.count("-") == 2
    missing = client.post("/console/households/nowhere/enrollment-code", data={"csrf_token": token})
    assert missing.status_code == 404
