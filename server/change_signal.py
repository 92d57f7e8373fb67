"""Wakes whoever waits on a key (a hub's long-poll, later the console's live feed) when
something it shows changed — in this process, and in every other server process.

Keyed: a change wakes only the waiters of its key, which then read the database. (Waking
every long-poll on every change cost one query per connected hub for each change; with 100
hubs that starved the dispatcher, see docs/benchmarks.md.)

Across processes on PostgreSQL, `PostgresRelay` carries each key over ``LISTEN/NOTIFY``
(channel ``carehub_changes``): no extra server, and a notification is sent only after the
change committed, so the woken reader sees it. On SQLite there is one server process and
nothing to relay. A relay that loses its connection reconnects and then wakes every waiter
once, since it may have missed notifications meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from typing import Any, Protocol

log = logging.getLogger(__name__)

CHANNEL = "carehub_changes"
ALARMS_KEY = "alarms"
"""Any alarm changed (the console's queue)."""
HEALTH_KEY = "health"
"""A fault, a hub going offline or coming back, a failed SMS, a self-test (the health board)."""
MAX_KEY_CHARS = 200
"""PostgreSQL caps a NOTIFY payload at 8000 bytes; keys are ids, far shorter."""


def hub_key(hub_id: str) -> str:
    """One hub's alarms changed (its `/alarm-updates` long-poll)."""
    return f"hub:{hub_id}"


class Relay(Protocol):
    async def publish(self, key: str) -> None: ...


class ChangeSignal:
    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._conds: dict[str, asyncio.Condition] = {}
        self.relay: Relay | None = None

    def version(self, key: str) -> int:
        """How many changes of `key` were signalled so far."""
        return self._versions.get(key, 0)

    async def notify(self, key: str) -> None:
        """A change of `key` committed here: wake local waiters and other processes'."""
        await self.wake(key)
        if self.relay is not None:
            await self.relay.publish(key)

    async def alarms_changed(self, *hub_ids: str, health: bool = False) -> None:
        """Alarms of these hubs changed (committed): wake each hub's long-poll, then the
        consoles' queue, and the health board when `health` (a failed SMS). The one order
        every writer of alarms tells its watchers in."""
        for hub_id in dict.fromkeys(hub_ids):
            await self.notify(hub_key(hub_id))
        await self.notify(ALARMS_KEY)
        if health:
            await self.notify(HEALTH_KEY)

    async def wake(self, key: str) -> None:
        """Wake this process's waiters of `key` only (a relay delivering another's change)."""
        self._versions[key] = self.version(key) + 1
        cond = self._conds.get(key)
        if cond is not None:
            async with cond:
                cond.notify_all()

    async def wake_all(self) -> None:
        for key in list(self._conds):
            await self.wake(key)

    async def wait(self, key: str, seen_version: int, timeout_s: float) -> int:
        """Return once `key`'s version moved past `seen_version`, or after `timeout_s`."""
        cond = self._conds.setdefault(key, asyncio.Condition())
        async with cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    cond.wait_for(lambda: self.version(key) != seen_version), timeout_s
                )
            return self.version(key)


class PostgresRelay:
    """Relays keys between server processes through PostgreSQL ``LISTEN/NOTIFY``.

    Payloads are ``<origin>|<key>``; a process ignores its own (it woke its waiters already).
    """

    def __init__(self, dsn: str, signal: ChangeSignal, retry_s: float = 1.0) -> None:
        self._dsn = dsn
        self._signal = signal
        self._retry_s = retry_s
        self._origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._conn: Any = None
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        self._signal.relay = self
        self._task = asyncio.create_task(self._listen_forever(), name="change-relay")

    async def stop(self) -> None:
        self._signal.relay = None
        if self._task is not None:
            self._task.cancel()
            # a cancel that lands inside asyncpg can come back as asyncpg's own error
            # ("cannot switch to state …; another operation is in progress"): stopped anyway
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close()

    async def publish(self, key: str) -> None:
        if len(key) > MAX_KEY_CHARS:
            raise ValueError(f"change key longer than {MAX_KEY_CHARS} characters")
        conn = self._conn
        if conn is None:
            return  # reconnecting: other processes get a wake-all when we are back
        try:
            async with self._send_lock:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{self._origin}|{key}")
        except Exception as e:  # the listener task notices and reconnects
            log.warning("change relay could not notify (%s: %s)", type(e).__name__, e)

    async def _listen_forever(self) -> None:
        import asyncpg

        while True:
            lost = asyncio.Event()
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._dsn)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self._conn = conn  # publish only on a connection that is set up
                self.listening.set()
                await self._signal.wake_all()  # whatever was missed while away
                await lost.wait()
                log.warning("change relay lost its PostgreSQL connection; reconnecting")
            except Exception as e:  # any failure: listen again, never leave the relay dead
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # being stopped: a cancel asyncpg reported as its own error
                log.warning("change relay cannot listen (%s: %s); retrying", type(e).__name__, e)
            finally:
                self.listening.clear()
                self._conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(self._retry_s)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, key = payload.partition("|")
        if origin != self._origin and key:
            asyncio.get_running_loop().create_task(self._signal.wake(key))

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """``postgresql+asyncpg://…`` → ``postgresql://…`` for a raw asyncpg connection."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"
