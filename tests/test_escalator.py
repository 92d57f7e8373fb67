"""The escalation worker under a burst: every alarm's first step goes out once, merged per
number within its limit, a failed SMS is retried without resending the rest, and the running
worker gets there on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.api_contract import AlarmUpload
from carehub.clock import FakeClock, SystemClock
from carehub.settings import ServerSettings
from server.change_signal import ChangeSignal
from server.db import make_engine
from server.dispatch.escalator import Escalator
from server.dispatch.store import DispatchStore
from server.escalation import URGENT
from server.main import prepare_database
from server.notifier import NotifierError
from server.schema import escalations, notifications
from server.store import POLICY_PENDING, HubIdentity, ServerStore
from tests.conftest import DIRECTORY
from tests.dispatch_world import press_button


class FlakyNotifier:
    """Fails the first `failures` sends, then works; counts what reached 'the network'."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
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
    store = ServerStore(engine, merge_repeats=False)
    hub = await store.hub_by_token("t" * 24)
    assert isinstance(hub, HubIdentity)
    for i in range(n):
        upload = AlarmUpload(alarm_id=f"a{i:02d}", device_id="btn-1", kind="button", raised_at_ms=i)
        await store.store_alarm(hub, upload, 1000 + i)
    return engine, store


async def test_a_burst_is_notified_once_each_merged_per_number_failures_retried(
    tmp_path: Path,
) -> None:
    engine, store = await server_with_alarms(tmp_path, 23)
    notifier = FlakyNotifier(failures=1)
    clock = FakeClock()
    escalator = Escalator(DispatchStore(store, b"k" * 32), notifier, clock, ChangeSignal(), "x")
    assert await escalator.pass_once() == 23  # 23 claimed and tried
    # one doctor: three texts alone and the other twenty merged into one (the per-number
    # limit), sent concurrently; the first send failed
    assert notifier.most_in_flight > 1
    assert len(notifier.sent) == 3 and sum(t.count("/r/") for t in notifier.sent) == 22
    assert await escalator.pass_once() == 0  # the failure waits for its retry time
    clock.advance(2.0)
    assert await escalator.pass_once() == 1  # retried: only that one
    assert len(notifier.sent) == 4 and sum(t.count("/r/") for t in notifier.sent) == 23
    assert {a["state"] for a in await store.list_alarms(limit=100)} == {"dispatched"}
    await engine.dispose()


async def test_the_running_worker_notifies_everyone_and_retries_failures(tmp_path: Path) -> None:
    engine, store = await server_with_alarms(tmp_path, 40)
    notifier = FlakyNotifier(failures=2)
    dispatch = DispatchStore(store, b"k" * 32)
    escalator = Escalator(dispatch, notifier, SystemClock(), ChangeSignal(), "x", sweep_s=0.2)
    task = asyncio.create_task(escalator.run())
    try:
        for _ in range(200):
            if {a["state"] for a in await store.list_alarms(limit=100)} == {"dispatched"}:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await escalator.close()
    assert {a["state"] for a in await store.list_alarms(limit=100)} == {"dispatched"}
    assert sum(t.count("/r/") for t in notifier.sent) == 40  # each alarm's link, once
    await engine.dispose()


async def test_an_alarm_is_stored_with_its_ladder_due_and_the_first_step_chooses_the_policy(
    tmp_path: Path,
) -> None:
    """The ladder starts in the alarm's own commit: no moment (no kill -9) leaves an alarm
    stored without a due ladder, and the first step needs no separate start."""
    engine, store = await server_with_alarms(tmp_path, 2)
    async with engine.connect() as conn:
        ladders = (await conn.execute(sa.select(escalations))).all()
    assert [(r.status, r.position, r.due_at_ms, r.policy_id) for r in ladders] == [
        ("running", 0, 1000, POLICY_PENDING),
        ("running", 0, 1001, POLICY_PENDING),
    ]
    notifier = FlakyNotifier(failures=0)
    escalator = Escalator(
        DispatchStore(store, b"k" * 32), notifier, FakeClock(), ChangeSignal(), "x"
    )
    assert await escalator.pass_once() == 2
    async with engine.connect() as conn:
        ladders = (await conn.execute(sa.select(escalations))).all()
    assert {(r.position, r.policy_id) for r in ladders} == {(1, URGENT.id)}
    await engine.dispose()


async def test_an_alarm_stored_without_a_ladder_by_an_older_server_gets_one(
    tmp_path: Path,
) -> None:
    engine, store = await server_with_alarms(tmp_path, 3)
    async with engine.begin() as conn:
        await conn.execute(escalations.delete())
    notifier = FlakyNotifier(failures=0)
    escalator = Escalator(
        DispatchStore(store, b"k" * 32), notifier, FakeClock(), ChangeSignal(), "x"
    )
    assert await escalator.pass_once() == 3
    assert sum(t.count("/r/") for t in notifier.sent) == 3
    assert await escalator.pass_once() == 0  # once each
    await engine.dispose()


