"""Hub tokens served from memory (`server.hub_identities`) over the real store, SQLite and
PostgreSQL: the database bumps `hubs_version` on every change of which hub a token is
(migration 0018), so a token revoked by one process is refused there at once and by
another process after its next version check (`hub_auth_ttl_s`), and a re-enrolled hub's
new token works at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.clock import FakeClock
from server.auth import hash_token
from server.db import make_engine, migrate
from server.household_store import HouseholdStore
from server.hub_identities import HubIdentity
from server.schema import elders, households, hubs, hubs_version, teams
from server.store import ServerStore

TTL_S = 1.0


@dataclass
class Process:
    """What one server process has: its own engine, store, cache and clock."""

    engine: AsyncEngine
    store: ServerStore
    homes: HouseholdStore
    clock: FakeClock


def _process(database_url: str) -> Process:
    engine = make_engine(database_url)
    clock = FakeClock()
    store = ServerStore(engine, hub_auth_ttl_s=TTL_S, clock=clock)
    return Process(engine, store, HouseholdStore(engine, store.hub_identities), clock)


@pytest.fixture
async def processes(database_url: str) -> AsyncIterator[tuple[Process, Process]]:
    first, second = _process(database_url), _process(database_url)
    await migrate(first.engine)
    async with first.engine.begin() as conn:
        await conn.execute(teams.insert().values(id="t", name="T"))
        await conn.execute(elders.insert().values(id="e1", team_id="t", name="E1"))
        await conn.execute(elders.insert().values(id="e2", team_id="t", name="E2"))
    for home, elder in (("home-1", "e1"), ("home-2", "e2")):
        await first.homes.create_household(home, "", "t", 0)
        await first.homes.assign_elder(home, elder)
    try:
        yield first, second
    finally:
        await first.engine.dispose()
        await second.engine.dispose()


async def _enroll(p: Process, household_id: str) -> tuple[str, str]:
    code, _ = await p.homes.create_code(household_id, "admin", 0, 60_000)
    granted = await p.homes.enroll(code, "hw", 1000)
    return granted.hub_id, granted.token


async def _version(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(hubs_version.c.version))).scalar_one())


async def test_every_change_of_which_hub_a_token_is_moves_the_version(
    processes: tuple[Process, Process],
) -> None:
    p, _ = processes
    hub_id, _ = await _enroll(p, "home-1")
    by_id = hubs.c.id == hub_id
    changes = [
        hubs.update().where(by_id).values(token_hash=hash_token("another-token-0123456789")),
        hubs.update().where(by_id).values(elder_id="e2"),
        hubs.update().where(by_id).values(household_id="home-2"),
        hubs.insert().values(id="hub-x", elder_id="e1", token_hash=hash_token("x" * 24)),
        hubs.delete().where(hubs.c.id == "hub-x"),
    ]
    seen = [await _version(p.engine)]
    for change in changes:
        async with p.engine.begin() as conn:
            await conn.execute(change)
        seen.append(await _version(p.engine))
    assert all(b > a for a, b in zip(seen, seen[1:], strict=False)), seen
    async with p.engine.begin() as conn:  # a heartbeat, marking offline: not an identity
        await conn.execute(hubs.update().values(last_seen_ms=1, online=False, health={}))
        await conn.execute(households.update().values(address="elsewhere"))
    assert await _version(p.engine) == seen[-1]


async def test_a_moved_hub_is_refused_here_at_once_and_elsewhere_after_one_check(
    processes: tuple[Process, Process],
) -> None:
    here, there = processes
    hub_id, token = await _enroll(here, "home-1")
    hub = HubIdentity(hub_id, "e1", "home-1")
    assert await here.store.hub_by_token(token) == hub
    assert await there.store.hub_by_token(token) == hub
    await here.homes.move_hub(hub_id, "home-2")  # revokes the token
    assert await here.store.hub_by_token(token) is None
    # the other process trusts its memory until its version check is due
    assert await there.store.hub_by_token(token) == hub
    there.clock.advance(TTL_S)
    assert await there.store.hub_by_token(token) is None
    assert await there.store.note_refused_token(token, there.clock.now_ms()) == hub_id
    there.clock.advance(TTL_S / 2)  # still refused: the refusal was not remembered as a hub
    assert await there.store.hub_by_token(token) is None


async def test_a_re_enrolled_hubs_new_token_works_at_once(
    processes: tuple[Process, Process],
) -> None:
    here, there = processes
    hub_id, token = await _enroll(here, "home-1")
    assert await there.store.hub_by_token(token) is not None
    await here.homes.move_hub(hub_id, "home-2")
    assert await here.store.hub_by_token(token) is None
    new_id, new_token = await _enroll(here, "home-2")
    new_hub = HubIdentity(new_id, "e2", "home-2")
    assert await here.store.hub_by_token(new_token) == new_hub  # no clock moved
    assert await there.store.hub_by_token(new_token) == new_hub  # misses are never cached


async def test_an_elder_moving_out_changes_the_hubs_elder_at_once(
    processes: tuple[Process, Process],
) -> None:
    here, _ = processes
    hub_id, token = await _enroll(here, "home-1")
    await here.homes.assign_elder("home-1", "e2")  # e2 joins e1's home, then e1 leaves it
    assert await here.store.hub_by_token(token) == HubIdentity(hub_id, "e1", "home-1")
    await here.homes.create_household("home-3", "", "t", 0)
    await here.homes.assign_elder("home-3", "e1")
    assert await here.store.hub_by_token(token) == HubIdentity(hub_id, "e2", "home-1")
