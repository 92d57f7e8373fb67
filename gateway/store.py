"""The hub's durable store (SQLite through aiosqlite, WAL, fsync on every commit).

Every alarm and every alarm-state change is committed here, together with its outbox entry,
before the device is acknowledged; the uplink drains the outbox in order. A hub killed at
any instant restarts with everything it acknowledged.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity, merge
from gateway.intake import StoredEvent

log = logging.getLogger(__name__)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: the schema every hub shipped with before versioning (user_version 0). Written with
    # IF NOT EXISTS so that a v0 database, which already has these tables, is adopted as is.
    (
        """CREATE TABLE IF NOT EXISTS device_events (
            device_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            alarm_id TEXT,
            received_at_ms INTEGER NOT NULL,
            PRIMARY KEY (device_id, seq)
        )""",
        """CREATE TABLE IF NOT EXISTS alarms (
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
        )""",
        "CREATE INDEX IF NOT EXISTS alarms_open ON alarms (state, raised_at_ms)",
        """CREATE TABLE IF NOT EXISTS outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,            -- alarm | report | fault | data
            ref TEXT NOT NULL,             -- alarm id / report id: the server's idempotency key
            body TEXT NOT NULL,            -- the request body, JSON
            created_at_ms INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            sent_at_ms INTEGER,
            rejected TEXT                  -- the server refused it for good (kept, never dropped)
        )""",
        "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sent_at_ms, id)",
        "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
)
"""Ordered schema migrations: entry i takes a database from version i to i + 1 (`PRAGMA
user_version`). Append only; never edit a shipped entry — hubs in homes have run it."""

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was written by a newer CareHub; opening it could corrupt it."""


def pending_migrations(version: int) -> tuple[tuple[str, ...], ...]:
    """The migrations a database at `version` still needs (none when current)."""
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"hub database schema version {version} is newer than this CareHub understands"
            f" ({SCHEMA_VERSION}): install the newer CareHub again or restore a backup"
        )
    return MIGRATIONS[version:]


class OutboxKind(enum.StrEnum):
    """What an outbox entry uploads; alarms and alarm reports are never dropped to make room."""

    ALARM = "alarm"  # POST /alarms
    REPORT = "report"  # POST /alarm-reports (the elder cancelled)
    FAULT = "fault"  # POST /faults


KEPT_KINDS = frozenset({OutboxKind.ALARM, OutboxKind.REPORT})
"""Never trimmed from a full outbox, and retried fast after an outage."""


@dataclass(frozen=True)
class HubAlarm:
    id: str
    device_id: str
    seq: int | None
    kind: AlarmKind
    severity: Severity
    state: AlarmState
    raised_at_ms: int


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: OutboxKind
    ref: str
    body: dict[str, Any]
    attempts: int


