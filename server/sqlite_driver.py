"""aiosqlite connections that run a statement in one thread hand-off instead of four, or
in none: on the event loop itself, inside a transaction marked `on_the_loop`.

SQLAlchemy's aiosqlite adapter opens a cursor, executes, fetches and closes it, and aiosqlite
sends each of those to its connection's thread and back: four hand-offs per statement, each
~110 µs of CPU on a small VM, against ~7 µs for the query itself. ``OneHopConnection``'s
cursor does all four in one call to the thread and answers the rest from what it brought
back. The adapter fetches every row of a result at once anyway (no server-side cursors are
used here), so bringing them back with the execute changes nothing it sees.

An alarm's short write transactions (`ServerStore.write`) skip even that hand-off: their
statements run on the event loop, which waits a few microseconds for each instead of paying
for two thread switches. What could make the loop wait longer stays in the thread:

- another writer's lock. Connections have no busy timeout; a statement on the loop that
  finds the database locked goes to its thread and waits there (`PATIENCE_S`), as every
  statement outside such a transaction does;
- the commit, which fsyncs under ``synchronous=FULL``;
- checkpoints, reads of whole tables (the console's) and migrations: not marked.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from threading import Thread
from typing import Any, cast

import aiosqlite
from sqlalchemy.ext.asyncio import AsyncConnection

PATIENCE_S = 30.0
"""How long a statement or commit waits, in its connection's thread, for another writer's
lock (SQLite's busy timeout, set only for that wait)."""

_Outcome = tuple[list[Any], Any, int, int | None, bool]


def _busy(error: sqlite3.OperationalError) -> bool:
    return error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _patiently(conn: sqlite3.Connection, fn: Any, *args: Any) -> Any:
    """In the connection's thread: `fn`, and if the database is locked, `fn` again with a
    busy timeout of `PATIENCE_S` (a statement refused for a lock changed nothing)."""
    try:
        return fn(*args)
    except sqlite3.OperationalError as e:
        if not _busy(e):
            raise
    conn.execute(f"PRAGMA busy_timeout={int(PATIENCE_S * 1000)}")
    try:
        return fn(*args)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def _run_patiently(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    return cast(_Outcome, _patiently(conn, _run, conn, sql, parameters, many))


def _commit_patiently(conn: sqlite3.Connection) -> None:
    _patiently(conn, conn.commit)


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """Execute, fetch every row, close."""
    cur = conn.cursor()
    try:
        if many:
            cur.executemany(sql, parameters)
        elif parameters is None:
            cur.execute(sql)
        else:
            cur.execute(sql, parameters)
        rows = cur.fetchall() if cur.description else []
        return rows, cur.description, cur.rowcount, cur.lastrowid, conn.in_transaction
    finally:
        cur.close()


async def execute(conn: OneHopConnection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """Run `sql` on `conn` and fetch every row: on the event loop when the connection is
    `on_the_loop` and the database is not locked, else in one hand-off to its thread."""
    outcome: _Outcome | None = None
    if conn.on_the_loop:
        try:
            outcome = _run(conn._conn, sql, parameters, many)
        except sqlite3.OperationalError as e:
            if not _busy(e):
                raise
    if outcome is None:
        outcome = await conn._execute(_run_patiently, conn._conn, sql, parameters, many)
    conn.in_transaction_after = outcome[4]
    return outcome


class OneHopCursor(aiosqlite.Cursor):
    """An aiosqlite cursor whose ``execute`` brings back the rows, description, rowcount and
    last row id in the same hand-off; fetching and closing then need no thread."""

    def __init__(self, conn: OneHopConnection) -> None:
        super().__init__(conn, None)  # type: ignore[arg-type]  # no sqlite3 cursor kept
        self._rows: deque[Any] = deque()
        self._description: Any = None
        self._arraysize = 1
        self._rowcount = -1
        self._lastrowid: int | None = None

    async def _go(self, sql: str, parameters: Any, many: bool) -> OneHopCursor:
        conn = cast("OneHopConnection", self._conn)
        outcome = await execute(conn, sql, parameters, many)
        rows, self._description, self._rowcount, self._lastrowid, _ = outcome
        self._rows = deque(rows)
        return self

    async def execute(self, sql: str, parameters: Any = None) -> OneHopCursor:  # type: ignore[override]
        return await self._go(sql, parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneHopCursor:  # type: ignore[override]
        return await self._go(sql, list(parameters), many=True)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        n = self._arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(n, len(self._rows)))]

    async def fetchall(self) -> Sequence[Any]:
        out = list(self._rows)
        self._rows.clear()
        return out

    async def close(self) -> None:
        self._rows.clear()

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    @property
    def description(self) -> Any:
        return self._description

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value


class _Ready:
    """What ``Connection.cursor()`` returns: awaitable and an async context manager, as
    aiosqlite's own, but with nothing to wait for."""

    def __init__(self, cursor: OneHopCursor) -> None:
        self._cursor = cursor

    def __await__(self) -> Any:
        if False:  # pragma: no cover - makes this a generator
            yield
        return self._cursor

    async def __aenter__(self) -> OneHopCursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        await self._cursor.close()


class OneHopConnection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors are ``OneHopCursor``, and whose commit and
    rollback need no hand-off when no transaction is open: the pool rolls back every
    connection it gets back, and most are back from a read (SQLite opens a transaction
    only for a write), so that hand-off was one more per read."""

    in_transaction_after: bool | None = None
    """Whether a transaction was open after the last statement; None: not known (anything
    else ran on the connection since)."""
    on_the_loop: bool = False
    """Run statements on the event loop (`on_the_loop`), not in the connection's thread."""

    def cursor(self) -> Any:  # type: ignore[override]
        return _Ready(OneHopCursor(self))

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.in_transaction_after = None  # whatever runs may open or end one
        return await super()._execute(fn, *args, **kwargs)

    async def commit(self) -> None:
        if self.in_transaction_after is not False:
            await self._execute(_commit_patiently, self._conn)
            self.in_transaction_after = False

    async def rollback(self) -> None:
        if self.in_transaction_after is not False:
            await super().rollback()
            self.in_transaction_after = False


def one_hop(conn: AsyncConnection) -> OneHopConnection | None:
    """The driver connection under `conn` when it is one of these (SQLite), else None."""
    assert conn.sync_connection is not None
    driver = conn.sync_connection.connection.driver_connection
    return driver if isinstance(driver, OneHopConnection) else None


@contextmanager
def on_the_loop(conn: AsyncConnection) -> Iterator[None]:
    """Within the block, `conn`'s statements run on the event loop (a lock held by another
    writer still sends one to the connection's thread to wait). For short transactions of
    few-row statements: the loop waits out each one. A no-op on other databases."""
    driver = one_hop(conn)
    if driver is None:
        yield
        return
    driver.on_the_loop = True
    try:
        yield
    finally:
        driver.on_the_loop = False


def connect(database: str, **kwargs: Any) -> OneHopConnection:
    """Like ``aiosqlite.connect`` (await it to start the connection), with a daemon
    thread as SQLAlchemy's own dialect makes it, so an unclosed pool cannot hold up exit.
    The connection has no busy timeout: a statement that finds the database locked waits
    in the connection's thread (`PATIENCE_S`), never on the loop."""
    kwargs = {**kwargs, "timeout": 0}
    conn = OneHopConnection(lambda: sqlite3.connect(database, **kwargs), iter_chunk_size=64)
    thread = conn if isinstance(conn, Thread) else getattr(conn, "_thread", None)
    if isinstance(thread, Thread):
        thread.daemon = True
    return conn
