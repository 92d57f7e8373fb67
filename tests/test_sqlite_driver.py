"""The server's SQLite connections (``server.sqlite_driver``): one thread hand-off per
statement, none on the loop, a locked database waited for in the thread, and everything
SQLAlchemy reads from a cursor still right — rows, row counts, inserted ids, bulk inserts,
errors, rollbacks."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server import sqlite_driver
from server.db import make_engine
from server.sqlite_driver import on_the_loop

META = sa.MetaData()
ITEMS = sa.Table(
    "items",
    META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, unique=True, nullable=False),
)


async def _table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(META.create_all)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kw: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kw)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return calls


async def _hand_offs_for_one_select(engine: AsyncEngine, calls: list[str]) -> int:
    await _table(engine)
    async with engine.begin() as conn:
        await conn.execute(ITEMS.insert().values(name="a"))
        calls.clear()
        rows = (await conn.execute(sa.select(ITEMS.c.name))).all()
        n = len(calls)
    assert rows == [("a",)]
    await engine.dispose()
    return n


async def test_a_statement_is_one_thread_hand_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch)
    ours = await _hand_offs_for_one_select(
        make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ours.db'}"), calls
    )
    stock = await _hand_offs_for_one_select(
        create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'stock.db'}"), calls
    )
    assert ours == 1
    assert stock >= 3  # cursor, execute, fetch, close: what the driver saves


async def test_rows_counts_ids_bulk_inserts_errors_and_rollbacks(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await _table(engine)
    try:
        async with engine.begin() as conn:
            first = await conn.execute(ITEMS.insert().values(name="first"))
            assert first.inserted_primary_key == (1,)
            await conn.execute(ITEMS.insert(), [{"name": f"n{i}"} for i in range(500)])
            names = (await conn.execute(sa.select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars()
            assert list(names) == ["first"] + [f"n{i}" for i in range(500)]
            updated = await conn.execute(
                ITEMS.update().where(ITEMS.c.id > 1).values(name=ITEMS.c.name + "!")
            )
            assert updated.rowcount == 500
            stream = await conn.execute(sa.select(ITEMS.c.id).order_by(ITEMS.c.id))
            assert stream.fetchone() == (1,) and len(stream.fetchmany(10)) == 10
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(ITEMS.insert().values(name="second"))
                await conn.execute(ITEMS.insert().values(name="first"))  # unique: refused
        async with engine.connect() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(ITEMS))).scalar()
            second = (await conn.execute(sa.select(ITEMS).where(ITEMS.c.name == "second"))).all()
        assert count == 501 and second == []  # the failed transaction left nothing
    finally:
        await engine.dispose()


async def test_the_urls_options_reach_the_connection(tmp_path: Path) -> None:
    """`?mode=ro&uri=true` opens the file read-only, as SQLAlchemy's own dialect would."""
    path = tmp_path / "x.db"
    writable = make_engine(f"sqlite+aiosqlite:///{path}")
    await _table(writable)
    await writable.dispose()
    read_only = make_engine(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    try:
        async with read_only.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(ITEMS))).scalar() == 0
        with pytest.raises(OperationalError, match="readonly"):
            async with read_only.begin() as conn:
                await conn.execute(ITEMS.insert().values(name="x"))
    finally:
        await read_only.dispose()


async def test_a_connection_back_from_a_read_needs_no_rollback_hand_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool rolls back every connection it gets back; after a read SQLite has no
    transaction open, so that rollback is answered without the connection's thread."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await _table(engine)
    calls = _counting(monkeypatch)
    async with engine.connect() as conn:
        await conn.execute(sa.select(ITEMS.c.name))
    assert calls == ["_run_patiently"]
    calls.clear()
    async with engine.begin() as conn:
        await conn.execute(ITEMS.insert().values(name="a"))
    assert calls == ["_run_patiently", "_commit_patiently"]  # a write's commit: the thread
    await engine.dispose()


async def test_a_write_that_fails_is_still_rolled_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await _table(engine)
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.execute(ITEMS.insert().values(name="a"))
            raise RuntimeError("the caller fails mid-transaction")
    async with engine.connect() as conn:
        await conn.execute(ITEMS.insert().values(name="b"))  # not committed: rolled back
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(ITEMS.c.name))).scalars().all() == []
    await engine.dispose()


async def test_statements_on_the_loop_need_no_hand_off_but_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await _table(engine)
    calls = _counting(monkeypatch)
    async with engine.begin() as conn:
        with on_the_loop(conn):
            await conn.execute(ITEMS.insert().values(name="a"))
            await conn.execute(ITEMS.insert(), [{"name": "b"}, {"name": "c"}])
            names = (await conn.execute(sa.select(ITEMS.c.name))).scalars().all()
    assert names == ["a", "b", "c"]
    assert calls == ["_commit_patiently"]  # the commit may fsync: never on the loop
    calls.clear()
    async with engine.connect() as conn:  # the mark ends with its block
        assert (await conn.execute(sa.select(sa.func.count()).select_from(ITEMS))).scalar() == 3
    assert calls == ["_run_patiently"]
    await engine.dispose()


async def test_a_statement_on_the_loop_that_finds_the_database_locked_waits_in_its_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer (another process, or a store without the write lock) holds the
    database: the statement is not refused and does not hold the loop while it waits, so
    the holder, whose commit needs the loop, finishes and the statement then runs."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    holder, waiter = make_engine(url), make_engine(url)
    await _table(holder)
    met_the_lock = threading.Event()
    patient = sqlite_driver._run_patiently

    def noting(*args: Any) -> Any:
        met_the_lock.set()
        return patient(*args)

    monkeypatch.setattr(sqlite_driver, "_run_patiently", noting)

    async def write_on_the_loop() -> None:
        async with waiter.begin() as conn:
            with on_the_loop(conn):
                await conn.execute(ITEMS.insert().values(name="second"))

    async with holder.connect() as held:
        await held.execute(ITEMS.insert().values(name="first"))  # holds the write lock
        second = asyncio.create_task(write_on_the_loop())
        assert await asyncio.to_thread(met_the_lock.wait, 30)
        await held.commit()
    await asyncio.wait_for(second, 30)
    async with holder.connect() as conn:
        names = (await conn.execute(sa.select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars()
        assert list(names) == ["first", "second"]
    await holder.dispose()
    await waiter.dispose()


async def test_a_statement_that_waited_too_long_fails_and_the_connection_stays_impatient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `PATIENCE_S` the statement fails as SQLite's own busy timeout makes it fail,
    and the connection's next statement on the loop is again refused at once, not waited
    for on the loop."""
    monkeypatch.setattr(sqlite_driver, "PATIENCE_S", 0.05)
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    holder, waiter = make_engine(url), make_engine(url)
    await _table(holder)
    async with holder.connect() as held:
        await held.execute(ITEMS.insert().values(name="first"))
        async with waiter.connect() as conn:
            with on_the_loop(conn), pytest.raises(OperationalError, match="locked"):
                await conn.execute(ITEMS.insert().values(name="second"))
            await conn.rollback()
            timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            assert timeout == 0
        await held.rollback()
    await holder.dispose()
    await waiter.dispose()