class HubStore:
    """Open with ``async with HubStore(path) as store``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one connection, shared by the hub's tasks

    async def __aenter__(self) -> HubStore:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        try:
            await self._migrate()
        except BaseException:
            await self._db.close()
            self._db = None
            raise
        return self

    async def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION in one transaction: a hub killed mid-upgrade
        restarts from the old version, never from a half-migrated database."""
        async with self._transaction() as db:
            async with db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            todo = pending_migrations(version)
            for statements in todo:
                for sql in statements:
                    await db.execute(sql)
            if todo:
                await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                log.info("hub database %s migrated %d -> %d", self._path, version, SCHEMA_VERSION)

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "HubStore used outside `async with`"
        return self._db

    # ------------------------------------------------------------ device events and alarms

    async def stored_event(self, device_id: str, seq: int) -> StoredEvent | None:
        async with (
            self._lock,
            self.db.execute(
                "SELECT device_id, seq, ts_ms, alarm_id FROM device_events"
                " WHERE device_id=? AND seq=?",
                (device_id, seq),
            ) as cur,
        ):
            row = await cur.fetchone()
        return StoredEvent(row[0], row[1], row[2], row[3]) if row else None

    async def raise_alarm(
        self,
        alarm: HubAlarm,
        event_ts_ms: int | None,
        details: dict[str, Any],
        upload: dict[str, Any] | None,
        now_ms: int,
    ) -> None:
        """Commit the alarm, the device event that raised it, and its outbox entry at once.

        `upload` is None while the alarm waits for its cancel window (not sent yet).
        """
        async with self._transaction() as db:
            if alarm.seq is not None:
                await db.execute(
                    "INSERT OR REPLACE INTO device_events"
                    " (device_id, seq, ts_ms, alarm_id, received_at_ms) VALUES (?, ?, ?, ?, ?)",
                    (alarm.device_id, alarm.seq, event_ts_ms or now_ms, alarm.id, now_ms),
                )
            await db.execute(
                "INSERT INTO alarms (id, device_id, seq, kind, severity, state, raised_at_ms,"
                " event_ts_ms, updated_at_ms, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alarm.id,
                    alarm.device_id,
                    alarm.seq,
                    alarm.kind.value,
                    alarm.severity.value,
                    alarm.state.value,
                    alarm.raised_at_ms,
                    event_ts_ms,
                    now_ms,
                    json.dumps(details),
                ),
            )
            if upload is not None:
                await self._enqueue(db, OutboxKind.ALARM, alarm.id, upload, now_ms)

    async def record_event(
        self, device_id: str, seq: int, ts_ms: int, alarm_id: str | None, now_ms: int
    ) -> None:
        """Remember a handled device event that raised no alarm of its own (e.g. a cancel)."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO device_events"
                " (device_id, seq, ts_ms, alarm_id, received_at_ms) VALUES (?, ?, ?, ?, ?)",
                (device_id, seq, ts_ms, alarm_id, now_ms),
            )

    async def alarm(self, alarm_id: str) -> HubAlarm | None:
        async with (
            self._lock,
            self.db.execute("SELECT * FROM alarms WHERE id=?", (alarm_id,)) as cur,
        ):
            row = await cur.fetchone()
        return _alarm(row) if row else None

    async def alarms_in_state(self, state: AlarmState) -> list[HubAlarm]:
        async with (
            self._lock,
            self.db.execute(
                "SELECT * FROM alarms WHERE state=? ORDER BY raised_at_ms", (state.value,)
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [_alarm(r) for r in rows]

    async def alarm_evidence(self, alarm_id: str) -> tuple[int | None, dict[str, Any]]:
        """The device's event time and the details attached when the alarm was raised."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT event_ts_ms, details FROM alarms WHERE id=?", (alarm_id,)
            ) as cur,
        ):
            row = await cur.fetchone()
        if row is None:
            return None, {}
        return row[0], json.loads(row[1])

    async def latest_open_alarm(self, since_ms: int) -> HubAlarm | None:
        """The newest alarm that is not final and was raised after `since_ms`."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT * FROM alarms WHERE state NOT IN ('resolved', 'cancelled')"
                " AND raised_at_ms >= ?"
                " ORDER BY raised_at_ms DESC LIMIT 1",
                (since_ms,),
            ) as cur,
        ):
            row = await cur.fetchone()
        return _alarm(row) if row else None

    async def set_state(
        self,
        alarm_id: str,
        state: AlarmState,
        now_ms: int,
        outbox: tuple[OutboxKind, str, dict[str, Any]] | None = None,
    ) -> AlarmState | None:
        """Move an alarm forward (stale or backward changes are ignored); returns the new state
        when it changed, else None. `outbox` = (kind, ref, body) is enqueued in the same commit."""
        async with self._transaction() as db:
            async with db.execute("SELECT state FROM alarms WHERE id=?", (alarm_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            current = AlarmState(row[0])
            new = merge(current, state)
            if new == current:
                return None
            await db.execute(
                "UPDATE alarms SET state=?, updated_at_ms=? WHERE id=?",
                (new.value, now_ms, alarm_id),
            )
            if outbox is not None:
                await self._enqueue(db, outbox[0], outbox[1], outbox[2], now_ms)
            return new

    async def enqueue(self, kind: OutboxKind, ref: str, body: dict[str, Any], now_ms: int) -> None:
        async with self._transaction() as db:
            await self._enqueue(db, kind, ref, body, now_ms)

    # ------------------------------------------------------------ outbox

    async def next_pending(self, kinds: frozenset[OutboxKind] | None = None) -> OutboxEntry | None:
        """The oldest entry still to upload; of `kinds` only, when given."""
        only = f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
        async with (
            self._lock,
            self.db.execute(
                "SELECT id, kind, ref, body, attempts FROM outbox"
                f" WHERE sent_at_ms IS NULL AND rejected IS NULL{only} ORDER BY id LIMIT 1",
                tuple(sorted(kinds or ())),
            ) as cur,
        ):
            row = await cur.fetchone()
        if row is None:
            return None
        return OutboxEntry(row[0], OutboxKind(row[1]), row[2], json.loads(row[3]), row[4])

    async def mark_sent(self, entry_id: int, now_ms: int) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET sent_at_ms=? WHERE id=?", (now_ms, entry_id))

    async def mark_attempt(self, entry_id: int) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET attempts=attempts+1 WHERE id=?", (entry_id,))

    async def mark_rejected(self, entry_id: int, reason: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET rejected=? WHERE id=?", (reason[:500], entry_id))

    async def trim_outbox(self, max_entries: int) -> int:
        """Bound the unsent outbox: drop the oldest entries that are not alarms or alarm
        reports (faults, data) until it fits. Alarms are never dropped. Returns how many."""
        async with self._transaction() as db:
            async with db.execute(
                "SELECT count(*) FROM outbox WHERE sent_at_ms IS NULL AND rejected IS NULL"
            ) as cur:
                row = await cur.fetchone()
            excess = (int(row[0]) if row else 0) - max_entries
            if excess <= 0:
                return 0
            cur = await db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at_ms IS NULL"
                " AND rejected IS NULL AND kind NOT IN (?, ?) ORDER BY id LIMIT ?)",
                (*sorted(KEPT_KINDS), excess),
            )
            return cur.rowcount

    async def prune(self, before_ms: int) -> int:
        """Forget what is done and older than `before_ms`: uploaded outbox entries, final
        alarms and device events (the server keeps the history). Returns rows deleted."""
        async with self._transaction() as db:
            deleted = 0
            for sql in (
                "DELETE FROM outbox WHERE sent_at_ms IS NOT NULL AND sent_at_ms < ?",
                "DELETE FROM device_events WHERE received_at_ms < ?",
                "DELETE FROM alarms WHERE state IN ('resolved', 'cancelled') AND updated_at_ms < ?"
                " AND id NOT IN (SELECT ref FROM outbox WHERE sent_at_ms IS NULL)",
            ):
                cur = await db.execute(sql, (before_ms,))
                deleted += cur.rowcount
            return deleted

    async def queue_depth(self) -> int:
        async with (
            self._lock,
            self.db.execute(
                "SELECT count(*) FROM outbox WHERE sent_at_ms IS NULL AND rejected IS NULL"
            ) as cur,
        ):
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------ small values

    async def get(self, key: str) -> str | None:
        async with self._lock, self.db.execute("SELECT value FROM kv WHERE key=?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def put(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------ internals

    @staticmethod
    async def _enqueue(
        db: aiosqlite.Connection, kind: OutboxKind, ref: str, body: dict[str, Any], now_ms: int
    ) -> None:
        await db.execute(
            "INSERT INTO outbox (kind, ref, body, created_at_ms) VALUES (?, ?, ?, ?)",
            (kind, ref, json.dumps(body), now_ms),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db, self._lock)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (fsync'd by synchronous=FULL), ROLLBACK on error."""

    def __init__(self, db: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._db = db
        self._lock = lock

    async def __aenter__(self) -> aiosqlite.Connection:
        await self._lock.acquire()
        try:
            await self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        try:
            await self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


def _alarm(row: aiosqlite.Row) -> HubAlarm:
    return HubAlarm(
        id=row["id"],
        device_id=row["device_id"],
        seq=row["seq"],
        kind=AlarmKind(row["kind"]),
        severity=Severity(row["severity"]),
        state=AlarmState(row["state"]),
        raised_at_ms=row["raised_at_ms"],
    )
