"""What the dispatch tests that drive the escalation worker by hand share: a notifier that
records the SMS it is asked to send, a button press stored as a hub would upload it, and
the wiring of a migrated database, its directory, the dispatch store and the worker
(`open_dispatching`), served over HTTP in process when a test needs the routes (`serving`).
Each test module keeps its own directory and world; only these parts are the same.

The dispatch code is imported here once (`DispatchStore`), so a move of it is one line."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.api_contract import AlarmUpload
from carehub.clock import FakeClock
from carehub.settings import ServerSettings
from server.app import create_app
from server.change_signal import ChangeSignal
from server.db import make_engine, migrate
from server.directory import Directory, load_directory
from server.dispatch_store import DispatchStore
from server.escalator import Escalator
from server.fault_writer import FaultWriter
from server.heartbeats import HeartbeatWriter
from server.notifier import NotifierError
from server.runtime import ServerRuntime
from server.schema import alarms
from server.sealed import Sealer
from server.store import HubIdentity, ServerStore


@dataclass
class RecordingNotifier:
    """Records each SMS as (to, body, ref); numbers in ``failing`` are refused."""

    phones: Mapping[str, str]  # member id -> phone, for `to` and `ref_to`
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    carried: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """ref -> the notification ids its message carried (for its status callback URL)."""
    while_sending: Callable[[str, tuple[str, ...]], Awaitable[None]] | None = None
    """Run with (ref, ids) before the send answers: a provider whose callbacks come first."""

    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
        if to in self.failing:
            raise NotifierError("provider refused")
        ref = "SM" + uuid.uuid4().hex
        self.sent.append((to, body, ref))
        self.carried[ref] = tuple(notification_ids)
        if self.while_sending is not None:
            await self.while_sending(ref, tuple(notification_ids))
        return ref

    def to(self, member: str) -> list[str]:
        """The bodies sent to a member, oldest first."""
        return [body for to, body, _ in self.sent if to == self.phones[member]]

    def ref_to(self, member: str) -> str:
        """The provider reference of the last SMS sent to a member."""
        return [ref for to, _, ref in self.sent if to == self.phones[member]][-1]


async def press_button(
    store: ServerStore, hub: HubIdentity, now_ms: int, *, test: bool = False
) -> str:
    """Store a fresh button alarm from ``hub``'s ``btn-1``; return the server's alarm id."""
    upload = AlarmUpload(
        alarm_id=uuid.uuid4().hex,
        device_id="btn-1",
        kind=AlarmKind.BUTTON,
        severity=Severity.CRITICAL,
        seq=1,
        raised_at_ms=now_ms,
        test=test,
    )
    await store.store_alarm(hub, upload, now_ms)
    async with store.engine.connect() as conn:
        query = sa.select(alarms.c.id).where(alarms.c.hub_alarm_id == upload.alarm_id)
        return str((await conn.execute(query)).scalar())


def escalation_worker(
    store: ServerStore,
    sms: RecordingNotifier,
    clock: FakeClock,
    *,
    link_key: bytes,
    base_url: str,
    changes: ChangeSignal | None = None,
) -> tuple[DispatchStore, Escalator]:
    """The dispatch store and the escalation worker of one server process over `store`."""
    dispatch = DispatchStore(store, link_key)
    signal = changes if changes is not None else ChangeSignal()
    return dispatch, Escalator(dispatch, sms, clock, signal, base_url)


@dataclass
class Dispatching:
    """A migrated database with a directory loaded, and the worker to drive by hand."""

    engine: AsyncEngine
    clock: FakeClock
    store: ServerStore
    dispatch: DispatchStore
    escalator: Escalator
    changes: ChangeSignal
    sms: RecordingNotifier


@asynccontextmanager
async def open_dispatching(
    database_url: str,
    directory: Mapping[str, Any],
    phones: Mapping[str, str],
    *,
    sealer_key: str,
    link_key: bytes,
    base_url: str,
    merge_repeats: bool = False,
) -> AsyncIterator[Dispatching]:
    """`directory` loaded (key-safe codes sealed with `sealer_key`) into a migrated
    database at `database_url`, SMS to a `RecordingNotifier` of `phones`, a `FakeClock`;
    the engine is disposed of on leaving."""
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        await load_directory(engine, Directory.model_validate(directory), Sealer(sealer_key))
        clock = FakeClock()
        store = ServerStore(engine, merge_repeats=merge_repeats)
        sms = RecordingNotifier(phones)
        changes = ChangeSignal()
        dispatch, escalator = escalation_worker(
            store, sms, clock, link_key=link_key, base_url=base_url, changes=changes
        )
        yield Dispatching(engine, clock, store, dispatch, escalator, changes, sms)
    finally:
        await engine.dispose()


@asynccontextmanager
async def serving(
    settings: ServerSettings, world: Dispatching
) -> AsyncIterator[tuple[ServerRuntime, httpx.AsyncClient]]:
    """The server's routes over `world`, in process: its runtime and an HTTP client at
    ``settings.public_base_url``. The lifespan (and its background worker) is not run: the
    test drives the worker."""
    rt = ServerRuntime(
        settings,
        world.store,
        world.dispatch,
        world.escalator,
        world.changes,
        world.clock,
        HeartbeatWriter(world.store, world.changes),
        FaultWriter(world.store),
    )
    app = create_app(settings, world.sms, world.clock)
    app.state.runtime = rt
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.public_base_url) as http:
        yield rt, http
