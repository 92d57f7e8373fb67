"""An alarm's statements, run straight on SQLite's driver: compiled once, no execution
layer.

SQLAlchemy's execution of a Core statement (cache key and lookup, an execution context,
parameter processing, the async adapter's greenlet, a cursor result) costs 100-150 µs of
CPU on a small machine; SQLite runs one of an alarm's statements in a few. An alarm takes
about twenty of them, so that layer was a fifth of what an alarm costs the server.

A `HotStatement` is a statement built once, with bound parameters (a module constant).
On SQLite it is compiled once by SQLAlchemy for the connection's dialect, and each
execution binds its parameters with the compiled statement's own processors, runs it on
the connection's driver (`server.sqlite_driver`: on the event loop inside a transaction
marked `on_the_loop`, else in one hand-off) and types its rows with the result columns' own
processors. SQLAlchemy's ``before_cursor_execute`` listeners still see it. On other
databases, and for what this path does not cover (defaults computed in Python, literal
rendering, implicit RETURNING), it is ``conn.execute``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler

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
    metadata: SimpleResultMetaData | None
    """None: the statement returns no rows."""

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
    metadata = None
    if compiled._result_columns:
        metadata = SimpleResultMetaData(
            [c.keyname for c in compiled._result_columns],
            _processors=[
                c.type._cached_result_processor(dialect, None) for c in compiled._result_columns
            ],
        )
    names = tuple(positions)
    binders = tuple(processors.get(n) for n in names)
    return _Plan(compiled, sql, names, binders, expansion, metadata)  # type: ignore[arg-type]


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
        driver = sqlite_driver.one_hop(conn)
        if driver is None:
            return await conn.execute(self.statement, params)
        sync = conn.sync_connection
        assert sync is not None
        many = isinstance(params, Sequence)
        rows_of = list(params) if isinstance(params, Sequence) else [params or {}]
        first = rows_of[0] if rows_of else {}
        key = self._key(sync.dialect, first, many and len(rows_of) > 1)
        plan = self._plans.get(key, _UNPLANNED)
        if plan is _UNPLANNED and len(self._plans) < MAX_PLANS:
            plan = self._plans[key] = _plan(self.statement, sync.dialect, first, key[1])
        if not isinstance(plan, _Plan):
            return await conn.execute(self.statement, params)
        bound: Any = [plan.bind(p) for p in rows_of] if key[1] else plan.bind(first)
        if not sync.in_transaction():
            sync.begin()  # as SQLAlchemy's autobegin: the pool's rollback or a commit ends it
        if sync._has_events or sync.engine._has_events:
            for listener in sync.dispatch.before_cursor_execute:
                listener(sync, None, plan.sql, bound, None, key[1])
        try:
            rows, _, rowcount, _, _ = await sqlite_driver.execute(driver, plan.sql, bound, key[1])
        except sqlite3.Error as e:
            raise sa.exc.DBAPIError.instance(
                plan.sql, bound, e, sqlite3.Error, dialect=sync.dialect
            ) from e
        result = HotResult(plan.metadata or SimpleResultMetaData([]), iter(rows))
        result.rowcount = rowcount
        return result
