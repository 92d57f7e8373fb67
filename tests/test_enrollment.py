"""Households, enrollment, device registration and self-tests, over SQLite and PostgreSQL:
a code enrolls one hub once (also when raced), reused, expired and unknown codes and wrong
tokens are refused with distinct answers, attempts are rate-limited, and a hub acts only on
its own household's devices and alarms."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carehub.admin_contract import ADMIN_PREFIX
from carehub.api_contract import (
    ALARM_REPORTS_PATH,
    ALARMS_PATH,
    ENROLL_PATH,
    HUB_CONFIG_PATH,
    HUB_DEVICES_PATH,
    SELFTESTS_PATH,
)
from carehub.clock import FakeClock
from carehub.settings import ServerSettings
from server.app import create_app
from server.db import make_engine
from server.enrollment import (
    ALPHABET,
    CodeRefusal,
    EnrollLimits,
    code_hash,
    enroll_source,
    new_code,
    retry_after_s,
    why_refused,
)
from server.household_store import CodeRefused, HouseholdStore
from server.main import prepare_database
from server.notifier import ConsoleNotifier
from tests.conftest import DIRECTORY

TOKEN = "hub-token-for-enrollment-tests-0123"
ADMIN = "admin-token-for-enrollment-tests"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
SECOND_ELDER = """
[[elders]]
id = "elder-2"
team = "team-a"
name = "Li Si"
short_address = "Bldg 9-101"
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------ the pure core


def test_codes_are_short_grouped_and_hashed_whatever_the_case() -> None:
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        groups = code.split("-")
        assert [len(g) for g in groups] == [4, 4, 4]
        assert set("".join(groups)) <= set(ALPHABET)
    code = next(iter(codes))
    assert code_hash(code) == code_hash(code.lower().replace("-", " "))
    assert code_hash(code) != code_hash(new_code())


def test_a_refused_code_says_why() -> None:
    assert why_refused(None, None, 10) is CodeRefusal.UNKNOWN
    assert why_refused(5, 100, 10) is CodeRefusal.USED
    assert why_refused(5, 8, 10) is CodeRefusal.USED
    assert why_refused(None, 8, 10) is CodeRefusal.EXPIRED


def test_retry_after_frees_when_the_oldest_counted_attempt_leaves_the_window() -> None:
    limits = EnrollLimits(per_source=3, per_household=5, window_ms=60_000)
    assert retry_after_s([1000, 2000], [1000, 2000], limits, 3000) is None
    # the source's third attempt (at 1000) leaves the window at 61 000: 58 s from 3000
    assert retry_after_s([1000, 2000, 2500], [1000, 2000, 2500], limits, 3000) == 58
    # the household's limit: six counted, so two must leave; the second oldest at 60 500
    household = [0, 500, 1000, 1500, 2000, 2500]
    assert retry_after_s([], household, limits, 3000) == 58  # 57.5 s, rounded up
    assert retry_after_s([0], [0], EnrollLimits(1, 5, 1000), 999) == 1  # never 0


def test_a_source_is_an_ipv4_address_or_an_ipv6_64() -> None:
    assert enroll_source("203.0.113.9") == "203.0.113.9"
    assert enroll_source("::ffff:203.0.113.9") == "203.0.113.9"
    assert enroll_source("2001:db8:1:2:aaaa::1") == enroll_source("2001:db8:1:2::ffff")
    assert enroll_source("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert enroll_source("2001:db8:1:3::1") != enroll_source("2001:db8:1:2::1")
    assert enroll_source("testclient") == "testclient"


# ------------------------------------------------------------ the API


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, FakeClock]]:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN) + SECOND_ELDER)
    settings = ServerSettings(
        database_url=database_url,  # type: ignore[arg-type]
        admin_token=ADMIN,  # type: ignore[arg-type]
        enroll_max_attempts_per_client=20,
    )
    asyncio.run(prepare_database(settings, directory))
    clock = FakeClock()
    with TestClient(create_app(settings, notifier=ConsoleNotifier(), clock=clock)) as client:
        yield client, clock


