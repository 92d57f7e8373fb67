"""Migrations: the tables in `server.schema` and the Alembic history agree (`alembic check`),
and alarms stored before ids were scoped per hub are still found by their hub's id."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection

from carehub.api_contract import AlarmUpload
from server.db import alembic_config, make_engine, migrate
from server.schema import alarm_events, alarms
from server.store import HubIdentity, ServerStore
from tests.conftest import DIRECTORY


def _check(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.check(cfg)


def _stamp_head(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.stamp(cfg, "head")


async def test_models_and_migrations_agree(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            await conn.run_sync(_check)  # raises CommandError naming any difference
    finally:
        await engine.dispose()


async def test_alembic_check_sees_a_missing_migration(tmp_path: Path) -> None:
    """The check above can fail: tables built without migration 0002, but stamped as if they
    had it, differ from `server.schema`."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'server.db'}")
    try:
        await migrate(engine, "0001")
        async with engine.begin() as conn:
            await conn.run_sync(_stamp_head)
        async with engine.connect() as conn:
            with pytest.raises(CommandError, match="hub_alarm_id"):
                await conn.run_sync(_check)
    finally:
        await engine.dispose()


async def test_alarms_from_before_0002_keep_their_hub_ids(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token="t" * 20))
    try:
        await migrate(engine, "0001")
        async with engine.begin() as conn:  # the 0001 schema's rows, as that code wrote them
            for sql in (
                "INSERT INTO teams (id, name) VALUES ('team-a', 'Team A')",
                "INSERT INTO doctors (id, team_id, name, phone) VALUES"
                " ('dr-a', 'team-a', 'Doctor A', '+8613800000001')",
                "INSERT INTO elders (id, team_id, name) VALUES ('elder-1', 'team-a', 'Zhang')",
                "INSERT INTO hubs (id, elder_id, token_hash) VALUES ('hub-1', 'elder-1', 'x')",
                "INSERT INTO devices (id, hub_id, kind) VALUES ('btn-1', 'hub-1', 'button')",
            ):
                await conn.execute(sa.text(sql))
            await conn.execute(
                sa.text(
                    "INSERT INTO alarms (id, hub_id, elder_id, device_id, kind, severity, state,"
                    " raised_at_ms, received_at_ms, updated_at_ms, details) VALUES ('old-1',"
                    " 'hub-1', 'elder-1', 'btn-1', 'button', 'critical', 'dispatched', 1, 2, 3,"
                    " '{}')"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO alarm_events (alarm_id, hub_id, kind, state, at_ms, detail)"
                    " VALUES ('old-1', 'hub-1', 'state', 'dispatched', 3, '')"
                )
            )
        await migrate(engine)
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(alarms.c.id, alarms.c.hub_alarm_id))).one()
            assert (row.id, row.hub_alarm_id) == ("old-1", "old-1")
            assert (
                await conn.execute(sa.select(sa.func.count()).select_from(alarm_events))
            ).scalar() == 1
        store = ServerStore(engine)
        hub = HubIdentity("hub-1", "elder-1")
        again = AlarmUpload(alarm_id="old-1", device_id="btn-1", kind="button", raised_at_ms=1)
        stored = await store.store_alarm(hub, again, 10)
        assert (stored.state, stored.created) == ("dispatched", False)
        updates = await store.updates_for_hub("hub-1", 0)
        assert [(u.alarm_id, u.state) for u in updates] == [("old-1", "dispatched")]
    finally:
        await engine.dispose()
