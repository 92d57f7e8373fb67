"""Engine creation and schema migration for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server import sqlite_driver

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_POOL_SIZE = 20
"""Connections kept open to a SQLite database (each one thread in aiosqlite)."""
PG_POOL_SIZE = 5
PG_MAX_OVERFLOW = 10
"""PostgreSQL pool defaults (SQLAlchemy's own): `ServerSettings.pg_pool_size` and
`pg_max_overflow` set them per process (docs/operations.md, "Connection limits")."""
PG_PING_IDLE_S = 1.0
"""A pooled PostgreSQL connection idle longer than this is pinged before it is handed
out (`ping_when_idle`)."""
log = logging.getLogger(__name__)


def make_engine(
    url: str,
    sqlite_synchronous: str = "FULL",
    pg_pool_size: int = PG_POOL_SIZE,
    pg_max_overflow: int = PG_MAX_OVERFLOW,
) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and, by default, an fsync per commit
    (``NORMAL``: durable across process crashes, not across power loss; see docs).
    PostgreSQL gets a pool of `pg_pool_size` connections and up to `pg_max_overflow` more:
    with N processes on one database, N × (both + 1 for LISTEN) must fit its
    ``max_connections``."""
    if sqlite_synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"sqlite_synchronous must be FULL or NORMAL, not {sqlite_synchronous!r}")
    if url.startswith("sqlite"):
        # a pool as large as the server's usual concurrency: an overflow connection is a
        # new aiosqlite thread, whose start blocks the event loop, and is closed again
        # when returned (connection churn under bursts of requests)

        async def one_hop() -> sqlite_driver.OneHopConnection:
            # the URL read as SQLAlchemy's own dialect reads it (path, ?uri, ?timeout…)
            args, kwargs = engine.dialect.create_connect_args(engine.url)
            conn = sqlite_driver.connect(*args, **kwargs)
            await conn  # starts its thread and opens the database
            return conn

        engine = create_async_engine(
            url,
            async_creator=one_hop,  # one thread hand-off per statement, not four
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=20,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            # no checkpoint inside a commit (a 100-300 ms stall every few seconds under
            # load): `checkpoint_forever` does them in the background instead
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        return engine
    engine = create_async_engine(url, pool_size=pg_pool_size, max_overflow=pg_max_overflow)
    ping_when_idle(engine)
    return engine


_RETURNED_AT = "carehub_returned_at"


def ping_when_idle(engine: AsyncEngine, idle_s: float = PG_PING_IDLE_S) -> None:
    """Ping a pooled connection before it is handed out, if it has been idle `idle_s`.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout, and on asyncpg a ping is three
    round trips (BEGIN, a query, ROLLBACK): under load, a quarter of what an alarm's
    transactions cost the database and the server. A connection back in the pool for
    less than a second is one that just worked; a database restart takes longer than
    that, so every connection returned before it is pinged when next used, and a dead one
    is replaced (``DisconnectionError``: the pool reconnects) before any statement fails.
    One that dies while in use fails its statement as before, and SQLAlchemy invalidates
    the pool's older connections."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is None or time.monotonic() - returned < idle_s:
            return  # new, or just used
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as e:
            raise sa.exc.DisconnectionError(f"pooled connection is gone: {e}") from e


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database schema to `revision` (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


def one_of(column: sa.ColumnElement[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
    """``column IN (?, ?…)`` over values fixed when the statement is built, one bound
    parameter each. Given a plain list, SQLAlchemy makes it one "expanding" parameter and
    rebuilds the statement's SQL at every execution: CPU on every alarm for a list that
    never changes."""
    return column.in_([sa.literal(v) for v in values])


def none_of(column: sa.ColumnElement[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
    """``column NOT IN (?, ?…)``, as `one_of`."""
    return column.not_in([sa.literal(v) for v in values])


def dialect_insert(engine: AsyncEngine, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can take an ON CONFLICT clause (``on_conflict_do_nothing`` or
    ``_do_update``), spelt for the engine's database: SQLite and PostgreSQL both have one."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


async def serialise_on(conn: AsyncConnection, key: str) -> None:
    """Make transactions that read-then-write under the same ``key`` run one at a time, in
    every server process: a PostgreSQL advisory lock held until this transaction ends.
    A no-op on SQLite: there the caller relies on its one writer (a transaction that writes
    first, or the store's write lock)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


async def checkpoint_forever(engine: AsyncEngine, every_s: float = 5.0) -> None:
    """Move the SQLite WAL into the database file off the request path (PASSIVE: never
    waits for, nor blocks, readers and writers). No-op on other databases."""
    if engine.dialect.name != "sqlite":
        return
    while True:
        await asyncio.sleep(every_s)
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:
            log.exception("WAL checkpoint failed; retrying")
