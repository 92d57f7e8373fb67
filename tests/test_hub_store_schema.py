"""The hub database is versioned: a hub installed before versioning keeps everything it
holds when upgraded, migrations are idempotent, and a newer database is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from carehub.alarm_lifecycle import AlarmState
from gateway.store import SCHEMA_VERSION, HubStore, SchemaTooNew

V0_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_events (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    alarm_id TEXT,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE TABLE IF NOT EXISTS alarms (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    seq INTEGER,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    raised_at_ms INTEGER NOT NULL,
    event_ts_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms (state, raised_at_ms);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,            -- alarm | report | fault | data
    ref TEXT NOT NULL,             -- alarm id / report id: the server's idempotency key
    body TEXT NOT NULL,            -- the request body, JSON
    created_at_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at_ms INTEGER,
    rejected TEXT                  -- the server refused it for good (kept, never dropped)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sent_at_ms, id);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
"""The schema as shipped before versioning (user_version 0), copied verbatim."""


def write_v0_hub(path: Path) -> None:
    """A v0 hub's database as the old code wrote it: a queued button alarm (sent once,
    failed), a fall in its cancel window, kv entries."""
    con = sqlite3.connect(path)
    con.executescript(V0_SCHEMA)
    con.execute("INSERT OR REPLACE INTO device_events VALUES (?, ?, ?, ?, ?)",
                ("btn-1", 7, 1_000, "a-btn", 1_050))  # fmt: skip
    alarm_sql = "INSERT INTO alarms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    con.execute(alarm_sql, ("a-btn", "btn-1", 7, "button", "critical", "received",
                            1_050, 1_000, 1_050, "{}"))  # fmt: skip
    con.execute(alarm_sql, ("a-fall", "pend-1", None, "fall", "critical", "pending_cancel",
                            2_000, 1_990, 2_000, json.dumps({"peak_g": 3.1})))  # fmt: skip
    con.execute(
        "INSERT INTO outbox (kind, ref, body, created_at_ms, attempts) VALUES (?, ?, ?, ?, ?)",
        ("alarm", "a-btn", json.dumps({"alarm_id": "a-btn", "device_id": "btn-1"}), 1_050, 1),
    )
    con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", ("alarm_updates_cursor", "41"))
    con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", ("faults", '[["btn-1", "battery_low"]]'))
    con.commit()
    con.close()


def user_version(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


async def test_a_v0_hub_database_is_migrated_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    write_v0_hub(db)
    assert user_version(db) == 0
    async with HubStore(db) as store:
        entry = await store.next_pending()
        assert entry is not None and entry.kind == "alarm" and entry.ref == "a-btn"
        assert entry.body == {"alarm_id": "a-btn", "device_id": "btn-1"} and entry.attempts == 1
        [fall] = await store.alarms_in_state(AlarmState.PENDING_CANCEL)
        assert fall.id == "a-fall" and fall.raised_at_ms == 2_000
        assert await store.alarm_evidence("a-fall") == (1_990, {"peak_g": 3.1})
        stored = await store.stored_event("btn-1", 7)
        assert stored is not None and stored.alarm_id == "a-btn"
        assert await store.get("alarm_updates_cursor") == "41"
        assert await store.get("faults") == '[["btn-1", "battery_low"]]'
        await store.mark_sent(entry.id, 3_000)  # the queued alarm is delivered as before
        assert await store.next_pending() is None
    assert user_version(db) == SCHEMA_VERSION


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    write_v0_hub(db)
    for _ in range(2):
        async with HubStore(db) as store:
            assert await store.queue_depth() == 1
            assert len(await store.alarms_in_state(AlarmState.RECEIVED)) == 1
    assert user_version(db) == SCHEMA_VERSION
    async with HubStore(tmp_path / "fresh.db") as store:  # a new hub starts at the latest
        await store.put("k", "v")
    async with HubStore(tmp_path / "fresh.db") as store:
        assert await store.get("k") == "v"
    assert user_version(tmp_path / "fresh.db") == SCHEMA_VERSION


async def test_a_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    write_v0_hub(db)
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNew, match="newer than this CareHub"):
        async with HubStore(db):
            pass
    assert user_version(db) == SCHEMA_VERSION + 1
