"""The statements an alarm costs the server (issue 22, the lean write path): its first
step, the record of its SMS and a delivery callback, counted on SQLite. Each statement is a
hand-off to the database thread; these counts only go down."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.clock import FakeClock
from server.change_signal import ChangeSignal
from server.dispatch.escalator import Escalator
from server.dispatch.queue import record_delivery
from server.dispatch.service import DispatchService
from server.dispatch.store import DispatchStore
from tests.test_escalator import FlakyNotifier, server_with_alarms


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements run on `engine` inside the block, in order."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def test_an_alarms_first_step_its_sms_and_its_delivery_take_few_statements(
    tmp_path: Path,
) -> None:
    engine, store = await server_with_alarms(tmp_path, 1)
    dispatch = DispatchStore(store, b"k" * 32)
    clock = FakeClock()
    escalator = Escalator(dispatch, FlakyNotifier(failures=0), clock, ChangeSignal(), "x")
    await escalator.care_map()  # the directory, read once per process
    with statements(engine) as step:
        assert await escalator.pass_once() == 1
    # the first step asks nobody's exclusions (there are none before it), and the sent
    # SMS moves the alarm to dispatched in one UPDATE, without reading it first
    assert not any("notifications.response" in s for s in step)
    assert not any(s.startswith("SELECT alarms.state, alarms.first_notified_at_ms") for s in step)
    assert len(step) <= 16  # with the sweep for ladderless alarms (once a second)
    with statements(engine) as delivered:
        assert await record_delivery(dispatch, "SM1", "delivered", clock.now_ms())
    assert len(delivered) == 2  # a read that sees it moves, one UPDATE
    with statements(engine) as repeated:
        assert not await record_delivery(dispatch, "SM1", "delivered", clock.now_ms())
    assert len(repeated) == 1  # a read, no write
    await engine.dispose()


async def test_callbacks_for_a_send_this_process_recorded_are_answered_from_memory(
    tmp_path: Path,
) -> None:
    """`queued` and `sent` come after the send was recorded here: no statement at all.
    `delivered` is one UPDATE without a read first; a repeat of it then needs nothing."""
    engine, store = await server_with_alarms(tmp_path, 1)
    dispatch = DispatchStore(store, b"k" * 32)
    clock = FakeClock()
    escalator = Escalator(dispatch, FlakyNotifier(failures=0), clock, ChangeSignal(), "x")
    assert await escalator.pass_once() == 1
    (nid,) = await store_rows(engine, "SELECT id FROM notifications")
    with statements(engine) as early:
        assert not await record_delivery(dispatch, "SM1", "queued", clock.now_ms(), [nid])
        assert not await record_delivery(dispatch, "SM1", "sent", clock.now_ms(), [nid])
    assert early == []
    with statements(engine) as delivered:
        assert await record_delivery(dispatch, "SM1", "delivered", clock.now_ms(), [nid])
        assert not await record_delivery(dispatch, "SM1", "delivered", clock.now_ms(), [nid])
        assert not await record_delivery(dispatch, "SM1", "sent", clock.now_ms(), [nid])
    assert len(delivered) == 1  # the first delivered: one UPDATE, no read first
    other = DispatchStore(store, b"k" * 32)  # another process: it reads the database
    with statements(engine) as elsewhere:
        assert not await record_delivery(other, "SM1", "sent", clock.now_ms(), [nid])
    assert len(elsewhere) == 1
    await engine.dispose()


async def test_a_pass_woken_by_an_alarm_reads_the_due_time_and_takes_the_step(
    tmp_path: Path,
) -> None:
    """Between sweeps, a pass is the step's transaction and two reads of the next due
    time (before and after): retries and expired leases wait for the once-a-second sweep."""
    engine, store = await server_with_alarms(tmp_path, 1)
    dispatch = DispatchStore(store, b"k" * 32)
    clock = FakeClock()
    escalator = Escalator(dispatch, FlakyNotifier(failures=0), clock, ChangeSignal(), "x")
    await escalator.care_map()
    await escalator.pass_once()  # the sweep, and the one alarm's step
    with statements(engine) as idle:
        assert await escalator.take_due() == 0
    assert len(idle) == 1  # the next due time: not yet (no claim of retries between sweeps)
    await engine.dispose()


async def store_rows(engine: AsyncEngine, sql: str) -> list[str]:
    async with engine.connect() as conn:
        return [r[0] for r in (await conn.exec_driver_sql(sql)).all()]


async def test_a_pass_woken_by_an_alarm_is_one_transaction(tmp_path: Path) -> None:
    """Woken because an alarm arrived, the pass does not first ask whether anything is due:
    the step's transaction reads the next due time itself."""
    engine, store = await server_with_alarms(tmp_path, 1)
    dispatch = DispatchStore(store, b"k" * 32)
    clock = FakeClock()
    escalator = Escalator(dispatch, FlakyNotifier(failures=0), clock, ChangeSignal(), "x")
    await escalator.care_map()
    escalator._swept_at = clock.monotonic()  # between sweeps
    with statements(engine) as step:
        assert await escalator.take_due(kicked=True) == 1
    assert "min(escalations.due_at_ms)" not in step[0]
    assert sum("min(escalations.due_at_ms)" in s for s in step) == 1
    assert len(step) <= 7
    await escalator.drain()
    await engine.dispose()


class CountingEscalator(Escalator):
    """An escalator that counts the times it was woken."""

    kicks = 0

    def kick(self) -> None:
        self.kicks += 1
        super().kick()


async def test_only_a_failed_delivery_wakes_the_escalator(tmp_path: Path) -> None:
    """`delivered` changes no ladder: it is recorded (and the console told) without an
    escalation pass; `undelivered` takes the member out of the step, so the ladder is
    woken at once."""
    engine, store = await server_with_alarms(tmp_path, 2)
    dispatch = DispatchStore(store, b"k" * 32)
    clock = FakeClock()
    escalator = CountingEscalator(dispatch, FlakyNotifier(failures=0), clock, ChangeSignal(), "x")
    service = DispatchService(store, dispatch, escalator, ChangeSignal(), clock)
    assert await escalator.pass_once() == 2
    first, second = await store_rows(engine, "SELECT id FROM notifications ORDER BY id")
    assert await service.delivery_status("SM1", "delivered", [first])
    assert escalator.kicks == 0
    assert await service.delivery_status("SM2", "undelivered", [second])
    assert escalator.kicks == 1
    await engine.dispose()
