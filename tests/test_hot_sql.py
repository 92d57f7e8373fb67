"""`server.hot_sql`: a statement built once runs on the driver (SQLite's, asyncpg) without
SQLAlchemy's execution layer, and gives what ``conn.execute`` gives: the same rows, typed
the same, the same row counts and errors, in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.db import make_engine, one_of
from server.hot_sql import HotStatement
from server.sqlite_driver import on_the_loop

meta = sa.MetaData()
things = sa.Table(
    "things",
    meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("flag", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("tags", sa.JSON, nullable=True),
    sa.Column("note", sa.String(40), nullable=True),
    sa.Column("share", sa.Float, nullable=True),
)
stamped = sa.Table(
    "stamped",
    meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("made", sa.String(32), nullable=False, default=lambda: uuid.uuid4().hex),
)

BY_IDS = sa.select(things).where(things.c.id.in_(sa.bindparam("p_ids", expanding=True)))
STATEMENTS: list[tuple[str, Any, dict[str, Any]]] = [
    ("typed columns", sa.select(things).where(things.c.id == sa.bindparam("p_id")), {"p_id": "a"}),
    ("a list of none", BY_IDS.order_by(things.c.id), {"p_ids": []}),
    ("a list of one", BY_IDS.order_by(things.c.id), {"p_ids": ["b"]}),
    ("a list of three", BY_IDS.order_by(things.c.id), {"p_ids": ["c", "a", "zz"]}),
    (
        "fixed literals and a bound limit",
        sa.select(things.c.id, sa.func.max(things.c.n).label("top"))
        .where(one_of(things.c.note, ["x", "y"]))
        .group_by(things.c.id)
        .order_by(things.c.id)
        .limit(sa.bindparam("p_limit", type_=sa.Integer)),
        {"p_limit": 2},
    ),
    (
        "a union",
        sa.union_all(
            sa.select(things.c.id).where(things.c.n > sa.bindparam("p_n")),
            sa.select(things.c.id).where(things.c.flag.is_(True)),
        ),
        {"p_n": 1},
    ),
    ("an aggregate", sa.select(sa.func.min(things.c.n)), {}),
    (
        "a parameter used twice, floats read as floats and as decimals",
        sa.select(
            sa.func.sum(things.c.share).label("total"),
            sa.type_coerce(sa.func.max(things.c.share), sa.Numeric(10, 2)).label("exact"),
        ).where((things.c.n >= sa.bindparam("p_n")) | (things.c.n * 2 == sa.bindparam("p_n"))),
        {"p_n": 1},
    ),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'hot.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(meta.create_all)
        await conn.execute(
            things.insert(),
            [
                {
                    "id": "a",
                    "n": 1,
                    "flag": True,
                    "tags": ["x", {"y": 2}],
                    "note": "x",
                    "share": 0.5,
                },
                {"id": "b", "n": 2, "flag": False, "tags": None, "note": "y", "share": None},
                {"id": "c", "n": 3, "flag": False, "tags": {"k": [1]}, "note": None, "share": 2.0},
            ],
        )
    yield engine
    await engine.dispose()


@contextmanager
def executions(engine: AsyncEngine) -> Iterator[tuple[list[str], list[str]]]:
    """(statements SQLAlchemy's execution layer ran, statements sent to the driver)."""
    layered: list[str] = []
    sent: list[str] = []

    def through_layer(_conn: Any, clause: Any, *_: Any) -> None:
        layered.append(str(clause))

    def to_driver(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_execute", through_layer)
    event.listen(engine.sync_engine, "before_cursor_execute", to_driver)
    try:
        yield layered, sent
    finally:
        event.remove(engine.sync_engine, "before_execute", through_layer)
        event.remove(engine.sync_engine, "before_cursor_execute", to_driver)


def as_plain(rows: list[Any]) -> list[tuple[tuple[str, Any], ...]]:
    return [tuple(row._mapping.items()) for row in rows]


@pytest.mark.parametrize("on_loop", [True, False], ids=["on the loop", "in the thread"])
@pytest.mark.parametrize(
    ("what", "statement", "params"), STATEMENTS, ids=[s[0] for s in STATEMENTS]
)
async def test_a_read_gives_what_sqlalchemy_gives_without_its_execution_layer(
    engine: AsyncEngine, on_loop: bool, what: str, statement: Any, params: dict[str, Any]
) -> None:
    hot = HotStatement(statement)
    async with engine.connect() as conn:
        expected = (await conn.execute(statement, params)).all()
        for _ in range(2):  # compiled at the first, from the plan at the second
            with executions(engine) as (layered, sent), loop(conn, on_loop):
                got = (await hot.execute(conn, params)).all()
            assert as_plain(got) == as_plain(expected)
            assert [type(v) for r in got for v in r] == [type(v) for r in expected for v in r]
            assert layered == [] and len(sent) == 1


@contextmanager
def loop(conn: AsyncConnection, on_loop: bool) -> Iterator[None]:
    if on_loop:
        with on_the_loop(conn):
            yield
    else:
        yield


async def test_writes_count_their_rows_and_share_the_callers_transaction(
    engine: AsyncEngine,
) -> None:
    insert = HotStatement(things.insert())
    bump = HotStatement(
        things.update()
        .where(things.c.n >= sa.bindparam("p_n"))
        .values(n=things.c.n + 10, tags=sa.bindparam("p_tags", type_=things.c.tags.type))
        .returning(things.c.id, things.c.n)
    )
    with executions(engine) as (layered, sent):
        async with engine.begin() as conn:
            with on_the_loop(conn):
                one = await insert.execute(conn, {"id": "d", "n": 4, "tags": {"new": True}})
                many = await insert.execute(conn, [{"id": "e", "n": 5}, {"id": "f", "n": 6}])
                moved = (await bump.execute(conn, {"p_n": 5, "p_tags": ["moved"]})).all()
    assert layered == [] and len(sent) == 3
    assert one.rowcount == 1
    if engine.dialect.name == "sqlite":  # asyncpg counts no rows for executemany
        assert many.rowcount == 2
    assert sorted(moved) == [("e", 15), ("f", 16)]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(things.c.id, things.c.tags).order_by("id"))).all()
    assert rows[3:] == [("d", {"new": True}), ("e", ["moved"]), ("f", ["moved"])]
    # outside `engine.begin`: written only when committed, as with conn.execute
    async with engine.connect() as conn:
        await insert.execute(conn, {"id": "g", "n": 7})
    async with engine.connect() as conn:
        await insert.execute(conn, {"id": "h", "n": 8})
        await conn.commit()
    async with engine.connect() as conn:
        ids = (
            (await conn.execute(sa.select(things.c.id).where(things.c.id.in_(["g", "h"]))))
            .scalars()
            .all()
        )
    assert ids == ["h"]


