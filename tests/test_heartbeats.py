"""Heartbeats written behind (`server.heartbeats`): many hubs' latest beats in one
transaction, a hub that came back online noticed once, nothing lost when a write fails."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from server.change_signal import HEALTH_KEY, ChangeSignal
from server.db import make_engine, migrate
from server.directory import Directory, load_directory
from server.heartbeats import HeartbeatWriter
from server.schema import faults, hubs
from server.sealed import Sealer
from server.store import ServerStore
from tests.test_escalation_scenarios import DIRECTORY

TWO_HUBS = {
    **DIRECTORY,
    "hubs": [
        {"id": "hub-1", "elder": "elder-1", "token": "t" * 24},
        {"id": "hub-2", "elder": "elder-1", "token": "u" * 24},
    ],
}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ServerStore]:
    engine = make_engine(database_url)
    await migrate(engine)
    await load_directory(engine, Directory.model_validate(TWO_HUBS), Sealer("k" * 32))
    try:
        yield ServerStore(engine)
    finally:
        await engine.dispose()


async def seen(store: ServerStore) -> dict[str, tuple[int | None, bool]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(hubs.c.id, hubs.c.last_seen_ms, hubs.c.online))
        return {r.id: (r.last_seen_ms, r.online) for r in rows}


async def test_latest_beats_of_many_hubs_stored_in_one_flush(store: ServerStore) -> None:
    changes = ChangeSignal()
    writer = HeartbeatWriter(store, changes)
    writer.note("hub-1", 1_000, {"queue_depth": 3})
    writer.note("hub-2", 1_500, {"queue_depth": 0})
    writer.note("hub-1", 2_000, {"queue_depth": 1})  # replaces the first
    writer.note("no-such-hub", 2_000, {})
    assert await seen(store) == {"hub-1": (None, False), "hub-2": (None, False)}
    assert sorted(await writer.flush()) == ["hub-1", "hub-2"]  # both were offline
    assert await seen(store) == {"hub-1": (2_000, True), "hub-2": (1_500, True)}
    assert changes.version(HEALTH_KEY) == 1
    writer.note("hub-1", 3_000, {})
    assert await writer.flush() == [] and await writer.flush() == []
    assert changes.version(HEALTH_KEY) == 1, "already online: nothing new for the board"
    async with store.engine.connect() as conn:
        health = (await conn.execute(sa.select(hubs.c.health).where(hubs.c.id == "hub-2"))).scalar()
    assert health == {"queue_depth": 0}


async def test_a_hub_back_from_offline_clears_its_fault(store: ServerStore) -> None:
    writer = HeartbeatWriter(store, ChangeSignal())
    writer.note("hub-1", 1_000, {})
    await writer.flush()
    assert await store.mark_stale_hubs_offline(200_000, 90_000) == ["hub-1"]
    writer.note("hub-1", 201_000, {})
    assert await writer.flush() == ["hub-1"]
    async with store.engine.connect() as conn:
        states = (
            await conn.execute(
                sa.select(faults.c.active).where(faults.c.hub_id == "hub-1").order_by(faults.c.id)
            )
        ).scalars()
        assert list(states) == [True, False]


async def test_a_failed_write_keeps_the_beats_for_the_next(store: ServerStore) -> None:
    writer = HeartbeatWriter(store, ChangeSignal())
    writer.note("hub-1", 1_000, {})
    await store.engine.dispose()
    real = store.record_heartbeats

    async def broken(beats: object) -> list[str]:
        raise OSError("database went away")

    store.record_heartbeats = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await writer.flush()
    writer.note("hub-2", 2_000, {})
    store.record_heartbeats = real  # type: ignore[method-assign]
    assert sorted(await writer.flush()) == ["hub-1", "hub-2"]


async def test_the_care_plan_reaches_the_hub_with_oxygen_and_channels(database_url: str) -> None:
    """Not a heartbeat, but the same small world: what the hub is told about its elder."""
    from carehub.api_contract import HubConfig
    from server.store import HubIdentity

    engine = make_engine(database_url)
    await migrate(engine)
    elder = {
        **DIRECTORY["elders"][0],  # type: ignore[index]
        "spo2_scale2": True,
        "on_oxygen": True,
        "wearable_channels": ["hr", "spo2", "rr"],
    }
    directory = {**TWO_HUBS, "elders": [elder]}
    await load_directory(engine, Directory.model_validate(directory), Sealer("k" * 32))
    try:
        config = HubConfig.model_validate(
            await ServerStore(engine).hub_config(HubIdentity("hub-1", "elder-1"))
        )
    finally:
        await engine.dispose()
    plan = config.care_plan
    assert (plan.spo2_scale2, plan.on_oxygen, plan.wearable_channels) == (
        True,
        True,
        ["hr", "spo2", "rr"],
    )
