"""Issue 22: the PostgreSQL connections a server process may hold are set by
`CAREHUB_PG_POOL_SIZE` and `CAREHUB_PG_MAX_OVERFLOW`, so N processes can be sized to the
database's ``max_connections`` (docs/operations.md, "Connection limits"); a pooled
connection is pinged before use only when it has been idle (`server.db.ping_when_idle`)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from carehub.settings import ServerSettings
from server.app import create_app
from server.db import make_engine, ping_when_idle
from server.runtime import ServerRuntime


def test_a_process_pool_is_the_size_its_settings_say(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREHUB_PG_POOL_SIZE", "2")
    monkeypatch.setenv("CAREHUB_PG_MAX_OVERFLOW", "1")
    settings = ServerSettings(database_url=pg_url)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        runtime: ServerRuntime = client.app.state.runtime  # type: ignore[attr-defined]
        pool = runtime.store.engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 2
        assert pool._max_overflow == 1  # no public reader; what caps the connections
        assert client.get("/healthz").status_code == 200


def test_the_pool_settings_are_bounded() -> None:
    with pytest.raises(ValueError):
        ServerSettings(pg_pool_size=0)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ServerSettings(pg_max_overflow=-1)  # type: ignore[call-arg]


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.text("select pg_backend_pid()"))).scalar_one())


async def terminate(pg_url: str, pid: int) -> None:
    """End the backend `pid` as a database restart would, and wait until it is gone."""
    admin = create_async_engine(pg_url, poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid})
            gone = sa.text("select count(*) from pg_stat_activity where pid = :pid")
            for _ in range(500):
                if (await conn.execute(gone, {"pid": pid})).scalar_one() == 0:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"backend {pid} still there")
    finally:
        await admin.dispose()


async def test_a_connection_idle_in_the_pool_is_pinged_and_replaced_if_the_database_dropped_it(
    pg_url: str,
) -> None:
    engine = create_async_engine(pg_url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_s=0.0)  # every returned connection counts as idle
    try:
        first = await backend_pid(engine)
        await terminate(pg_url, first)
        assert await backend_pid(engine) != first  # no statement saw the dead connection
    finally:
        await engine.dispose()


async def test_a_connection_just_returned_is_handed_out_without_a_ping(pg_url: str) -> None:
    """Under load a connection is back in the pool for milliseconds: no round trips to
    check it. Were the database to drop it then, its next statement fails (as a lost
    connection, which SQLAlchemy invalidates), and the next checkout works again."""
    engine = create_async_engine(pg_url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_s=3600.0)
    try:
        first = await backend_pid(engine)
        await terminate(pg_url, first)
        with pytest.raises(sa.exc.DBAPIError) as failed:
            await backend_pid(engine)
        assert failed.value.connection_invalidated
        assert await backend_pid(engine) != first
    finally:
        await engine.dispose()


def test_the_servers_postgresql_engine_pings_only_idle_connections(pg_url: str) -> None:
    pool = make_engine(pg_url).sync_engine.pool
    assert not pool._pre_ping  # no public reader
    assert len(pool.dispatch.checkout) == 1 and len(pool.dispatch.checkin) == 1


async def test_the_stores_reads_take_no_transaction_on_postgresql(pg_url: str) -> None:
    """Each statement of a `read` is its own transaction (autocommit): no BEGIN and
    ROLLBACK round trips around it. ``now()`` is when the statement's transaction began."""
    from server.db import migrate
    from server.store import ServerStore

    engine = make_engine(pg_url)
    try:
        await migrate(engine)
        store = ServerStore(engine)
        began = sa.text("select now()")
        for read in (store.read, store.point_read):
            async with read() as conn:
                first = (await conn.execute(began)).scalar_one()
                assert (await conn.execute(began)).scalar_one() != first
        async with engine.connect() as conn:  # as it was: one transaction from the first
            first = (await conn.execute(began)).scalar_one()
            assert (await conn.execute(began)).scalar_one() == first
    finally:
        await engine.dispose()
