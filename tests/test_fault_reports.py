"""Fault reports decided in batches: the same outcome as one at a time, in arrival order
(`server.fault_reports`), and a storm of them stored in a few transactions, not one each
(`server.fault_writer`), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from carehub.api_contract import FaultReport
from server.db import make_engine, migrate
from server.directory import Directory, load_directory
from server.fault_reports import Incoming, Latest, Outcome, decide
from server.fault_writer import FaultWriter
from server.schema import faults
from server.store import HubIdentity, ServerStore, UnknownDevice

HUB = "hub-1"
PAIRED = [(HUB, "pendant-1"), (HUB, "btn-1")]


def report(rid: str, active: bool = True, at_ms: int = 1000, device: str = "pendant-1") -> Incoming:
    fault = FaultReport(
        report_id=rid, device_id=device, fault="battery_low", active=active, at_ms=at_ms
    )
    return Incoming(HUB, fault, at_ms + 5)


def test_a_new_fault_and_its_clearing_in_one_batch_are_both_new() -> None:
    batch = [report("r1", True, 1000), report("r2", False, 2000)]
    assert decide(batch, [], PAIRED, {}) == [Outcome.NEW, Outcome.NEW]


def test_a_retried_report_changes_nothing_whether_stored_or_earlier_in_the_batch() -> None:
    assert decide([report("r1")], [(HUB, "r1")], PAIRED, {}) == [Outcome.UNCHANGED]
    assert decide([report("r1"), report("r1")], [], PAIRED, {}) == [
        Outcome.NEW,
        Outcome.UNCHANGED,
    ]


def test_the_same_state_again_or_an_older_report_changes_nothing() -> None:
    key = (HUB, "pendant-1", "battery_low")
    active = {key: Latest(True, 1000)}
    assert decide([report("r2", True, 3000)], [], PAIRED, active) == [Outcome.UNCHANGED]
    assert decide([report("r3", False, 500)], [], PAIRED, active) == [Outcome.UNCHANGED]
    assert decide([report("r4", False, 3000)], [], PAIRED, active) == [Outcome.NEW]


def test_a_device_of_another_hub_is_unknown_and_does_not_block_the_rest() -> None:
    batch = [report("r1", device="someone-elses"), report("r2")]
    assert decide(batch, [], PAIRED, {}) == [Outcome.UNKNOWN_DEVICE, Outcome.NEW]


DIRECTORY = {
    "teams": [{"id": "t", "name": "T"}],
    "doctors": [{"id": "d", "team": "t", "name": "D", "phone": "+8613800000001"}],
    "elders": [{"id": f"e{i}", "team": "t", "name": f"E{i}"} for i in range(20)],
    "hubs": [{"id": f"hub-{i}", "elder": f"e{i}", "token": f"token-{i:020d}"} for i in range(20)],
    "devices": [{"id": f"p-{i}", "hub": f"hub-{i}", "kind": "pendant"} for i in range(20)],
}


async def test_a_storm_of_reports_is_stored_in_a_few_transactions(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    await load_directory(engine, Directory.model_validate(DIRECTORY), None)
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
    writer = FaultWriter(ServerStore(engine))

    def one(i: int, k: int) -> Incoming:
        # raised, cleared, raised again: each changes the state, so each is stored
        fault = FaultReport(
            report_id=f"r{k}",
            device_id=f"p-{i}",
            fault="device_offline",
            active=k % 2 == 0,
            at_ms=1000 + k,
        )
        return Incoming(f"hub-{i}", fault, 2000)

    try:
        storm = [one(i, k) for k in range(3) for i in range(20)]
        wrong = FaultReport(
            report_id="x", device_id="p-1", fault="battery_low", active=True, at_ms=1
        )
        stray = Incoming("hub-0", wrong, 2000)  # hub-0 reporting hub-1's pendant
        outcomes = await asyncio.gather(*(writer.record(r) for r in [*storm, stray]))
        assert outcomes == [Outcome.NEW] * len(storm) + [Outcome.UNKNOWN_DEVICE]
        assert len(commits) <= 3  # the first report alone, then the rest together
        again = await asyncio.gather(*(writer.record(r) for r in storm))  # hubs retry
        assert again == [Outcome.UNCHANGED] * len(storm)
        async with engine.connect() as conn:
            stored = (await conn.execute(sa.select(sa.func.count()).select_from(faults))).scalar()
        assert stored == len(storm)
        with pytest.raises(UnknownDevice):  # the one-report path the console tests use
            await ServerStore(engine).record_fault(HubIdentity("hub-0", "e0", None), wrong, 2000)
    finally:
        await engine.dispose()


class FailingOnceStore:
    """Fails the first batch it is given, then decides every report new."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def record_faults(self, batch: list[Incoming]) -> list[Outcome]:
        self.batches.append(len(batch))
        await asyncio.sleep(0)
        if len(self.batches) == 1:
            raise RuntimeError("disk I/O error")
        return [Outcome.NEW] * len(batch)


async def test_a_failed_batch_fails_its_own_reports_only() -> None:
    store = FailingOnceStore()
    writer = FaultWriter(store, max_batch=2)  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(writer.record(report(f"r{k}")) for k in range(5)), return_exceptions=True
    )
    assert [type(r).__name__ for r in results[:2]] == ["RuntimeError", "RuntimeError"]
    assert results[2:] == [Outcome.NEW] * 3  # the hubs' retries of the first two will land
    assert store.batches == [2, 2, 1]


async def test_a_report_another_process_stores_meanwhile_fails_nothing(pg_url: str) -> None:
    """PostgreSQL, several server processes: a report committed by another process after
    this batch read the table is skipped at insert, not an IntegrityError failing the
    whole batch (every other hub's report in it)."""
    engine = make_engine(pg_url)
    await migrate(engine)
    await load_directory(engine, Directory.model_validate(DIRECTORY), None)
    other = make_engine(pg_url)
    row = {
        "hub_id": "hub-0",
        "device_id": "p-0",
        "fault": "battery_low",
        "active": True,
        "since_ms": 1,
        "updated_at_ms": 1,
        "report_id": "r-dup",
    }
    dup = FaultReport(report_id="r-dup", device_id="p-0", fault="battery_low", active=True, at_ms=1)
    fine = FaultReport(report_id="r-ok", device_id="p-1", fault="battery_low", active=True, at_ms=1)
    try:
        async with other.connect() as conn:
            tx = await conn.begin()
            await conn.execute(faults.insert().values(**row))  # not committed yet: invisible
            batch = [Incoming("hub-0", dup, 5), Incoming("hub-1", fine, 5)]
            writing = asyncio.create_task(ServerStore(engine).record_faults(batch))
            async with engine.connect() as watch:  # until the batch's insert waits on ours
                waiting = sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                # the database's lock table is the only signal there is: polled, not slept on
                while True:
                    blocked = (await watch.execute(waiting)).scalar()
                    # pg_stat_activity is read once per transaction: end it, or it never moves
                    await watch.rollback()
                    if blocked or writing.done():
                        break
                    await asyncio.sleep(0.01)
            await tx.commit()
        assert await writing == [Outcome.NEW, Outcome.NEW]
        async with engine.connect() as conn:
            ids = (await conn.execute(sa.select(faults.c.report_id))).scalars().all()
        assert sorted(ids) == ["r-dup", "r-ok"]
    finally:
        await other.dispose()
        await engine.dispose()
