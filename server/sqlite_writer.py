"""A process's writes to SQLite: one at a time, on one connection kept open for them.

SQLite has one writer. The process's writers queue on an asyncio lock, in order, instead
of in SQLite's busy handler (which sleeps in growing steps: 100 ms tails under load) or
failing on a stale snapshot. Since only one of them writes at a time, they share one
connection: each write transaction then skips the pool's checkout and checkin and
SQLAlchemy's connect and close (two greenlets and a shielded task), a fifth of what a
short write costs. Their statements run on the event loop (`server.sqlite_driver`).

The connection is replaced when a transaction leaves it unusable (invalidated, or still in
a transaction after a failed rollback), and closed when its engine is disposed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.sqlite_driver import on_the_loop

log = logging.getLogger(__name__)


class SqliteWriter:
    """Write transactions on `engine` (SQLite), one at a time, on a kept connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()
        self._conn: AsyncConnection | None = None
        event.listen(engine.sync_engine, "engine_disposed", self._engine_disposed)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on exit, rolled back on error."""
        async with self._lock:
            conn = await self._connection()
            try:
                async with conn.begin():
                    with on_the_loop(conn):
                        yield conn
            except BaseException:
                if conn.invalidated or conn.in_transaction():
                    self._conn = None
                    await _discard(conn)
                raise

    async def _connection(self) -> AsyncConnection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = await self.engine.connect()
        return conn

    def _engine_disposed(self, _engine: Any) -> None:
        """Runs inside `AsyncEngine.dispose` (its greenlet): closes the kept connection's
        database connection and thread, which the disposed pool no longer owns."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.sync_connection is not None and not conn.closed:
            conn.sync_connection.invalidate()
            conn.sync_connection.close()


async def _discard(conn: AsyncConnection) -> None:
    """Close a connection a failed transaction left unusable; a new one is made next."""
    try:
        await conn.invalidate()
        await conn.close()
    except Exception:
        log.warning("could not close a failed writer connection", exc_info=True)