class GatedNotifier:
    """Holds the first send until `gate` is set (a provider slow to answer); the others go
    through at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.first_held = asyncio.Event()
        self.second_sent = asyncio.Event()
        self.sent: list[str] = []

    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
        self.sent.append(body)
        if len(self.sent) == 1:
            self.first_held.set()
            await self.gate.wait()
        else:
            self.second_sent.set()
        return f"SM{len(self.sent)}"


async def store_another_alarm(store: ServerStore, now_ms: int) -> None:
    hub = await store.hub_by_token("t" * 24)
    assert hub is not None
    await press_button(store, hub, now_ms)


async def notification_rows(engine: AsyncEngine) -> list[sa.Row]:
    async with engine.connect() as conn:
        query = sa.select(notifications).order_by(notifications.c.created_at_ms)
        return list((await conn.execute(query)).all())


async def test_an_alarm_is_texted_while_the_previous_alarms_sms_is_still_being_sent(
    tmp_path: Path,
) -> None:
    """The sends run behind the pass: a provider slow to answer one alarm's SMS does not
    hold up the next alarm's (that wait was most of bench e2e's p99)."""
    engine, store = await server_with_alarms(tmp_path, 1)
    notifier = GatedNotifier()
    clock = FakeClock()
    escalator = Escalator(DispatchStore(store, b"k" * 32), notifier, clock, ChangeSignal(), "x")
    assert await escalator.take_due() == 1
    await asyncio.wait_for(notifier.first_held.wait(), 5)
    await store_another_alarm(store, clock.now_ms())
    assert await escalator.take_due() == 1
    await asyncio.wait_for(notifier.second_sent.wait(), 5)  # the first is still held
    notifier.gate.set()
    await escalator.drain()
    assert [n.status for n in await notification_rows(engine)] == ["sent", "sent"]
    await engine.dispose()


async def test_a_text_in_flight_counts_against_the_number_limit(tmp_path: Path) -> None:
    """The per-number limit sees the texts still being sent, not only those recorded."""
    engine, store = await server_with_alarms(tmp_path, 1)
    notifier = GatedNotifier()
    clock = FakeClock()
    escalator = Escalator(
        DispatchStore(store, b"k" * 32), notifier, clock, ChangeSignal(), "x", max_per_number=1
    )
    await escalator.take_due()
    await asyncio.wait_for(notifier.first_held.wait(), 5)
    await store_another_alarm(store, clock.now_ms())
    await escalator.take_due()
    # the second text is held for the number's next merged message, not sent alone
    for _ in range(250):
        rows = await notification_rows(engine)
        if len(rows) == 2 and rows[1].status == "queued":
            break
        await asyncio.sleep(0.02)
    assert rows[1].status == "queued" and rows[1].next_attempt_at_ms > clock.now_ms()
    assert len(notifier.sent) == 1
    notifier.gate.set()
    await escalator.drain()
    assert len(notifier.sent) == 1
    await engine.dispose()


async def test_a_message_still_being_sent_when_its_lease_runs_out_is_not_sent_again(
    tmp_path: Path,
) -> None:
    engine, store = await server_with_alarms(tmp_path, 1)
    notifier = GatedNotifier()
    clock = FakeClock()
    dispatch = DispatchStore(store, b"k" * 32, send_lease_ms=1000)
    escalator = Escalator(dispatch, notifier, clock, ChangeSignal(), "x")
    await escalator.take_due()
    await asyncio.wait_for(notifier.first_held.wait(), 5)
    clock.advance(5)  # the lease ran out: claimable again, but this process is sending it
    assert await escalator.take_due() == 0
    notifier.gate.set()
    await escalator.drain()
    assert len(notifier.sent) == 1
    assert [n.status for n in await notification_rows(engine)] == ["sent"]
    await engine.dispose()


async def test_a_stopping_server_records_the_sms_it_was_sending(tmp_path: Path) -> None:
    """A planned restart waits for the sends in flight: recorded, never sent twice."""
    engine, store = await server_with_alarms(tmp_path, 1)
    notifier = GatedNotifier()
    escalator = Escalator(
        DispatchStore(store, b"k" * 32), notifier, FakeClock(), ChangeSignal(), "x"
    )
    await escalator.take_due()
    await asyncio.wait_for(notifier.first_held.wait(), 5)
    closing = asyncio.create_task(escalator.close(grace_s=30))
    notifier.gate.set()  # the provider answers while the server stops
    await asyncio.wait_for(closing, 10)
    assert [n.status for n in await notification_rows(engine)] == ["sent"]
    await engine.dispose()


async def test_a_stop_does_not_wait_past_its_grace_for_a_hung_provider(tmp_path: Path) -> None:
    engine, store = await server_with_alarms(tmp_path, 1)
    notifier = GatedNotifier()  # never released: the provider hangs
    escalator = Escalator(
        DispatchStore(store, b"k" * 32), notifier, FakeClock(), ChangeSignal(), "x"
    )
    await escalator.take_due()
    await asyncio.wait_for(notifier.first_held.wait(), 5)
    await asyncio.wait_for(escalator.close(grace_s=0.05), 5)
    # left claimed under its lease: another process sends it when the lease runs out
    assert [n.status for n in await notification_rows(engine)] == ["sending"]
    await engine.dispose()
