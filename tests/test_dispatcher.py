"""The dispatcher's group commit: a burst of alarms is claimed and recorded in batches,
every alarm gets exactly one SMS, and a failed SMS is retried without resending the rest."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.api_contract import AlarmUpload
from carehub.clock import FakeClock, SystemClock
from carehub.settings import ServerSettings
from server.change_signal import ChangeSignal
from server.db import make_engine
from server.dispatcher import Dispatcher
from server.main import prepare_database
from server.notifier import NotifierError
from server.store import HubIdentity, ServerStore
from tests.conftest import DIRECTORY


class FlakyNotifier:
    """Fails the first `failures` sends, then works; counts what reached 'the network'."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def send_sms(self, to: str, body: str) -> str:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if self.failures > 0:
                self.failures -= 1
                raise NotifierError("provider said 503")
            self.sent.append(body)
            return f"SM{len(self.sent)}"
        finally:
            self.in_flight -= 1


async def server_with_alarms(tmp_path: Path, n: int) -> tuple[AsyncEngine, ServerStore]:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token="t" * 24))
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    await prepare_database(ServerSettings(database_url=url), directory)  # type: ignore[call-arg]
    engine = make_engine(url)
    store = ServerStore(engine)
    hub = await store.hub_by_token("t" * 24)
    assert isinstance(hub, HubIdentity)
    for i in range(n):
        upload = AlarmUpload(alarm_id=f"a{i:02d}", device_id="btn-1", kind="button", raised_at_ms=i)
        await store.store_alarm(hub, upload, 1000 + i)
    return engine, store


async def test_a_burst_is_dispatched_once_each_with_failures_retried(tmp_path: Path) -> None:
    engine, store = await server_with_alarms(tmp_path, 23)
    notifier = FlakyNotifier(failures=3)
    clock = FakeClock()
    dispatcher = Dispatcher(store, notifier, clock, ChangeSignal(), sweep_s=2.0, batch=10)

    assert await dispatcher.dispatch_pending() == 20  # 3 failed, recorded as failed
    assert 1 < notifier.most_in_flight <= 8  # concurrent, bounded
    assert await dispatcher.dispatch_pending() == 0  # failures wait for the next sweep
    clock.advance(2.0)
    assert await dispatcher.dispatch_pending() == 3  # retried: only those
    assert await dispatcher.dispatch_pending() == 0
    assert len(notifier.sent) == 23
    states = {a["state"] for a in await store.list_alarms(limit=100)}
    assert states == {"dispatched"}
    await engine.dispose()


async def test_the_running_dispatcher_dispatches_in_batches_and_retries_failures(
    tmp_path: Path,
) -> None:
    engine, store = await server_with_alarms(tmp_path, 40)
    notifier = FlakyNotifier(failures=5)
    dispatcher = Dispatcher(store, notifier, SystemClock(), ChangeSignal(), sweep_s=0.2, batch=5)
    task = asyncio.create_task(dispatcher.run())
    try:
        for _ in range(200):
            alarms = await store.list_alarms(limit=100)
            if {a["state"] for a in alarms} == {"dispatched"}:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert {a["state"] for a in await store.list_alarms(limit=100)} == {"dispatched"}
    assert len(notifier.sent) == 40  # each alarm's SMS went out once
    assert 1 < notifier.most_in_flight <= 5, "concurrent within a batch"
    await engine.dispose()