async def test_a_failed_statement_raises_sqlalchemys_error_and_rolls_the_transaction_back(
    engine: AsyncEngine,
) -> None:
    insert = HotStatement(things.insert())
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            with on_the_loop(conn):
                await insert.execute(conn, {"id": "new", "n": 9})
                await insert.execute(conn, {"id": "a", "n": 9})  # the key exists
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(things))).scalar() == 3


async def test_what_needs_the_execution_layer_still_goes_through_it(
    engine: AsyncEngine,
) -> None:
    """A default computed in Python at each execution is SQLAlchemy's to compute."""
    insert = HotStatement(stamped.insert())
    with executions(engine) as (layered, sent):
        async with engine.begin() as conn:
            await insert.execute(conn, {})
            await insert.execute(conn, {"id": 5})
    assert len(layered) == 2 and len(sent) == 2
    async with engine.connect() as conn:
        made = (await conn.execute(sa.select(stamped.c.made))).scalars().all()
    assert len(made) == 2 and all(len(m) == 32 for m in made)


def test_an_alarm_event_insert_takes_the_short_way_on_both_databases() -> None:
    """Its table's key is the database's to number; fetching the new key (RETURNING, on
    PostgreSQL) would send every event through the execution layer."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
    from sqlalchemy.dialects.sqlite.aiosqlite import dialect as aiosqlite_dialect

    from server.hot_sql import _plan
    from server.store import INSERT_EVENT

    event_row = {"alarm_id": "a", "hub_id": "h", "kind": "state", "state": "open", "at_ms": 1}
    for dialect in (asyncpg_dialect(), aiosqlite_dialect()):
        assert _plan(INSERT_EVENT.statement, dialect, event_row, many=False) is not None
