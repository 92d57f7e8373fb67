"""Changes committed by one server process wake waiters in another (PostgreSQL LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from server.change_signal import ChangeSignal, PostgresRelay, asyncpg_dsn


async def _until(event: asyncio.Event, timeout_s: float = 10.0) -> None:
    await asyncio.wait_for(event.wait(), timeout_s)


@pytest.fixture
async def two_processes(pg_url: str) -> AsyncIterator[tuple[ChangeSignal, ChangeSignal, str]]:
    """Two change signals, each with its own relay, as two server processes have."""
    a, b = ChangeSignal(), ChangeSignal()
    relays = [PostgresRelay(asyncpg_dsn(pg_url), s, retry_s=0.1) for s in (a, b)]
    for r in relays:
        await r.start()
    for r in relays:
        await _until(r.listening)
    try:
        yield a, b, asyncpg_dsn(pg_url)
    finally:
        for r in relays:
            await r.stop()


async def test_a_change_in_one_process_wakes_the_waiter_in_the_other(
    two_processes: tuple[ChangeSignal, ChangeSignal, str],
) -> None:
    a, b, _ = two_processes
    seen = b.version("hub:h1")
    waiter = asyncio.create_task(b.wait("hub:h1", seen, timeout_s=10))
    await asyncio.sleep(0)  # the waiter is parked on its condition
    await a.notify("hub:h1")
    assert await asyncio.wait_for(waiter, 5) == seen + 1
    assert a.version("hub:h1") == 1  # its own notification is not counted twice
    assert b.version("hub:other") == 0  # other keys are not woken


async def test_a_relay_that_lost_its_connection_reconnects_and_wakes_everyone(
    two_processes: tuple[ChangeSignal, ChangeSignal, str],
) -> None:
    a, b, dsn = two_processes
    seen = b.version("hub:h2")
    waiter = asyncio.create_task(b.wait("hub:h2", seen, timeout_s=20))
    await asyncio.sleep(0)
    admin = await asyncpg.connect(dsn)
    try:  # cut every LISTEN connection (what a PostgreSQL restart does)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert await asyncio.wait_for(waiter, 15) > seen  # woken by the reconnect
    for signal in (a, b):
        assert isinstance(signal.relay, PostgresRelay)
        await _until(signal.relay.listening)
    seen = b.version("hub:h2")
    waiter = asyncio.create_task(b.wait("hub:h2", seen, timeout_s=10))
    await asyncio.sleep(0)
    await a.notify("hub:h2")
    assert await asyncio.wait_for(waiter, 5) > seen


def test_sqlalchemy_urls_become_asyncpg_dsns() -> None:
    assert asyncpg_dsn("postgresql+asyncpg://u@h:5432/db") == "postgresql://u@h:5432/db"
    assert asyncpg_dsn("postgresql://u@h/db") == "postgresql://u@h/db"


async def test_a_relay_stops_cleanly_when_its_cancel_lands_inside_the_driver() -> None:
    """Seen on CI's machine: a server stopping right after it started cancelled the
    listener inside asyncpg's `add_listener`, which raised InternalClientError instead of
    CancelledError, and the server's shutdown failed with it."""

    class DriverError(Exception):
        pass

    relay = PostgresRelay("postgresql://unused", ChangeSignal())
    started = asyncio.Event()

    async def listening_until_cancelled() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise DriverError(
                "cannot switch to state 12; another operation is in progress"
            ) from None

    relay._listen_forever = listening_until_cancelled  # type: ignore[method-assign]
    await relay.start()
    await started.wait()
    await relay.stop()  # raised DriverError before
    assert relay._task is not None and relay._task.done()


async def test_an_unexpected_driver_error_is_retried_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    connected = asyncio.Event()

    async def connect(_dsn: str) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise asyncpg.exceptions._base.InternalClientError("another operation is in progress")
        connected.set()
        await asyncio.Event().wait()  # the second attempt hangs until stopped
        raise AssertionError

    monkeypatch.setattr(asyncpg, "connect", connect)
    relay = PostgresRelay("postgresql://unused", ChangeSignal(), retry_s=0.01)
    await relay.start()
    await asyncio.wait_for(connected.wait(), 5)
    await relay.stop()
    assert len(calls) == 2