def new_household(client: TestClient, household_id: str = "home-2") -> None:
    r = client.post(
        f"{ADMIN_PREFIX}/households",
        json={"id": household_id, "address": "Road 9, flat 101"},
        headers=ADMIN_AUTH,
    )
    assert r.status_code == 201, r.text
    r = client.put(f"{ADMIN_PREFIX}/households/{household_id}/elders/elder-2", headers=ADMIN_AUTH)
    assert r.status_code == 200, r.text
    r = client.put(
        f"{ADMIN_PREFIX}/households/{household_id}/team",
        json={"team_id": "team-a"},
        headers=ADMIN_AUTH,
    )
    assert r.status_code == 200 and r.json()["elder_ids"] == ["elder-2"], r.text


def make_code(client: TestClient, household_id: str = "home-2") -> str:
    r = client.post(
        f"{ADMIN_PREFIX}/households/{household_id}/enrollment-codes", headers=ADMIN_AUTH
    )
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


def enroll(client: TestClient, code: str) -> tuple[int, dict]:
    r = client.post(ENROLL_PATH, json={"code": code, "hardware_id": "pi-0042", "version": "1"})
    return r.status_code, r.json()


def test_a_code_enrolls_one_hub_and_is_refused_after(
    server: tuple[TestClient, FakeClock],
) -> None:
    client, clock = server
    new_household(client)
    code = make_code(client)
    status, granted = enroll(client, code.lower())  # typed by hand: case does not matter
    assert status == 201, granted
    assert granted["household_id"] == "home-2" and granted["hub_id"].startswith("hub-")
    config = client.get(HUB_CONFIG_PATH, headers=bearer(granted["token"]))
    assert config.status_code == 200
    assert config.json()["elder_id"] == "elder-2" and config.json()["devices"] == []

    status, again = enroll(client, code)
    assert status == 409 and "used already" in again["detail"]
    status, unknown = enroll(client, "ABCD-EFGH-JKMN")
    assert status == 404 and "unknown enrollment code" in unknown["detail"]
    late = make_code(client)
    clock.advance(30 * 60 + 1)  # the default lifetime is 30 min
    status, expired = enroll(client, late)
    assert status == 410 and "expired" in expired["detail"]

    wrong = client.get(HUB_CONFIG_PATH, headers=bearer(granted["token"] + "x"))
    assert wrong.status_code == 401 and "unknown hub token" in wrong.json()["detail"]
    assert client.get(HUB_CONFIG_PATH).status_code == 401


def test_a_code_needs_a_household_with_an_elder(server: tuple[TestClient, FakeClock]) -> None:
    client, _ = server
    client.post(f"{ADMIN_PREFIX}/households", json={"id": "empty"}, headers=ADMIN_AUTH)
    r = client.post(f"{ADMIN_PREFIX}/households/empty/enrollment-codes", headers=ADMIN_AUTH)
    assert r.status_code == 409 and "no elder" in r.json()["detail"]
    r = client.post(f"{ADMIN_PREFIX}/households/nowhere/enrollment-codes", headers=ADMIN_AUTH)
    assert r.status_code == 404
    r = client.post(f"{ADMIN_PREFIX}/households/empty/enrollment-codes")
    assert r.status_code == 401


def test_enrollment_attempts_are_rate_limited(database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN))
    settings = ServerSettings(
        database_url=database_url,  # type: ignore[arg-type]
        enroll_max_attempts_per_client=3,
        enroll_window_s=60,
    )
    asyncio.run(prepare_database(settings, directory))
    clock = FakeClock()
    with TestClient(create_app(settings, clock=clock)) as client:
        for _ in range(3):
            assert enroll(client, "ABCD-EFGH-JKMN")[0] == 404
            clock.advance(1)
        r = client.post(
            ENROLL_PATH, json={"code": "ABCD-EFGH-JKMN", "hardware_id": "x", "version": "1"}
        )
        assert (
            r.status_code == 429 and r.headers["Retry-After"] == "57"
        )  # the first leaves the window 60 s after it
        assert "too many enrollment attempts" in r.json()["detail"]
        clock.advance(56)
        assert (
            client.post(
                ENROLL_PATH, json={"code": "ABCD-EFGH-JKMN", "hardware_id": "x", "version": "1"}
            ).status_code
            == 429
        )
        clock.advance(1)
        assert enroll(client, "ABCD-EFGH-JKMN")[0] == 404


