"""All of the server's SQL, behind plain async methods (SQLAlchemy Core, SQLite or PostgreSQL)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from carehub.alarm_lifecycle import FINAL_STATES, AlarmKind, AlarmState, Severity, merge
from carehub.api_contract import (
    HUB_OFFLINE,
    HUB_REFUSED,
    AlarmUpdate,
    AlarmUpload,
    DeviceFlag,
    FaultReport,
)
from carehub.clock import Clock, SystemClock
from carehub.mqtt_contract import RESPONDER_MAX_CHARS
from server.alarm_repeats import Joined, OpenAlarm, join
from server.auth import hash_token, revoked_match
from server.db import dialect_insert
from server.device_homes import alarm_flag
from server.fault_reports import Incoming, Latest, Outcome, decide
from server.hot_sql import HotStatement
from server.hub_identities import HubIdentities, HubIdentity
from server.schema import (
    alarm_events,
    alarm_repeats,
    alarms,
    device_homes,
    devices,
    doctors,
    elders,
    escalations,
    faults,
    hubs,
    hubs_version,
    notifications,
    teams,
)
from server.sqlite_driver import on_the_loop
from server.sqlite_writer import SqliteWriter
from server.welfare import joins_open_alarm, starts_ladder


@dataclass(frozen=True)
class Stored:
    """What became of an upload: its alarm's state, whether this upload was new, and, for a
    repeat, the open alarm it joined."""

    state: AlarmState
    created: bool
    joined: Joined | None = None
    flag: DeviceFlag | None = None


POLICY_PENDING = ""
"""A ladder's `policy_id` until its first step: the step chooses the policy of the alarm's
class from the directory (`CareMap.policy_for`), which the worker has at hand."""


def new_ladder(alarm_id: str, now_ms: int) -> dict[str, Any]:
    """The `escalations` row of a new alarm: running, its first step due now. Inserted in
    the alarm's own transaction, so no alarm is ever stored without a ladder (a kill -9
    after the commit leaves the step due, never skipped) and the alarm reaches its first
    SMS in one commit fewer."""
    return {
        "alarm_id": alarm_id,
        "policy_id": POLICY_PENDING,
        "status": "running",
        "position": 0,
        "due_at_ms": now_ms,
        "members": [],
        "dispatcher": False,
        "started_at_ms": now_ms,
        "updated_at_ms": now_ms,
    }


REFUSED_NOTE_EVERY_MS = 60_000
"""A revoked hub's calls refresh its `hub_refused` fault at most this often (per process)."""
REFUSED_QUIET_MS = 600_000
"""A `hub_refused` fault clears after this long without a call from the hub."""


class UnknownAlarm(LookupError):
    """No alarm with this id among the hub's own (another hub's alarm counts as none)."""


class UnknownDevice(LookupError):
    """The device is not paired with the hub that sent the request."""

    def __init__(self, device_id: str) -> None:
        super().__init__(f"device {device_id} is not paired with this hub")
        self.device_id = device_id


