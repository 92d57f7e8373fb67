"""The hub's durable store (SQLite through aiosqlite, WAL, fsync on every commit).

Every alarm and every alarm-state change is committed here, together with its outbox entry,
before the device is acknowledged; the uplink drains the outbox in order per device, taking
the devices in turn (`gateway.outbox_order`), so one device's backlog never holds up another
device's alarm. A hub killed at any instant restarts with everything it acknowledged.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity, merge
from gateway.intake import StoredEvent
from gateway.outbox_order import OutboxHead, next_head
from gateway.store_check import (
    StoreProblem,
    aside_name,
    file_problem,
    files_to_move,
    marker_path,
)

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
    # v2: activity seen by the home's sensors (motion, presence, doors), kept on the hub for
    # the inactivity rules; never uploaded.
    (
        """CREATE TABLE activity (
            device_id TEXT NOT NULL,
            kind TEXT NOT NULL,            -- motion | presence | door_opened | door_closed
            at_ms INTEGER NOT NULL
        )""",
        "CREATE INDEX activity_by_time ON activity (at_ms)",
    ),
    # v3: the elder's days as running aggregates (gateway.day_aggregate), for the daily
    # summary and the learnt rhythm; only the summary of a closed day is uploaded.
    (
        """CREATE TABLE day_aggregates (
            day TEXT PRIMARY KEY,          -- the centre's local date, YYYY-MM-DD
            body TEXT NOT NULL,            -- DayAggregate as JSON
            closed INTEGER NOT NULL DEFAULT 0,  -- 1: its summary is in the outbox
            updated_at_ms INTEGER NOT NULL
        )""",
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


class StoreUnrecoverable(Exception):
    """The store is damaged and could not be set aside, or a fresh one could not be made:
    the hub cannot keep a promise it cannot write down, so it stops (exit non-zero)."""


class StoreDamaged(Exception):
    """Found while running: the store failed its integrity check. The hub stops; at the next
    start the check sets the store aside and begins a fresh one."""


_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)


def is_corruption(e: BaseException) -> bool:
    """SQLite says the file is damaged (not merely locked, full or unreadable just now: a
    store another process holds, or a disk that comes back, must never be set aside)."""
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _CORRUPT_CODES
    return "malformed" in str(e) or "not a database" in str(e)


def is_storage_error(e: BaseException) -> bool:
    """An error of the store rather than of the data written (a constraint a message broke)
    or of the code: damaged file, I/O error, disk full, database locked."""
    return isinstance(e, sqlite3.DatabaseError) and not isinstance(
        e, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError)
    )


@dataclass(frozen=True)
class StoreDamage:
    """A store found damaged at start and set aside: what the hub reports as a fault."""

    problem: StoreProblem
    detail: str
    moved: tuple[Path, ...]
    """Where the damaged files are now (a note when the store was missing). The fault clears
    once a person has removed them all."""


class OutboxKind(enum.StrEnum):
    """What an outbox entry uploads; alarms and alarm reports are never dropped to make room."""

    ALARM = "alarm"  # POST /alarms
    REPORT = "report"  # POST /alarm-reports (the elder cancelled)
    FAULT = "fault"  # POST /faults
    SUMMARY = "summary"  # POST /hub/summaries (a day's aggregates; ref summary:<day>)


STILLNESS_KEY = "stillness"
"""kv key of the movement state that crosses midnight (`gateway.daily_watch.Stillness`)."""

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
    device_id: str = ""
    """The device the entry is about (an alarm report's: its alarm's device)."""


SUMMARIES_QUEUE = ":summaries"
"""The outbox queue of the daily summaries: a name no device id can take (`DEVICE_ID_PATTERN`),
so a summary the server does not take yet (an older server: 404, retried) never holds up
the hub's own fault reports, which queue under ``""``."""

