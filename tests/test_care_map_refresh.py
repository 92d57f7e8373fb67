"""The care map is rebuilt when the directory changed, and only then: the database bumps a
version on every change to teams, members and policies (migration 0009), whoever made it,
and each server process compares one number instead of re-reading a city's directory every
few seconds (which stalled its event loop)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.clock import FakeClock
from carehub.settings import ServerSettings
from server.app import freeze_long_lived
from server.change_signal import ChangeSignal
from server.db import make_engine
from server.dispatch.escalator import Escalator
from server.dispatch.store import DispatchStore
from server.main import prepare_database
from server.schema import directory_version, doctors, escalation_policies, teams
from server.store import ServerStore
from tests.conftest import DIRECTORY
from tests.dispatch_world import RecordingNotifier


async def _engine(database_url: str, tmp_path: Path) -> AsyncEngine:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token="t" * 24))
    await prepare_database(ServerSettings(database_url=database_url), directory)  # type: ignore[call-arg]
    return make_engine(database_url)


async def _version(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(directory_version.c.version))).scalar_one())


async def test_every_change_to_the_directory_moves_its_version(
    database_url: str, tmp_path: Path
) -> None:
    engine = await _engine(database_url, tmp_path)
    try:
        changes = [
            doctors.update().where(doctors.c.id == "dr-a").values(on_duty=False),
            teams.update().where(teams.c.id == "team-a").values(name="Team A, renamed"),
            escalation_policies.insert().values(id="extra", definition={"steps": []}),
            escalation_policies.delete().where(escalation_policies.c.id == "extra"),
            doctors.insert().values(id="dr-c", team_id="team-a", name="C", phone="+8613800000009"),
            doctors.delete().where(doctors.c.id == "dr-c"),
        ]
        seen = [await _version(engine)]
        for change in changes:
            async with engine.begin() as conn:
                await conn.execute(change)
            seen.append(await _version(engine))
        assert all(b > a for a, b in zip(seen, seen[1:], strict=False)), seen
        async with engine.begin() as conn:  # a write elsewhere leaves it alone
            await conn.execute(sa.text("UPDATE hubs SET last_seen_ms = 1"))  # a heartbeat
        assert await _version(engine) == seen[-1]
    finally:
        await engine.dispose()


async def test_the_escalator_rebuilds_its_care_map_only_after_a_change(tmp_path: Path) -> None:
    engine = await _engine(f"sqlite+aiosqlite:///{tmp_path / 'server.db'}", tmp_path)
    clock = FakeClock()
    dispatch = DispatchStore(ServerStore(engine), b"k" * 32)
    built: list[int] = []  # the server freezes each new map out of the GC's scans
    escalator = Escalator(
        dispatch,
        RecordingNotifier({}),
        clock,
        ChangeSignal(),
        "http://x",
        care_ttl_s=1.0,
        on_care_map=lambda: built.append(1),
    )

    async def after_a_check() -> object:
        clock.advance(1.5)
        await escalator.care_map()  # starts the background check, serves the map it has
        assert escalator._care_refresh is not None
        await escalator._care_refresh
        return await escalator.care_map()

    try:
        first = await escalator.care_map()
        assert first.members["dr-a"].name == "Doctor A"
        assert await after_a_check() is first  # nothing changed: the same map, not rebuilt
        assert len(built) == 1
        async with engine.begin() as conn:
            await conn.execute(doctors.update().where(doctors.c.id == "dr-a").values(name="Dr. A"))
        assert await escalator.care_map() is first  # within its ttl: not even checked
        fresh = await after_a_check()
        assert fresh is not first
        assert fresh.members["dr-a"].name == "Dr. A"  # type: ignore[attr-defined]
        assert await after_a_check() is fresh
        assert len(built) == 2
    finally:
        await engine.dispose()


def test_freezing_the_long_lived_objects_collects_garbage_first() -> None:
    """Frozen objects are never collected: garbage frozen with them would leak for good."""

    class Node:
        other: object = None

    alive, dead = Node(), Node()
    dead.other = dead  # a cycle only the collector can free
    gone = weakref.ref(dead)
    del dead
    try:
        freeze_long_lived()
        assert gone() is None
        assert gc.get_freeze_count() > 0 and alive.other is None
    finally:
        gc.unfreeze()
