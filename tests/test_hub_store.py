"""The hub's durable store: atomic alarm + outbox, order, restart survival."""

from __future__ import annotations

from pathlib import Path

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from gateway.store import SUMMARIES_QUEUE, HubAlarm, HubStore, OutboxKind


def _alarm(i: int, state: AlarmState = AlarmState.RECEIVED) -> HubAlarm:
    return HubAlarm(f"a{i}", "btn-1", i, AlarmKind.BUTTON, Severity.CRITICAL, state, 1000 + i)


async def test_alarm_event_and_outbox_commit_together_and_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    async with HubStore(db) as store:
        for i in range(3):
            await store.raise_alarm(_alarm(i), 500 + i, {"k": i}, {"alarm_id": f"a{i}"}, 2000)
        first = await store.next_pending()
        assert first is not None and first.ref == "a0"
        await store.mark_sent(first.id, 3000)
    async with HubStore(db) as store:  # as after a restart
        pending = await store.next_pending()
        assert pending is not None and pending.ref == "a1" and pending.body == {"alarm_id": "a1"}
        assert await store.queue_depth() == 2
        stored = await store.stored_event("btn-1", 2)
        assert stored is not None and stored.alarm_id == "a2" and stored.ts_ms == 502


async def test_state_only_moves_forward_and_enqueues_with_the_change(tmp_path: Path) -> None:
    async with HubStore(tmp_path / "hub.db") as store:
        await store.raise_alarm(_alarm(1), None, {}, {"alarm_id": "a1"}, 0)
        assert await store.set_state("a1", AlarmState.DISPATCHED, 1) is AlarmState.DISPATCHED
        assert await store.set_state("a1", AlarmState.RECEIVED, 2) is None
        changed = await store.set_state(
            "a1", AlarmState.CANCELLED, 3, ("report", "r1", {"report_id": "r1"})
        )
        assert changed is AlarmState.CANCELLED
        assert await store.set_state("a1", AlarmState.ACCEPTED, 4) is None
        assert await store.queue_depth() == 2
        assert await store.latest_open_alarm(0) is None


async def test_rejected_entries_are_kept_but_do_not_block_the_queue(tmp_path: Path) -> None:
    async with HubStore(tmp_path / "hub.db") as store:
        await store.enqueue("alarm", "bad", {"x": 1}, 0)
        await store.enqueue("alarm", "good", {"x": 2}, 0)
        bad = await store.next_pending()
        assert bad is not None
        await store.mark_rejected(bad.id, "HTTP 422")
        nxt = await store.next_pending()
        assert nxt is not None and nxt.ref == "good"
        async with store.db.execute("SELECT count(*) FROM outbox") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] == 2


async def test_a_full_outbox_drops_oldest_non_alarm_entries_never_alarms(tmp_path: Path) -> None:
    async with HubStore(tmp_path / "hub.db") as store:
        await store.enqueue("fault", "f0", {"n": 0}, 1)
        await store.raise_alarm(_alarm(1), None, {}, {"alarm_id": "a1"}, 2)
        for i in range(1, 4):
            await store.enqueue("fault", f"f{i}", {"n": i}, 3 + i)
        await store.raise_alarm(_alarm(2), None, {}, {"alarm_id": "a2"}, 9)
        assert await store.trim_outbox(max_entries=10) == 0
        assert await store.trim_outbox(max_entries=3) == 3  # f0, f1, f2 go; alarms stay
        refs = []
        while (entry := await store.next_pending()) is not None:
            refs.append(entry.ref)
            await store.mark_sent(entry.id, 100)
        assert refs == ["a1", "a2", "f3"]  # alarms before faults (gateway.outbox_order)
        for i in range(5):
            await store.raise_alarm(_alarm(10 + i), None, {}, {"alarm_id": f"x{i}"}, 200)
        assert await store.trim_outbox(max_entries=1) == 0  # only alarms: kept, over the bound
        assert await store.queue_depth() == 5


async def test_pending_falls_are_found_again_with_their_evidence(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    pending = HubAlarm(
        "f1", "pend-1", None, AlarmKind.FALL, Severity.CRITICAL, AlarmState.PENDING_CANCEL, 5
    )
    async with HubStore(db) as store:
        await store.raise_alarm(pending, 4, {"peak_g": 4.2}, None, 5)
        assert await store.queue_depth() == 0  # nothing leaves the hub during the window
    async with HubStore(db) as store:
        assert await store.alarms_in_state(AlarmState.PENDING_CANCEL) == [pending]
        assert await store.alarm_evidence("f1") == (4, {"peak_g": 4.2})


async def test_prune_forgets_only_what_is_uploaded_or_finished_and_old(tmp_path: Path) -> None:
    async with HubStore(tmp_path / "hub.db") as store:
        await store.raise_alarm(_alarm(1), None, {}, {"alarm_id": "a1"}, 100)  # old, sent
        await store.raise_alarm(_alarm(2), None, {}, {"alarm_id": "a2"}, 100)  # old, unsent
        await store.raise_alarm(_alarm(3), None, {}, {"alarm_id": "a3"}, 9000)  # recent
        first = await store.next_pending()
        assert first is not None
        await store.mark_sent(first.id, 200)
        await store.set_state("a1", AlarmState.RESOLVED, 300)
        await store.set_state("a2", AlarmState.CANCELLED, 300)  # final but not uploaded yet
        assert await store.prune(before_ms=5000) > 0
        assert await store.alarm("a1") is None
        assert await store.alarm("a2") is not None, "still waiting for its upload"
        assert await store.alarm("a3") is not None
        assert await store.queue_depth() == 2
        pending = await store.next_pending()
        assert pending is not None and pending.ref == "a2"


async def test_a_waiting_summary_never_holds_up_the_hubs_fault_reports(tmp_path: Path) -> None:
    async with HubStore(tmp_path / "hub.db") as store:
        assert await store.close_day("2026-03-10", "{}", {"day": "2026-03-10"}, 1)
        assert not await store.close_day("2026-03-10", "{}", {"day": "2026-03-10"}, 2)  # once
        await store.enqueue(OutboxKind.FAULT, "f1", {"report_id": "f1", "fault": "x"}, 3)
        fault = await store.next_pending()  # queued after the summary, not behind it
        assert fault is not None and fault.ref == "f1"
        summary = await store.next_pending(after_device=fault.device_id)  # its queue's turn
        assert summary is not None and summary.kind is OutboxKind.SUMMARY
        assert summary.device_id == SUMMARIES_QUEUE
