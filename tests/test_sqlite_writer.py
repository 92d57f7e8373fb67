"""`server.sqlite_writer`: a process's SQLite writes, one at a time, on one kept connection,
replaced when a failure leaves it unusable and closed with its engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.db import make_engine
from server.sqlite_writer import SqliteWriter

meta = sa.MetaData()
notes = sa.Table("notes", meta, sa.Column("id", sa.Integer, primary_key=True))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    yield engine
    await engine.dispose()


def driver(conn: AsyncConnection) -> Any:
    assert conn.sync_connection is not None
    return conn.sync_connection.connection.driver_connection


async def ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(notes.c.id).order_by("id"))).scalars())


async def test_writes_are_committed_one_at_a_time_on_one_connection(engine: AsyncEngine) -> None:
    writer = SqliteWriter(engine)
    used: list[Any] = []
    inside = 0

    async def write(i: int) -> None:
        nonlocal inside
        async with writer.transaction() as conn:
            inside += 1
            assert inside == 1  # no other write in its transaction meanwhile
            used.append(driver(conn))
            await conn.execute(notes.insert(), {"id": i})
            await asyncio.sleep(0)  # lets the others try to start theirs
            inside -= 1

    await asyncio.gather(*(write(i) for i in range(5)))
    assert await ids(engine) == [0, 1, 2, 3, 4]
    assert len({id(d) for d in used}) == 1


async def test_a_failed_write_is_rolled_back_and_the_next_uses_the_same_connection(
    engine: AsyncEngine,
) -> None:
    writer = SqliteWriter(engine)
    with pytest.raises(sa.exc.IntegrityError):
        async with writer.transaction() as conn:
            first = driver(conn)
            await conn.execute(notes.insert(), {"id": 1})
            await conn.execute(notes.insert(), {"id": 1})
    async with writer.transaction() as conn:
        assert driver(conn) is first
        await conn.execute(notes.insert(), {"id": 2})
    assert await ids(engine) == [2]


async def test_a_connection_left_unusable_is_replaced(engine: AsyncEngine) -> None:
    writer = SqliteWriter(engine)
    with pytest.raises(RuntimeError):
        async with writer.transaction() as conn:
            first = driver(conn)
            await conn.execute(notes.insert(), {"id": 1})
            await conn.invalidate()  # as a lost connection leaves it
            raise RuntimeError("the write failed")
    async with writer.transaction() as conn:
        assert driver(conn) is not first
        await conn.execute(notes.insert(), {"id": 2})
    assert await ids(engine) == [2]


async def test_disposing_the_engine_closes_the_kept_connection(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    writer = SqliteWriter(engine)
    async with writer.transaction() as conn:
        await conn.run_sync(meta.create_all)
        thread = driver(conn)._thread  # aiosqlite's, one per connection
    assert thread.is_alive()
    await engine.dispose()
    thread.join(timeout=10)
    assert not thread.is_alive()
