"""An alarm's statements, run straight on the database's driver: compiled once, no
execution layer.

SQLAlchemy's execution of a Core statement (cache key and lookup, an execution context,
parameter processing, the async adapter's greenlet, a cursor result) costs 100-150 µs of
CPU on a small machine; SQLite runs one of an alarm's statements in a few, PostgreSQL in
one round trip. An alarm takes about twenty of them, so that layer was a fifth of what an
alarm costs the server.

A `HotStatement` is a statement built once, with bound parameters (a module constant).
It is compiled once by SQLAlchemy for the connection's dialect, and each execution binds
its parameters with the compiled statement's own processors, runs it on the driver and
types its rows with the result columns' own processors:

- on SQLite, through `server.sqlite_driver` (on the event loop inside a transaction marked
  `on_the_loop`, else in one hand-off);
- on PostgreSQL, as a prepared statement from the asyncpg adapter's own cache, inside the
  adapter's transaction (started as its cursor starts it), awaited on the loop with no
  greenlet.

SQLAlchemy's ``before_cursor_execute`` listeners still see it, and its errors are
SQLAlchemy's. Elsewhere, and for what this path does not cover (defaults computed in
Python, literal rendering, implicit RETURNING, executemany with RETURNING on
PostgreSQL), it is ``conn.execute``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.engine.base import Connection
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util.concurrency import greenlet_spawn

from server import sqlite_driver

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class HotResult(IteratorResult[Any]):
    """Rows already fetched, as SQLAlchemy's buffered result hands them out, with the
    statement's row count."""

    rowcount: int = -1


@dataclass(frozen=True)
class _Plan:
    """One compiled form of a statement: its SQL, how to bind a call's parameters, and
    how to read its rows."""

    compiled: SQLCompiler
    sql: str
    names: tuple[str, ...]
    """The bound parameters in the order of the SQL's placeholders."""
    binders: tuple[Callable[[Any], Any] | None, ...]
    expansion: tuple[tuple[str, tuple[str, ...]], ...]
    """Each list parameter (``IN``) with the names of its elements' placeholders."""
    keys: tuple[str, ...] | None
    """The result's columns; None: the statement returns no rows."""
    metadata: SimpleResultMetaData | None
    """How its rows are read, where that does not depend on the rows (not asyncpg)."""

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = self.compiled.construct_params(params, escape_names=False)
        for name, placeholders in self.expansion:
            values.update(zip(placeholders, values[name], strict=True))
        return tuple(
            value if binder is None else binder(value)
            for binder, value in zip(self.binders, (values[n] for n in self.names), strict=True)
        )


def _plan(
    statement: sa.Executable, dialect: Dialect, params: Mapping[str, Any], many: bool
) -> _Plan | None:
    """The statement compiled for `dialect` as SQLAlchemy would for these parameters (their
    keys, and the length of each list); None where executing it takes more than binding and
    running (Python-side defaults, literal rendering, RETURNING SQLAlchemy adds itself,
    named parameters)."""
    assert isinstance(statement, sa.ClauseElement)
    compiled = statement.compile(dialect=dialect, column_keys=sorted(params), for_executemany=many)
    assert isinstance(compiled, SQLCompiler)
    if (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.literal_execute_params
        or (compiled.post_compile_params and many)
        or compiled.implicit_returning
        or compiled.escaped_bind_names
        or compiled.schema_translate_map
        or not compiled.positional
    ):
        return None
    sql: str = compiled.string
    positions: Sequence[str] | None = compiled.positiontup
    processors = dict(compiled._bind_processors)
    expansion: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if compiled.post_compile_params:
        state = compiled.construct_expanded_state(params, escape_names=False)
        sql, positions = state.statement, state.positiontup
        processors.update(state.processors)
        expansion = tuple((k, tuple(v)) for k, v in state.parameter_expansion.items())
    if positions is None:
        return None
    keys = tuple(c.keyname for c in compiled._result_columns) or None
    metadata = None
    if keys and dialect.driver != "asyncpg":  # asyncpg's: at the first rows (`_typed`)
        metadata = SimpleResultMetaData(
            keys,
            _processors=[
                c.type._cached_result_processor(dialect, None) for c in compiled._result_columns
            ],
        )
    names = tuple(positions)
    binders = tuple(processors.get(n) for n in names)
    return _Plan(compiled, sql, names, binders, expansion, keys, metadata)  # type: ignore[arg-type]


MAX_PLANS = 64
"""Compiled forms kept per statement (one per set of parameter keys and list lengths);
past them, SQLAlchemy's own execution."""
_UNPLANNED = object()