class ServerStore:
    def __init__(
        self,
        engine: AsyncEngine,
        merge_repeats: bool = True,
        hub_auth_ttl_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.merge_repeats = merge_repeats
        self.hub_identities = HubIdentities(clock or SystemClock(), hub_auth_ttl_s)
        """Token hash → hub, for `hub_by_token`; other stores writing hubs clear it."""
        # SQLite has one writer: this process's writers queue for it (`SqliteWriter`).
        # PostgreSQL needs no such lock.
        self._writer: SqliteWriter | None = (
            SqliteWriter(engine) if engine.dialect.name == "sqlite" else None
        )
        self._reads = (
            engine
            if self._writer is not None
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._refused_noted: dict[str, int] = {}
        """Revoked hub id → when its refused call was last written (bounded by the hubs)."""

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (committed on exit, rolled back on error)."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._writer.transaction() as conn:
            yield conn

    def read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads, outside any transaction on PostgreSQL (autocommit): a
        read then costs one round trip per statement, not a BEGIN and a ROLLBACK besides.
        At READ COMMITTED each statement sees what was committed when it started, in a
        transaction or not. Write nothing on it."""
        return self._reads.connect()

    @contextlib.asynccontextmanager
    async def point_read(self) -> AsyncIterator[AsyncConnection]:
        """A `read` of a few rows found by index, on the event loop on SQLite
        (`server.sqlite_driver`): for an alarm's path, not for the console's scans."""
        async with self.read() as conn:
            with on_the_loop(conn):
                yield conn

    def write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction for the other stores sharing this process's writer (the
        dispatch wing): on SQLite they queue behind the same lock as this store's own."""
        return self._write()

    # ------------------------------------------------------------ hubs

    async def hub_by_token(self, token: str) -> HubIdentity | None:
        """The hub whose token this is, or None (unknown or revoked). Mostly from memory
        (`server.hub_identities`): a token revoked by another process works there for at
        most about `hub_auth_ttl_s`."""
        digest = hash_token(token)
        known = self.hub_identities.get(digest)
        if known is not None:
            return known
        lookup = self.hub_identities.begin()
        async with self.engine.connect() as conn:
            # one statement, one snapshot: the version the cache is checked against and
            # the hub as of that version (an outer join: the version row is always there)
            row = (
                await conn.execute(
                    sa.select(
                        hubs_version.c.version, hubs.c.id, hubs.c.elder_id, hubs.c.household_id
                    )
                    .select_from(hubs_version)
                    .outerjoin(hubs, hubs.c.token_hash == digest)
                    .where(hubs_version.c.id == 1)
                )
            ).one()
        hub = HubIdentity(row.id, row.elder_id, row.household_id) if row.id is not None else None
        self.hub_identities.learn(lookup, int(row.version), digest, hub)
        return hub

    async def hub_config(self, hub: HubIdentity) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            elder = (
                await conn.execute(
                    sa.select(elders, teams.c.time_zone)
                    .join(teams, teams.c.id == elders.c.team_id)
                    .where(elders.c.id == hub.elder_id)
                )
            ).one()
            devs = (
                await conn.execute(
                    sa.select(devices.c.id, devices.c.kind)
                    .where(devices.c.hub_id == hub.hub_id)
                    .order_by(devices.c.id)
                )
            ).all()
        return {
            "hub_id": hub.hub_id,
            "elder_id": hub.elder_id,
            "care_plan": {
                "spo2_scale2": elder.spo2_scale2,
                "fall_sensitivity": elder.fall_sensitivity,
                "on_oxygen": elder.on_oxygen,
                "wearable_channels": elder.wearable_channels,
                "time_zone": elder.time_zone,
                "check_in": elder.check_in,
                "inactivity": elder.inactivity,
            },
            "devices": [{"device_id": d.id, "kind": d.kind} for d in devs],
        }

    async def record_heartbeats(self, beats: dict[str, tuple[int, dict[str, Any]]]) -> list[str]:
        """Store many hubs' latest heartbeats in one transaction; the hubs that were offline
        (came back: their hub fault is cleared)."""
        async with self._write() as conn:
            before = (
                await conn.execute(
                    sa.select(hubs.c.id, hubs.c.online, hubs.c.last_seen_ms).where(
                        hubs.c.id.in_(list(beats))
                    )
                )
            ).all()
            if not before:
                return []
            await conn.execute(
                hubs.update()
                .where(hubs.c.id == sa.bindparam("hub"))
                .values(
                    last_seen_ms=sa.bindparam("seen"), health=sa.bindparam("beat"), online=True
                ),
                [{"hub": r.id, "seen": beats[r.id][0], "beat": beats[r.id][1]} for r in before],
            )
            back = [r.id for r in before if not r.online]
            for r in before:
                if not r.online and r.last_seen_ms is not None:
                    await _hub_fault(conn, r.id, False, beats[r.id][0], "heartbeats resumed")
        return back

    async def mark_stale_hubs_offline(self, now_ms: int, after_ms: int) -> list[str]:
        async with self._write() as conn:
            rows = (
                await conn.execute(
                    sa.select(hubs.c.id).where(
                        hubs.c.online.is_(True), hubs.c.last_seen_ms < now_ms - after_ms
                    )
                )
            ).all()
            ids = [r.id for r in rows]
            if ids:
                await conn.execute(hubs.update().where(hubs.c.id.in_(ids)).values(online=False))
                for hub_id in ids:
                    await _hub_fault(conn, hub_id, True, now_ms, "no heartbeat")
        return ids

    # ------------------------------------------------------------ refused hubs

    async def note_refused_token(self, token: str, now_ms: int) -> str | None:
        """A request carried a token no hub has. When it is the revoked credential of a hub
        (moved to another household), that hub still calls and may hold alarms nobody has
        seen: it gets an active `hub_refused` fault on the health board, its `updated_at_ms`
        kept fresh at most once a minute per process. Returns the hub id when the fault is
        new. Any other token leaves no trace."""
        async with self.engine.connect() as conn:
            hub_id = (
                await conn.execute(
                    sa.select(hubs.c.id).where(hubs.c.token_hash == revoked_match(token))
                )
            ).scalar()
        if hub_id is None:
            return None
        last = self._refused_noted.get(hub_id)
        if last is not None and 0 <= now_ms - last < REFUSED_NOTE_EVERY_MS:
            return None
        self._refused_noted[hub_id] = now_ms
        async with self._write() as conn:
            open_fault = (
                await conn.execute(
                    sa.select(faults.c.id).where(
                        faults.c.hub_id == hub_id,
                        faults.c.fault == HUB_REFUSED,
                        faults.c.active.is_(True),
                    )
                )
            ).scalar()
            if open_fault is not None:
                await conn.execute(
                    faults.update().where(faults.c.id == open_fault).values(updated_at_ms=now_ms)
                )
                return None
            await conn.execute(
                faults.insert().values(
                    hub_id=hub_id,
                    device_id=hub_id,
                    fault=HUB_REFUSED,
                    active=True,
                    since_ms=now_ms,
                    updated_at_ms=now_ms,
                    detail="",
                    report_id=f"hub-{uuid.uuid4().hex}",
                )
            )
        return str(hub_id)

    async def clear_quiet_refused(self, now_ms: int) -> list[str]:
        """Clear the `hub_refused` faults of hubs silent for `REFUSED_QUIET_MS` (re-enrolled,
        or switched off): the hubs whose fault cleared."""
        async with self._write() as conn:
            rows = (
                await conn.execute(
                    sa.select(faults.c.id, faults.c.hub_id).where(
                        faults.c.fault == HUB_REFUSED,
                        faults.c.active.is_(True),
                        faults.c.updated_at_ms < now_ms - REFUSED_QUIET_MS,
                    )
                )
            ).all()
            if rows:
                await conn.execute(
                    faults.update()
                    .where(faults.c.id.in_([r.id for r in rows]))
                    .values(active=False, updated_at_ms=now_ms)
                )
        return [r.hub_id for r in rows]

    # ------------------------------------------------------------ alarms

    async def store_alarm(self, hub: HubIdentity, upload: AlarmUpload, now_ms: int) -> Stored:
        """Insert the alarm once per (hub, hub's alarm id); a repeated upload returns the stored
        state and created=False. An upload from a device whose alarm of the same kind is still
        open joins that alarm as a repeat (`server.alarm_repeats`). A device the hub's
        household does not own never makes it refused: the alarm is stored for the hub's
        household with its `DeviceFlag` (`server.device_homes`), and dispatched as usual."""
        async with self._write() as conn:
            existing = await _hub_alarm(conn, hub.hub_id, upload.alarm_id)
            if existing is not None:
                return Stored(AlarmState(existing.state), False)
            # locks the device row (or the hub's) on PostgreSQL: uploads from one device are
            # decided in turn, so two server processes cannot both open an alarm for it
            flag = await _device_flag(conn, hub, upload.device_id, lock=self.merge_repeats)
            if self.merge_repeats and joins_open_alarm(upload.kind):
                joined = join(await _open_alarm(conn, hub, upload), upload.severity)
                if joined is not None:
                    state = await _add_repeat(conn, hub, upload, joined, now_ms)
                    return Stored(state, True, joined)
            alarm_id = uuid.uuid4().hex
            try:
                await _INSERT_ALARM.execute(
                    conn,
                    {
                        "id": alarm_id,
                        "hub_id": hub.hub_id,
                        "hub_alarm_id": upload.alarm_id,
                        "elder_id": hub.elder_id,
                        "device_id": upload.device_id,
                        "kind": upload.kind.value,
                        "severity": upload.severity.value,
                        "state": AlarmState.RECEIVED.value,
                        "seq": upload.seq,
                        "event_ts_ms": upload.event_ts_ms,
                        "raised_at_ms": upload.raised_at_ms,
                        "received_at_ms": now_ms,
                        "updated_at_ms": now_ms,
                        "details": upload.details,
                        "is_test": upload.test,
                        "device_flag": flag.value if flag else None,
                    },
                )
                await _add_event(conn, alarm_id, hub.hub_id, "state", now_ms, AlarmState.RECEIVED)
                if flag is not None:
                    why = f"{upload.device_id}: {flag.value}"
                    await _add_event(conn, alarm_id, hub.hub_id, "device_flag", now_ms, None, why)
                if starts_ladder(upload.kind):  # a welfare check waits for the dispatcher
                    await _INSERT_LADDER.execute(conn, new_ladder(alarm_id, now_ms))
            except IntegrityError:
                pass  # a concurrent retry won the race; fall through to read it
            else:
                return Stored(AlarmState.RECEIVED, True, flag=flag)
        async with self.engine.connect() as conn:
            row = await _hub_alarm(conn, hub.hub_id, upload.alarm_id)
        assert row is not None
        return Stored(AlarmState(row.state), False)

    async def report_state(
        self,
        hub: HubIdentity,
        alarm_id: str,
        state: AlarmState,
        at_ms: int,
        report_id: str | None,
        source: str,
        detail: str = "",
    ) -> AlarmState:
        """Apply a state change to one of the hub's alarms, named by the hub's own id
        (idempotent by the hub's report_id; stale or backward changes ignored)."""
        async with self._write() as conn:
            row = await _hub_alarm(conn, hub.hub_id, alarm_id)
            if row is None:
                raise UnknownAlarm(alarm_id)
            current = AlarmState(row.state)
            alarm_id = row.id
            if report_id is not None:
                seen = (
                    await conn.execute(
                        sa.select(alarm_events.c.id).where(
                            alarm_events.c.hub_id == hub.hub_id,
                            alarm_events.c.report_id == report_id,
                        )
                    )
                ).first()
                if seen:
                    return current
            new = merge(current, state)
            await _add_event(
                conn,
                alarm_id,
                hub.hub_id,
                "state" if new != current else "state_ignored",
                at_ms,
                state,
                f"{source}: {detail}"[:400],
                report_id,
            )
            if new != current:
                await conn.execute(
                    alarms.update()
                    .where(alarms.c.id == alarm_id)
                    .values(state=new.value, updated_at_ms=at_ms)
                )
            return new

    async def updates_for_hub(self, hub_id: str, after: int, limit: int = 200) -> list[AlarmUpdate]:
        """The hub's alarms' state changes after cursor ``after``, each under the hub's own id:
        a repeat (`alarm_repeats`) hears its open alarm's changes under the repeat's id."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    _UPDATES_FOR_HUB, {"hub_id": hub_id, "after": after, "limit": limit + 1}
                )
            ).all()
        if len(rows) > limit:
            # rows sharing the last cursor (one change, several hub ids) go out together:
            # the hub asks for what follows that cursor next time
            last = rows[limit].id
            kept = [r for r in rows[:limit] if r.id != last]
            rows = kept or [r for r in rows if r.id == last]
        return [
            AlarmUpdate(
                cursor=r.id,
                alarm_id=r.hub_alarm_id,
                state=AlarmState(r.state),
                at_ms=r.at_ms,
                responder=_display_name(r.responder, r.accepted_by),
            )
            for r in rows
        ]

    async def server_alarm_id(self, hub_id: str, hub_alarm_id: str) -> str | None:
        """The server's id of the alarm the hub calls `hub_alarm_id` (its own, or the open
        alarm a repeat of that id joined)."""
        async with self.engine.connect() as conn:
            row = await _hub_alarm(conn, hub_id, hub_alarm_id)
        return str(row.id) if row is not None else None

    async def latest_cursor(self, hub_id: str) -> int:
        async with self.engine.connect() as conn:
            value = (
                await conn.execute(
                    sa.select(sa.func.max(alarm_events.c.id)).where(alarm_events.c.hub_id == hub_id)
                )
            ).scalar()
        return int(value or 0)

    # ------------------------------------------------------------ faults

    async def record_fault(self, hub: HubIdentity, report: FaultReport, now_ms: int) -> bool:
        """Store a fault report once (by the hub's report_id); True when it was new.
        Raises UnknownDevice for a device not paired with the hub."""
        (outcome,) = await self.record_faults([Incoming(hub.hub_id, report, now_ms)])
        if outcome is Outcome.UNKNOWN_DEVICE:
            raise UnknownDevice(report.device_id)
        return outcome is Outcome.NEW

    async def record_faults(self, batch: Sequence[Incoming]) -> list[Outcome]:
        """Decide and store many hubs' fault reports in one transaction: three reads for the
        whole batch, one insert of the new rows (`server.fault_reports`)."""
        if not batch:
            return []
        async with self._write() as conn:
            ids = {(i.hub_id, i.report.report_id) for i in batch}
            stored = await conn.execute(
                sa.select(faults.c.hub_id, faults.c.report_id).where(
                    sa.tuple_(faults.c.hub_id, faults.c.report_id).in_(ids)
                )
            )
            pairs = {
                (i.hub_id, i.report.device_id) for i in batch if isinstance(i.report, FaultReport)
            }
            paired = await conn.execute(
                sa.select(devices.c.hub_id, devices.c.id).where(
                    sa.tuple_(devices.c.hub_id, devices.c.id).in_(pairs)
                )
            )
            key = (faults.c.hub_id, faults.c.device_id, faults.c.fault)
            newest = (
                sa.select(sa.func.max(faults.c.id))
                .where(sa.tuple_(*key).in_({i.key for i in batch}))
                .group_by(*key)
            )
            latest = await conn.execute(
                sa.select(*key, faults.c.active, faults.c.since_ms).where(faults.c.id.in_(newest))
            )
            outcomes = decide(
                batch,
                [tuple(r) for r in stored],
                [tuple(r) for r in paired],
                {(r.hub_id, r.device_id, r.fault): Latest(r.active, r.since_ms) for r in latest},
            )
            rows = [
                {
                    "hub_id": i.hub_id,
                    "device_id": i.subject,
                    "fault": i.report.fault,
                    "active": i.report.active,
                    "since_ms": i.report.at_ms,
                    "updated_at_ms": i.received_ms,
                    "detail": i.report.detail,
                    "report_id": i.report.report_id,
                }
                for i, outcome in zip(batch, outcomes, strict=True)
                if outcome is Outcome.NEW
            ]
            if rows:
                # a report stored meanwhile by another process is skipped, not an error
                # that would fail the other hubs' reports of the batch
                insert = dialect_insert(self.engine, faults).on_conflict_do_nothing()
                await conn.execute(insert, rows)
        return outcomes

    # ------------------------------------------------------------ reads for dispatcher/admin

    async def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(alarms).where(alarms.c.id == alarm_id))).first()
            if row is None:
                return None
            events = (
                await conn.execute(
                    sa.select(alarm_events)
                    .where(alarm_events.c.alarm_id == alarm_id)
                    .order_by(alarm_events.c.id)
                )
            ).all()
            sent = (
                await conn.execute(
                    sa.select(
                        notifications.c.doctor_id,
                        notifications.c.contact_id,
                        notifications.c.purpose,
                        notifications.c.status,
                        notifications.c.response,
                        notifications.c.body,
                        notifications.c.sent_at_ms,
                    ).where(notifications.c.alarm_id == alarm_id)
                )
            ).all()
            repeats = await _repeat_ids(conn, [alarm_id])
        data = dict(row._mapping)
        data["repeat_hub_alarm_ids"] = repeats.get(alarm_id, [])
        data["notifications"] = [dict(n._mapping) for n in sent]
        data["events"] = [
            {
                k: v
                for k, v in e._mapping.items()
                if k in ("kind", "state", "at_ms", "detail", "actor")
            }
            for e in events
        ]
        return data

    async def list_alarms(self, limit: int = 100) -> Sequence[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        alarms.c.id,
                        alarms.c.hub_id,
                        alarms.c.hub_alarm_id,
                        alarms.c.device_id,
                        alarms.c.kind,
                        alarms.c.severity,
                        alarms.c.state,
                        alarms.c.seq,
                        alarms.c.raised_at_ms,
                        alarms.c.received_at_ms,
                        alarms.c.doctor_id,
                        alarms.c.repeat_count,
                        alarms.c.last_repeat_at_ms,
                        alarms.c.device_flag,
                    )
                    .order_by(alarms.c.received_at_ms.desc())
                    .limit(limit)
                )
            ).all()
            repeats = await _repeat_ids(conn, [r.id for r in rows if r.repeat_count])
        return [dict(r._mapping, repeat_hub_alarm_ids=repeats.get(r.id, [])) for r in rows]

    async def list_hubs(self) -> Sequence[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        hubs.c.id,
                        hubs.c.elder_id,
                        hubs.c.online,
                        hubs.c.last_seen_ms,
                        hubs.c.health,
                    ).order_by(hubs.c.id)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def list_faults(self, limit: int = 100) -> Sequence[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(faults).order_by(faults.c.id.desc()).limit(limit))
            ).all()
        return [dict(r._mapping) for r in rows]


def _updates_for_hub() -> sa.Select[Any]:
    """`ServerStore.updates_for_hub`'s query, built once: each hub's long-poll runs it on
    every change of its alarms, and building the union anew took most of its time."""
    hub_id = sa.bindparam("hub_id", type_=sa.String)
    after = sa.bindparam("after", type_=sa.BigInteger)
    columns = (
        alarm_events.c.id,
        alarm_events.c.state,
        alarm_events.c.at_ms,
        alarms.c.accepted_by,
        doctors.c.name.label("responder"),
    )
    own = (
        sa.select(alarms.c.hub_alarm_id, *columns)
        .select_from(alarm_events.join(alarms, alarms.c.id == alarm_events.c.alarm_id))
        .outerjoin(doctors, doctors.c.id == alarms.c.accepted_by)
        .where(
            alarm_events.c.hub_id == hub_id,
            alarm_events.c.kind == "state",
            alarm_events.c.id > after,
        )
    )
    repeats = (
        sa.select(alarm_repeats.c.hub_alarm_id, *columns)
        .select_from(
            alarm_events.join(alarms, alarms.c.id == alarm_events.c.alarm_id).join(
                alarm_repeats, alarm_repeats.c.alarm_id == alarms.c.id
            )
        )
        .outerjoin(doctors, doctors.c.id == alarms.c.accepted_by)
        .where(
            alarm_repeats.c.hub_id == hub_id,
            alarm_events.c.kind == "state",
            alarm_events.c.id > after,
            alarm_events.c.id > alarm_repeats.c.after_event_id,
        )
    )
    both = sa.union_all(own, repeats).subquery()
    return sa.select(both).order_by(both.c.id, both.c.hub_alarm_id).limit(sa.bindparam("limit"))


_UPDATES_FOR_HUB = _updates_for_hub()


async def _hub_fault(
    conn: AsyncConnection, hub_id: str, active: bool, now_ms: int, detail: str
) -> None:
    """A hub going silent (or coming back) is a fault for the dispatcher, not an alarm."""
    await conn.execute(
        faults.insert().values(
            hub_id=hub_id,
            device_id=hub_id,
            fault=HUB_OFFLINE,
            active=active,
            since_ms=now_ms,
            updated_at_ms=now_ms,
            detail=detail,
            report_id=f"hub-{uuid.uuid4().hex}",
        )
    )


# The upload's statements, built once: building a statement costs more CPU than SQLite
# takes to run it (issue 22's lean write path); each is compiled once, and run on SQLite's
# driver without SQLAlchemy's execution layer (`server.hot_sql`).
_HUB_ALARM = HotStatement(
    sa.union_all(
        sa.select(alarms.c.id, alarms.c.state).where(
            alarms.c.hub_id == sa.bindparam("p_hub"),
            alarms.c.hub_alarm_id == sa.bindparam("p_hub_alarm"),
        ),
        sa.select(alarms.c.id, alarms.c.state)
        .join(alarm_repeats, alarm_repeats.c.alarm_id == alarms.c.id)
        .where(
            alarm_repeats.c.hub_id == sa.bindparam("p_hub"),
            alarm_repeats.c.hub_alarm_id == sa.bindparam("p_hub_alarm"),
        ),
    )
)
"""The alarm a hub's id names: its own (first) or the open alarm its repeat joined."""
_PAIRED = sa.select(devices.c.id).where(
    devices.c.id == sa.bindparam("p_device"), devices.c.hub_id == sa.bindparam("p_hub")
)
_PAIRED_DEVICE = HotStatement(_PAIRED)
_PAIRED_DEVICE_LOCKED = HotStatement(_PAIRED.with_for_update())
_HUB_LOCKED = HotStatement(
    sa.select(hubs.c.id).where(hubs.c.id == sa.bindparam("p_hub")).with_for_update()
)
_INSERT_ALARM = HotStatement(alarms.insert())
INSERT_EVENT = HotStatement(alarm_events.insert().inline())
"""One line of an alarm's history; the dispatch wing's events too (`server.dispatch.rows`).
Inline: nothing reads an event's new id, and fetching it (RETURNING, on PostgreSQL) would
take the insert off the hot path."""
_INSERT_LADDER = HotStatement(escalations.insert())


async def _hub_alarm(conn: AsyncConnection, hub_id: str, hub_alarm_id: str) -> sa.Row[Any] | None:
    """The hub's alarm with this hub-made id (its own, or the open alarm a repeat joined):
    its server id and state."""
    return (await _HUB_ALARM.execute(conn, {"p_hub": hub_id, "p_hub_alarm": hub_alarm_id})).first()


async def _repeat_ids(conn: AsyncConnection, alarm_ids: list[str]) -> dict[str, list[str]]:
    """The hub's ids of each alarm's repeats, oldest first."""
    out: dict[str, list[str]] = {}
    if not alarm_ids:
        return out
    rows = await conn.execute(
        sa.select(alarm_repeats.c.alarm_id, alarm_repeats.c.hub_alarm_id)
        .where(alarm_repeats.c.alarm_id.in_(alarm_ids))
        .order_by(alarm_repeats.c.id)
    )
    for r in rows:
        out.setdefault(r.alarm_id, []).append(r.hub_alarm_id)
    return out


async def _open_alarm(
    conn: AsyncConnection, hub: HubIdentity, upload: AlarmUpload
) -> OpenAlarm | None:
    """The alarm of this device and kind that is still open (test and real kept apart)."""
    row = (
        await conn.execute(
            sa.select(alarms.c.id, alarms.c.severity, alarms.c.repeat_count)
            .where(
                alarms.c.hub_id == hub.hub_id,
                alarms.c.device_id == upload.device_id,
                alarms.c.kind == upload.kind.value,
                alarms.c.state.not_in([s.value for s in FINAL_STATES]),
                alarms.c.is_test == upload.test,
            )
            .order_by(alarms.c.received_at_ms.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return OpenAlarm(row.id, Severity(row.severity), int(row.repeat_count))


async def _add_repeat(
    conn: AsyncConnection, hub: HubIdentity, upload: AlarmUpload, joined: Joined, now_ms: int
) -> AlarmState:
    """Record the upload as a repeat of the open alarm; the open alarm's state."""
    last_event = (
        await conn.execute(
            sa.select(sa.func.max(alarm_events.c.id)).where(
                alarm_events.c.alarm_id == joined.alarm_id
            )
        )
    ).scalar()
    await conn.execute(
        alarm_repeats.insert().values(
            alarm_id=joined.alarm_id,
            hub_id=hub.hub_id,
            hub_alarm_id=upload.alarm_id,
            severity=upload.severity.value,
            seq=upload.seq,
            event_ts_ms=upload.event_ts_ms,
            raised_at_ms=upload.raised_at_ms,
            received_at_ms=now_ms,
            details=upload.details,
            after_event_id=int(last_event or 0),
        )
    )
    await conn.execute(
        alarms.update()
        .where(alarms.c.id == joined.alarm_id)
        .values(
            repeat_count=joined.repeats,
            last_repeat_at_ms=now_ms,
            updated_at_ms=now_ms,
            severity=joined.severity.value,
        )
    )
    if joined.raised:  # the escalator moves the ladder to the urgent policy on its next pass
        await conn.execute(
            escalations.update()
            .where(
                escalations.c.alarm_id == joined.alarm_id,
                escalations.c.status.in_(["running", "exhausted"]),
            )
            .values(status="running", due_at_ms=now_ms, updated_at_ms=now_ms)
        )
    what = _REPEAT_TEXT.get(upload.kind, upload.kind.value)
    detail = f"{what} again (×{joined.repeats + 1}), {upload.device_id}"
    if joined.raised:
        detail += "; now critical"
    await _add_event(conn, joined.alarm_id, hub.hub_id, "repeat", now_ms, None, detail)
    state = await _alarm_state(conn, joined.alarm_id)
    assert state is not None
    return state


_REPEAT_TEXT = {
    AlarmKind.BUTTON: "pressed",
    AlarmKind.FALL: "fall detected",
    AlarmKind.VITALS: "vital signs alarm",
}


async def _device_flag(
    conn: AsyncConnection, hub: HubIdentity, device_id: str, lock: bool = False
) -> DeviceFlag | None:
    """None when the device is paired with this hub (or another hub of its household);
    else why not. `lock` locks the paired device's row, else the hub's."""
    query = _PAIRED_DEVICE_LOCKED if lock else _PAIRED_DEVICE
    params = {"p_device": device_id, "p_hub": hub.hub_id}
    if (await query.execute(conn, params)).first() is not None:
        return None
    if lock:
        await _HUB_LOCKED.execute(conn, {"p_hub": hub.hub_id})
    return alarm_flag(await device_household(conn, device_id), hub.household_id)


async def device_household(conn: AsyncConnection, device_id: str) -> str | None:
    """The household owning the device id: its `device_homes` row, else the household of
    the hub it is paired with (a directory's or an older server's pairing)."""
    owner = (
        await conn.execute(
            sa.select(device_homes.c.household_id).where(device_homes.c.device_id == device_id)
        )
    ).scalar()
    if owner is not None:
        return str(owner)
    paired = (
        await conn.execute(
            sa.select(hubs.c.household_id)
            .join(devices, devices.c.hub_id == hubs.c.id)
            .where(devices.c.id == device_id)
        )
    ).scalar()
    return str(paired) if paired is not None else None


async def _alarm_state(conn: AsyncConnection, alarm_id: str) -> AlarmState | None:
    value = (await conn.execute(sa.select(alarms.c.state).where(alarms.c.id == alarm_id))).scalar()
    return AlarmState(value) if value is not None else None


async def _add_event(
    conn: AsyncConnection,
    alarm_id: str,
    hub_id: str,
    kind: str,
    at_ms: int,
    state: AlarmState | None,
    detail: str = "",
    report_id: str | None = None,
    actor: str = "hub",
) -> None:
    """One line of the alarm's history; here every change comes from the hub (the elder's
    devices), so that is the default actor."""
    await INSERT_EVENT.execute(
        conn,
        {
            "alarm_id": alarm_id,
            "hub_id": hub_id,
            "kind": kind,
            "state": state.value if state else None,
            "at_ms": at_ms,
            "detail": detail,
            "report_id": report_id,
            "actor": actor,
        },
    )


def _display_name(name: str | None, member_id: str | None) -> str | None:
    """Who accepted, as the elder's device may show it: the member's name (their id if they
    left the directory), cut to the contract's limit."""
    shown = name or member_id
    return shown[:RESPONDER_MAX_CHARS] if shown else None