def from_peer(app: Any) -> Any:
    """`app`, seeing each request come from the address in its ``x-test-peer`` header (as
    uvicorn would from the TCP peer)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        peer = dict(scope.get("headers", [])).get(b"x-test-peer")
        if scope["type"] == "http" and peer:
            scope = {**scope, "client": (peer.decode(), 40000)}
        await app(scope, receive, send)

    return wrapped


def attempt(client: TestClient, code: str, peer: str) -> int:
    body = {"code": code, "hardware_id": "pi-0042", "version": "1"}
    return client.post(ENROLL_PATH, json=body, headers={"x-test-peer": peer}).status_code


def test_a_few_sources_hammering_lock_out_no_other_source(
    database_url: str, tmp_path: Path
) -> None:
    """41 addresses at their limit of 5 (205 attempts) once made every installer in the
    district wait: the old global limit was 200."""
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN) + SECOND_ELDER)
    settings = ServerSettings(
        database_url=database_url,  # type: ignore[arg-type]
        admin_token=ADMIN,  # type: ignore[arg-type]
        enroll_max_attempts_per_client=5,
    )
    asyncio.run(prepare_database(settings, directory))
    app = create_app(settings, notifier=ConsoleNotifier(), clock=FakeClock())
    with TestClient(from_peer(app)) as client:
        for n in range(1, 42):
            statuses = [attempt(client, "ABCD-EFGH-JKMN", f"10.0.0.{n}") for _ in range(6)]
            assert statuses == [404] * 5 + [429], (n, statuses)
        # an IPv6 subscriber's addresses are one source: its /64
        v6 = [attempt(client, "ABCD-EFGH-JKMN", f"2001:db8:0:1::{n}") for n in range(1, 7)]
        assert v6 == [404] * 5 + [429]
        new_household(client)
        code = make_code(client)
        assert attempt(client, code, "192.0.2.7") == 201  # the installer is not locked out


def test_a_households_dead_codes_are_limited_its_live_code_never(
    database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN) + SECOND_ELDER)
    settings = ServerSettings(
        database_url=database_url,  # type: ignore[arg-type]
        admin_token=ADMIN,  # type: ignore[arg-type]
        enroll_max_attempts_per_household=3,
    )
    asyncio.run(prepare_database(settings, directory))
    app = create_app(settings, notifier=ConsoleNotifier(), clock=FakeClock())
    with TestClient(from_peer(app)) as client:
        new_household(client)
        used = make_code(client)
        assert attempt(client, used, "10.0.0.1") == 201
        statuses = [attempt(client, used, f"10.0.1.{n}") for n in range(1, 6)]
        assert statuses == [409, 409, 409, 429, 429]  # from five sources: one household
        assert attempt(client, "ABCD-EFGH-JKMN", "10.0.1.5") == 404  # its source is not held
        assert attempt(client, make_code(client), "10.0.1.6") == 201  # a live code redeems


def test_a_hub_acts_only_on_its_own_household(server: tuple[TestClient, FakeClock]) -> None:
    client, clock = server
    new_household(client)
    _, granted = enroll(client, make_code(client))
    mine, theirs = bearer(granted["token"]), bearer(TOKEN)  # hub-1 is elder-1's household
    put = client.put(f"{HUB_DEVICES_PATH}/pend-9", json={"kind": "pendant"}, headers=mine)
    assert put.status_code == 201 and put.json() == {"device_id": "pend-9", "kind": "pendant"}
    assert (
        client.put(f"{HUB_DEVICES_PATH}/pend-9", json={"kind": "pendant"}, headers=mine).status_code
        == 200
    )
    taken = client.put(f"{HUB_DEVICES_PATH}/btn-1", json={"kind": "button"}, headers=mine)
    assert taken.status_code == 409 and "another household" in taken.json()["detail"]

    def alarm(alarm_id: str, device_id: str, auth: dict[str, str]) -> int:
        body = {
            "alarm_id": alarm_id,
            "device_id": device_id,
            "kind": "button",
            "raised_at_ms": clock.now_ms(),
        }
        return client.post(ALARMS_PATH, json=body, headers=auth).status_code

    # another home's device: stored, flagged, dispatched (tests/test_refused_alarms.py)
    assert alarm("a-0", "btn-1", mine) == 201
    assert alarm("a-1", "pend-9", mine) == 201
    report = {"report_id": "r-1", "alarm_id": "a-1", "state": "cancelled", "at_ms": 1}
    assert client.post(ALARM_REPORTS_PATH, json=report, headers=theirs).status_code == 404
    assert client.delete(f"{HUB_DEVICES_PATH}/pend-9", headers=theirs).status_code == 404

    selftest = {
        "report_id": "st-1",
        "started_at_ms": clock.now_ms() - 60_000,
        "finished_at_ms": clock.now_ms(),
        "passed": False,
        "test_alarm_id": "a-1",
        "checks": [
            {"name": "heartbeat", "device_id": "pend-9", "passed": True},
            {"name": "pendant dropped", "device_id": "pend-9", "passed": False},
        ],
    }
    assert client.post(SELFTESTS_PATH, json=selftest, headers=mine).status_code == 204
    assert client.post(SELFTESTS_PATH, json=selftest, headers=mine).status_code == 204  # retry
    foreign = {
        **selftest,
        "report_id": "st-2",
        "finished_at_ms": selftest["finished_at_ms"] - 1000,
        "checks": [{"name": "x", "device_id": "btn-1", "passed": True}],
    }
    # recorded, failed (tests/test_refused_alarms.py); st-1 finished later
    assert client.post(SELFTESTS_PATH, json=foreign, headers=mine).status_code == 204
    homes = {
        h["id"]: h for h in client.get(f"{ADMIN_PREFIX}/households", headers=ADMIN_AUTH).json()
    }
    assert homes["home-2"]["last_selftest"] == {
        "hub_id": granted["hub_id"],
        "report_id": "st-1",
        "passed": False,
        "finished_at_ms": selftest["finished_at_ms"],
        "failed_checks": ["pendant dropped"],
    }
    assert homes["elder-1"]["hub_ids"] == ["hub-1"]  # the directory's hub, implicitly housed
    assert homes["elder-1"]["last_selftest"] is None

    assert client.delete(f"{HUB_DEVICES_PATH}/pend-9", headers=mine).status_code == 204
    assert alarm("a-2", "pend-9", mine) == 201  # removed: stored, flagged as unknown
    assert client.delete(f"{HUB_DEVICES_PATH}/pend-9", headers=mine).status_code == 404


def test_moving_a_hub_revokes_its_token_at_once(server: tuple[TestClient, FakeClock]) -> None:
    client, _ = server
    new_household(client)
    _, granted = enroll(client, make_code(client))
    hub = granted["hub_id"]
    auth = bearer(granted["token"])
    assert (
        client.put(f"{HUB_DEVICES_PATH}/btn-7", json={"kind": "button"}, headers=auth).status_code
        == 201
    )
    r = client.put(
        f"{ADMIN_PREFIX}/hubs/{hub}/household", json={"household_id": "elder-1"}, headers=ADMIN_AUTH
    )
    assert r.status_code == 200 and hub in r.json()["hub_ids"], r.text
    assert client.get(HUB_CONFIG_PATH, headers=auth).status_code == 401
    r = client.put(
        f"{ADMIN_PREFIX}/hubs/nope/household", json={"household_id": "elder-1"}, headers=ADMIN_AUTH
    )
    assert r.status_code == 404
    # its devices were unpaired with it but stay home-2's: another home's hub may not
    # take them until an admin releases them (tests/test_refused_alarms.py)
    assert (
        client.put(
            f"{HUB_DEVICES_PATH}/btn-7", json={"kind": "button"}, headers=bearer(TOKEN)
        ).status_code
        == 409
    )


async def test_a_code_raced_by_two_server_processes_enrolls_one_hub(database_url: str) -> None:
    """Two engines (as two processes have) redeem the same code at once: one hub."""
    first, second = make_engine(database_url), make_engine(database_url)
    try:
        from server.db import migrate
        from server.schema import elders, teams

        await migrate(first)
        async with first.begin() as conn:
            await conn.execute(teams.insert().values(id="t", name="T"))
            await conn.execute(elders.insert().values(id="e", team_id="t", name="E"))
        a, b = HouseholdStore(first), HouseholdStore(second)
        await a.create_household("h", "", "t", 0)
        await a.assign_elder("h", "e")
        code, _ = await a.create_code("h", "admin", 0, 60_000)
        results = await asyncio.gather(
            *(s.enroll(code, "hw", 1000) for s in (a, b, a, b, a, b)), return_exceptions=True
        )
        granted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, CodeRefused)]
        assert len(granted) == 1 and len(refused) == 5, results
        assert {r.reason for r in refused} == {CodeRefusal.USED}
    finally:
        await first.dispose()
        await second.dispose()


async def test_attempts_raced_by_two_server_processes_never_pass_the_limit(
    database_url: str,
) -> None:
    """Two engines (as two processes have) count attempts from one client at once: exactly
    the limit gets through, however the checks interleave."""
    from server.db import migrate
    from server.household_store import RateLimited

    first, second = make_engine(database_url), make_engine(database_url)
    try:
        await migrate(first)
        stores = (HouseholdStore(first), HouseholdStore(second))
        limits = EnrollLimits(per_source=4, per_household=1000, window_ms=60_000)
        for attempt in range(3):  # three rounds: the window holds every attempt
            results = await asyncio.gather(
                *(
                    stores[i % 2].count_attempt(
                        "10.0.0.9", "ABCD-EFGH-JKMN", 1000 + attempt, limits
                    )
                    for i in range(12)
                ),
                return_exceptions=True,
            )
            counted = [r for r in results if r is None]
            limited = [r for r in results if isinstance(r, RateLimited)]
            assert len(counted) + len(limited) == 12, results
            assert len(counted) == (4 if attempt == 0 else 0), results
    finally:
        await first.dispose()
        await second.dispose()


async def test_hubs_from_before_0005_get_a_household_named_after_their_elder(
    database_url: str,
) -> None:
    import sqlalchemy as sa

    from server.db import migrate

    engine = make_engine(database_url)
    try:
        await migrate(engine, "0004")
        async with engine.begin() as conn:
            for sql in (
                "INSERT INTO teams (id, name) VALUES ('team-a', 'Team A')",
                "INSERT INTO elders (id, team_id, name, address) VALUES"
                " ('elder-1', 'team-a', 'Zhang', 'Road 1'), ('elder-9', 'team-a', 'Wu', '')",
                "INSERT INTO hubs (id, elder_id, token_hash) VALUES ('hub-1', 'elder-1', 'x')",
            ):
                await conn.execute(sa.text(sql))
        await migrate(engine)
        async with engine.connect() as conn:
            homes = (
                await conn.execute(sa.text("SELECT id, address, team_id FROM households"))
            ).all()
            hub = (await conn.execute(sa.text("SELECT household_id FROM hubs"))).scalar()
            people = (
                await conn.execute(sa.text("SELECT id, household_id FROM elders ORDER BY id"))
            ).all()
        assert [tuple(h) for h in homes] == [("elder-1", "Road 1", "team-a")]
        assert hub == "elder-1"
        assert [tuple(p) for p in people] == [("elder-1", "elder-1"), ("elder-9", None)]
    finally:
        await engine.dispose()


def test_an_elder_moving_out_leaves_the_hub_to_who_still_lives_there(
    server: tuple[TestClient, FakeClock],
) -> None:
    client, _ = server
    hub_1 = bearer(TOKEN)
    assert client.get(HUB_CONFIG_PATH, headers=hub_1).json()["elder_id"] == "elder-1"
    client.put(f"{ADMIN_PREFIX}/households/elder-1/elders/elder-2", headers=ADMIN_AUTH)
    client.post(f"{ADMIN_PREFIX}/households", json={"id": "home-3"}, headers=ADMIN_AUTH)
    moved = client.put(f"{ADMIN_PREFIX}/households/home-3/elders/elder-1", headers=ADMIN_AUTH)
    assert moved.status_code == 200 and moved.json()["elder_ids"] == ["elder-1"]
    assert client.get(HUB_CONFIG_PATH, headers=hub_1).json()["elder_id"] == "elder-2"
    unknown = client.put(f"{ADMIN_PREFIX}/households/home-3/elders/nobody", headers=ADMIN_AUTH)
    assert unknown.status_code == 404 and "no elder nobody" in unknown.json()["detail"]