class HotStatement:
    """A statement built once, executed without SQLAlchemy's execution layer on SQLite
    (see the module's docstring); `statement` is the Core statement itself."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        self._plans: dict[tuple[Any, ...], _Plan | None] = {}
        self._lists: dict[tuple[Any, ...], tuple[str, ...]] = {}
        """For each dialect and set of parameter keys: the list parameters (``IN``)."""
        self._typed: dict[tuple[Any, ...], SimpleResultMetaData] = {}
        """PostgreSQL: each plan's rows as typed by its columns' types on the wire."""

    def _key(self, dialect: Dialect, params: Mapping[str, Any], many: bool) -> tuple[Any, ...]:
        """What the compiled form depends on: the dialect, executemany, the parameters'
        keys and the length of each list parameter."""
        base = (dialect.name, many, *sorted(params))
        lists = self._lists.get(base)
        if lists is None:
            assert isinstance(self.statement, sa.ClauseElement)
            compiled = self.statement.compile(dialect=dialect, column_keys=sorted(params))
            assert isinstance(compiled, SQLCompiler)
            lists = self._lists[base] = tuple(p.key for p in compiled.post_compile_params)
        return (*base, *(len(params[k]) if k in params else -1 for k in lists))

    async def execute(
        self, conn: AsyncConnection, params: Params = None
    ) -> HotResult | CursorResult[Any]:
        """``conn.execute(self.statement, params)``, the short way where it can."""
        sync = conn.sync_connection
        assert sync is not None
        driver = sqlite_driver.one_hop(conn)
        asyncpg = driver is None and sync.dialect.driver == "asyncpg"
        if driver is None and not asyncpg:
            return await conn.execute(self.statement, params)
        many = isinstance(params, Sequence)
        rows_of = list(params) if isinstance(params, Sequence) else [params or {}]
        first = rows_of[0] if rows_of else {}
        key = self._key(sync.dialect, first, many and len(rows_of) > 1)
        plan = self._plans.get(key, _UNPLANNED)
        if plan is _UNPLANNED and len(self._plans) < MAX_PLANS:
            plan = self._plans[key] = _plan(self.statement, sync.dialect, first, key[1])
        if not isinstance(plan, _Plan) or (asyncpg and key[1] and plan.keys is not None):
            return await conn.execute(self.statement, params)
        bound: Any = [plan.bind(p) for p in rows_of] if key[1] else plan.bind(first)
        if not sync.in_transaction():
            sync.begin()  # as SQLAlchemy's autobegin: the pool's rollback or a commit ends it
        if sync._has_events or sync.engine._has_events:
            for listener in sync.dispatch.before_cursor_execute:
                listener(sync, None, plan.sql, bound, None, key[1])
        if driver is not None:
            return await _on_sqlite(driver, sync, plan, bound, key[1])
        return await self._on_asyncpg(sync, key, plan, bound)

    async def _on_asyncpg(
        self, sync: Connection, key: tuple[Any, ...], plan: _Plan, bound: Any
    ) -> HotResult:
        """One prepared statement on the asyncpg adapter's connection, as its cursor runs
        it (the adapter's lock, transaction and statement cache), without the greenlet;
        executemany (rows written, none read) as asyncpg pipelines it."""
        adapter: Any = sync.connection.dbapi_connection
        failure: Exception | None = None
        async with adapter._execute_mutex:
            try:
                if adapter._transaction is None:
                    await adapter._start_transaction()
                prepared, attributes = await adapter._prepare(
                    plan.sql,
                    sync.dialect._invalidate_schema_cache_asof,  # type: ignore[attr-defined]
                )
                if key[1]:
                    await prepared.executemany(bound)
                    rows, status = [], None  # no count, as SQLAlchemy's executemany
                else:
                    rows = await prepared.fetch(*bound)
                    status = prepared.get_statusmsg()
            except Exception as e:
                failure = e
        if failure is not None:
            try:
                adapter._handle_exception(failure)  # raises it as the adapter's DB-API error
            except Exception as e:
                # SQLAlchemy's own handling: wrapped, and the connection invalidated if lost
                await greenlet_spawn(sync._handle_dbapi_exception, e, plan.sql, bound, None, None)
            raise failure  # not reached: both raise
        metadata = self._typed.get(key)
        if metadata is None and plan.keys is not None:
            # a numeric column's result processor depends on the column's type on the wire
            oids = [a.type.oid for a in attributes]
            metadata = self._typed[key] = SimpleResultMetaData(
                plan.keys,
                _processors=[
                    c.type._cached_result_processor(sync.dialect, oid)
                    for c, oid in zip(plan.compiled._result_columns, oids, strict=True)
                ],
            )
        result = HotResult(metadata or SimpleResultMetaData([]), iter(rows))
        counted = _ROW_COUNT.match(status or "")
        result.rowcount = int(counted.group(1)) if counted else -1
        return result


_ROW_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")
"""The row count in a PostgreSQL command tag, as the asyncpg adapter reads it."""


async def _on_sqlite(
    driver: sqlite_driver.OneHopConnection,
    sync: Connection,
    plan: _Plan,
    bound: Any,
    many: bool,
) -> HotResult:
    try:
        rows, _, rowcount, _, _ = await sqlite_driver.execute(driver, plan.sql, bound, many)
    except sqlite3.Error as e:
        raise sa.exc.DBAPIError.instance(
            plan.sql, bound, e, sqlite3.Error, dialect=sync.dialect
        ) from e
    result = HotResult(plan.metadata or SimpleResultMetaData([]), iter(rows))
    result.rowcount = rowcount
    return result