_ENTRY_DEVICE = (
    "CASE WHEN o.kind = 'report' THEN (SELECT a.device_id FROM alarms a"
    " WHERE a.id = json_extract(o.body, '$.alarm_id'))"
    f" WHEN o.kind = 'summary' THEN '{SUMMARIES_QUEUE}'"
    " ELSE json_extract(o.body, '$.device_id') END"
)
"""SQL: the device an outbox row `o` is about (alarms and faults name it, reports their alarm;
summaries have a queue of their own)."""


class HubStore:
    """Open with ``async with HubStore(path) as store``."""

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one connection, shared by the hub's tasks
        self.damage: StoreDamage | None = None
        """Set when the store was found damaged at start and replaced by a fresh one."""

    async def __aenter__(self) -> HubStore:
        """Open the store after checking it (`gateway.store_check`, then SQLite's
        ``quick_check``); a damaged one is set aside and a fresh one begun (`damage`)."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        problem = file_problem(self._path)
        detail = ""
        if problem is None:
            try:
                await self._open()
            except StoreDamaged as e:
                problem, detail = StoreProblem.MALFORMED, f"quick_check: {e}"
            except sqlite3.DatabaseError as e:
                if not is_corruption(e):
                    raise  # locked, I/O error, cannot open: not a reason to set it aside
                problem, detail = StoreProblem.MALFORMED, f"{type(e).__name__}: {e}"
        if problem is not None:
            self.damage = self._set_aside(problem, detail)
            try:
                await self._open()
            except sqlite3.DatabaseError as e:
                raise StoreUnrecoverable(f"a fresh store at {self._path} failed: {e}") from e
        marker = marker_path(self._path)
        if not marker.exists():
            marker.write_text("a CareHub hub store lives beside this file; keep it\n")
        return self

    async def _open(self) -> None:
        """Connect, check and migrate; raises StoreDamaged when quick_check finds damage, or
        SQLite's error (the connection is closed again: its thread would keep the process
        alive)."""
        self._db = await aiosqlite.connect(
            self._path, isolation_level=None, timeout=self._busy_timeout_s
        )
        try:
            self._db.row_factory = aiosqlite.Row
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=FULL")
            problem = await self.check()
            if problem is not None:
                raise StoreDamaged(problem)
            await self._migrate()
        except BaseException:
            await self._db.close()
            self._db = None
            raise

    async def check(self) -> str | None:
        """SQLite's ``quick_check`` (the b-trees' structure, without matching indexes to
        their tables: proportional to the store's size, a second for a pruned hub store on
        an SD card); None when sound, else its first findings. A store too damaged to be
        read answers with SQLite's error; one that cannot be read just now (locked, an I/O
        error) counts as sound: failing, not damaged."""
        try:
            async with self._lock, self.db.execute("PRAGMA quick_check(5)") as cur:
                rows = [str(r[0]) for r in await cur.fetchall()]
        except sqlite3.DatabaseError as e:
            if not is_corruption(e):
                log.warning("hub store check not possible now: %s: %s", type(e).__name__, e)
                return None
            return f"{type(e).__name__}: {e}"
        return None if rows == ["ok"] else "; ".join(rows).replace("\n", "; ")[:300]

    def _set_aside(self, problem: StoreProblem, detail: str) -> StoreDamage:
        """Rename the store and its companions out of the way (never delete them)."""
        now = datetime.now(UTC)
        moved = []
        try:
            for path in files_to_move(self._path):
                target = aside_name(path, problem, now)
                n = 1
                while target.exists():
                    target = target.with_name(f"{aside_name(path, problem, now).name}.{n}")
                    n += 1
                os.rename(path, target)
                moved.append(target)
            if not moved:  # the store was gone: a note stands for it (removed = looked at)
                note = aside_name(self._path, problem, now)
                note.write_text("the hub's store was gone when the hub started\n")
                moved.append(note)
            _fsync_dir(self._path.parent)
        except OSError as e:
            raise StoreUnrecoverable(
                f"hub store {self._path} is damaged ({problem}) and could not be moved aside: {e}"
            ) from e
        log.error(
            "hub store %s damaged (%s%s): moved aside as %s; starting a fresh store",
            self._path,
            problem,
            f": {detail}" if detail else "",
            ", ".join(p.name for p in moved) or "nothing (the file was gone)",
        )
        return StoreDamage(problem, detail, tuple(moved))

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
            db, self._db = self._db, None
            try:
                await db.close()  # its thread stops even when this raises
            except sqlite3.DatabaseError as e:  # a damaged store's last checkpoint
                log.warning("hub store %s closed with an error: %s", self._path, e)

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

    async def unsent_alarms(self) -> list[HubAlarm]:
        """Alarms whose upload waits in the outbox (the server does not have them), oldest
        first."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT alarms.* FROM alarms JOIN outbox ON outbox.ref = alarms.id"
                " WHERE outbox.kind = ? AND outbox.sent_at_ms IS NULL"
                " AND outbox.rejected IS NULL ORDER BY outbox.id",
                (OutboxKind.ALARM.value,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [_alarm(r) for r in rows]

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

    async def open_alarm_of(
        self, device_id: str, kind: AlarmKind, unless_marked: str = ""
    ) -> HubAlarm | None:
        """The device's newest alarm of `kind` that is neither resolved nor cancelled (nor
        has `true` under the details key `unless_marked`, e.g. a self-test's)."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT * FROM alarms WHERE device_id=? AND kind=?"
                " AND state NOT IN ('resolved', 'cancelled')"
                " AND json_extract(details, '$.' || ?) IS NOT 1"
                " ORDER BY raised_at_ms DESC LIMIT 1",
                (device_id, kind.value, unless_marked or "-"),
            ) as cur,
        ):
            row = await cur.fetchone()
        return _alarm(row) if row else None

    async def join_alarm(
        self,
        device_id: str,
        seq: int,
        ts_ms: int,
        alarm_id: str,
        now_ms: int,
        upload: tuple[str, dict[str, Any]] | None = None,
    ) -> int:
        """A press that joined its device's open alarm: the event is remembered (a retry is
        answered alike) and counted on the alarm, in one commit, with `upload` = (ref, body)
        when the server is to hear of it. Returns the alarm's count of joined presses."""
        async with self._transaction() as db:
            if upload is not None:
                await self._enqueue(db, OutboxKind.ALARM, upload[0], upload[1], now_ms)
            await db.execute(
                "INSERT OR REPLACE INTO device_events"
                " (device_id, seq, ts_ms, alarm_id, received_at_ms) VALUES (?, ?, ?, ?, ?)",
                (device_id, seq, ts_ms, alarm_id, now_ms),
            )
            await db.execute(
                "UPDATE alarms SET details = json_set(details, '$.presses_joined',"
                " coalesce(json_extract(details, '$.presses_joined'), 0) + 1) WHERE id=?",
                (alarm_id,),
            )
            async with db.execute(
                "SELECT json_extract(details, '$.presses_joined') FROM alarms WHERE id=?",
                (alarm_id,),
            ) as cur:
                row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

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

    # ------------------------------------------------------------ activity

    async def record_activity(self, device_id: str, kind: str, at_ms: int) -> None:
        """Someone moved, was present, opened or closed a door (a sensor's event)."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO activity (device_id, kind, at_ms) VALUES (?, ?, ?)",
                (device_id, kind, at_ms),
            )

    async def activity_since(self, since_ms: int) -> list[tuple[str, str, int]]:
        """(device id, kind, epoch ms) of the activity recorded since `since_ms`, oldest first."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT device_id, kind, at_ms FROM activity WHERE at_ms >= ? ORDER BY at_ms",
                (since_ms,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # ------------------------------------------------------------ the elder's days

    async def save_days(self, days: list[tuple[str, str]], stillness: str, now_ms: int) -> None:
        """Write the open days' running aggregates (day, JSON) and the movement state."""
        async with self._transaction() as db:
            for day, body in days:
                await db.execute(
                    "INSERT INTO day_aggregates (day, body, closed, updated_at_ms)"
                    " VALUES (?, ?, 0, ?) ON CONFLICT (day) DO UPDATE SET body=excluded.body,"
                    " updated_at_ms=excluded.updated_at_ms WHERE closed=0",
                    (day, body, now_ms),
                )
            await db.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (STILLNESS_KEY, stillness)
            )

    async def close_day(self, day: str, body: str, summary: dict[str, Any], now_ms: int) -> bool:
        """Close a day and queue its summary, at once; False (nothing queued) when the day
        was closed already: a summary is queued once per day."""
        async with self._transaction() as db:
            async with db.execute("SELECT closed FROM day_aggregates WHERE day=?", (day,)) as cur:
                row = await cur.fetchone()
            if row is not None and row[0]:
                return False
            await db.execute(
                "INSERT OR REPLACE INTO day_aggregates (day, body, closed, updated_at_ms)"
                " VALUES (?, ?, 1, ?)",
                (day, body, now_ms),
            )
            await self._enqueue(db, OutboxKind.SUMMARY, f"summary:{day}", summary, now_ms)
            return True

    async def days(self, closed: bool, limit: int = 1000) -> list[str]:
        """The stored days' aggregates (JSON), open or closed, the newest `limit`, oldest
        first."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT body FROM (SELECT day, body FROM day_aggregates WHERE closed=?"
                " ORDER BY day DESC LIMIT ?) ORDER BY day",
                (int(closed), limit),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [str(r[0]) for r in rows]

    async def last_day(self) -> str | None:
        async with self._lock, self.db.execute("SELECT max(day) FROM day_aggregates") as cur:
            row = await cur.fetchone()
        return str(row[0]) if row and row[0] is not None else None

    async def forget_open_day(self, day: str) -> None:
        """Drop a day never to be summarised (counted on a clock that was far behind)."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM day_aggregates WHERE day=? AND closed=0", (day,))

    async def forget_days(self, before_day: str) -> int:
        """Drop closed days older than `before_day` (the rhythm needs the last few weeks)."""
        async with self._transaction() as db:
            cur = await db.execute(
                "DELETE FROM day_aggregates WHERE closed=1 AND day < ?", (before_day,)
            )
            return cur.rowcount

    # ------------------------------------------------------------ outbox

    async def outbox_heads(self) -> list[OutboxHead]:
        """Each device's oldest unsent entry, alarms and alarm reports apart from faults
        (`gateway.outbox_order.next_head` picks one)."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT device, kind IN (?, ?) AS urgent, min(id) FROM"
                f" (SELECT o.id, o.kind, coalesce({_ENTRY_DEVICE}, '') AS device FROM outbox o"
                "  WHERE o.sent_at_ms IS NULL AND o.rejected IS NULL)"
                " GROUP BY device, urgent",
                tuple(sorted(KEPT_KINDS)),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [OutboxHead(str(r[0]), bool(r[1]), int(r[2])) for r in rows]

    async def next_pending(self, after_device: str | None = None) -> OutboxEntry | None:
        """The entry to upload next: in order per device, the devices in turn after
        `after_device` (the one served last), alarms before faults."""
        entry_id = next_head(await self.outbox_heads(), after_device)
        if entry_id is None:
            return None
        async with (
            self._lock,
            self.db.execute(
                f"SELECT o.id, o.kind, o.ref, o.body, o.attempts, coalesce({_ENTRY_DEVICE}, '')"
                " FROM outbox o WHERE o.id=?",
                (entry_id,),
            ) as cur,
        ):
            row = await cur.fetchone()
        if row is None:
            return None
        return OutboxEntry(row[0], OutboxKind(row[1]), row[2], json.loads(row[3]), row[4], row[5])

    async def mark_sent(self, entry_id: int, now_ms: int) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET sent_at_ms=? WHERE id=?", (now_ms, entry_id))

    async def mark_attempt(self, entry_id: int) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET attempts=attempts+1 WHERE id=?", (entry_id,))

    async def replace_body(self, entry_id: int, body: dict[str, Any]) -> None:
        """Send this instead next time (an alarm's minimal form, after a refusal for good)."""
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET body=? WHERE id=?", (json.dumps(body), entry_id))

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
                "DELETE FROM activity WHERE at_ms < ?",
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


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable before a fresh store is written beside them."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
