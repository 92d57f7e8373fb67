"""A store that fails while the hub runs: a press is never acknowledged and dropped as a
poison message; a store that keeps failing makes the hub unhealthy (the watchdog stops), a
damaged one stops it. The device link against a real mosquitto, the hub on a real store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from carehub.mqtt_contract import Ack, AckState
from gateway.device_link import Unhandled
from gateway.pending_acks import PendingAcks
from gateway.store import HubStore, StoreDamaged
from harness.broker import Mosquitto
from tests.test_device_link import publish, running_link, until
from tests.test_hub_shell import CONFIG, FakeUplink, button, make_hub, wait_until


@pytest.mark.integration
async def test_a_message_the_hub_cannot_store_is_never_given_up_on(mosquitto: Mosquitto) -> None:
    calls: list[bytes] = []

    async def store_down(topic: str, payload: bytes) -> None:
        calls.append(payload)
        if len(calls) <= 5:
            raise Unhandled("store failed: disk I/O error")

    async with running_link(mosquitto, store_down, max_failures=2) as link:
        publish(mosquitto, "carehub/btn-1/button", "press-1")
        await until(lambda: len(calls) == 6)
        assert calls == [b"press-1"] * 6, "redelivered past the poison limit, then handled"
        assert link.given_up == 0


def _failing(error: Exception) -> Any:
    async def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


async def test_a_store_that_keeps_failing_makes_the_hub_unhealthy_until_it_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, link = make_hub(tmp_path, FakeUplink(), mqtt_max_handler_failures=3)
    async with hub.opened():
        hub.core.apply_config(CONFIG)
        store = hub.store
        monkeypatch.setattr(store, "raise_alarm", _failing(sqlite3.OperationalError("disk I/O")))
        for seq in (1, 2, 3):
            with pytest.raises(Unhandled):
                await hub._handle_watched(*button(hub, "btn-1", seq))
            assert bool(hub.health.problems()) == (seq == 3)
        assert "store failing 3 times in a row" in hub.health.problems()[0]
        assert not link.acks, "nothing acknowledged"
        monkeypatch.undo()
        await hub._handle_watched(*button(hub, "btn-1", 4))
        assert hub.health.problems() == [] and link.acks[-1][1].state is AckState.RECEIVED


async def test_a_bad_message_is_still_the_poison_rules_to_drop(tmp_path: Path) -> None:
    hub, _ = make_hub(tmp_path, FakeUplink())
    async with hub.opened():
        hub.core.apply_config(CONFIG)
        store = hub.store
        store.raise_alarm = _failing(sqlite3.IntegrityError("UNIQUE constraint failed"))  # type: ignore[method-assign]
        with pytest.raises(sqlite3.IntegrityError):
            await hub._handle_watched(*button(hub, "btn-1", 1))
        assert hub.health.problems() == []


def damage_alarms_table(db: Path) -> None:
    """Overwrite the alarms table's root page, then write as another process would, so the
    hub's page cache is read afresh."""
    conn = sqlite3.connect(db, timeout=30)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='alarms'").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with db.open("r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xa5" * size)
    nudge = sqlite3.connect(db, timeout=30)
    nudge.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('nudge', '1')")
    nudge.commit()
    nudge.close()


async def test_a_store_found_damaged_while_running_stops_the_hub(tmp_path: Path) -> None:
    hub, _ = make_hub(tmp_path, FakeUplink())
    run = asyncio.create_task(hub.run())
    await wait_until(lambda: hub._store is not None)
    hub.core.apply_config(CONFIG)
    # in a thread: the hub runs on this loop, and a write of its own must be able to
    # finish while this one waits for the lock (on the loop, it could not: locked)
    await asyncio.to_thread(damage_alarms_table, tmp_path / "hub.db")
    with pytest.raises(Unhandled):
        await hub._handle_watched(*button(hub, "btn-1", 1))
    with pytest.raises(StoreDamaged):
        await asyncio.wait_for(run, 30)


def test_pending_acks_keep_the_newest_per_alarm_and_survive_a_restart() -> None:
    def ack(alarm: str, state: AckState) -> Ack:
        return Ack(v=1, seq=1, alarm_id=alarm, state=state)

    pending = PendingAcks()
    pending.failed("btn-1", ack("a1", AckState.DISPATCHED))
    pending.failed("btn-1", ack("a2", AckState.ACCEPTED))
    pending.failed("btn-1", ack("a1", AckState.ACCEPTED))  # supersedes a1's dispatched
    assert [(d, a.alarm_id, a.state) for d, a in pending.items()] == [
        ("btn-1", "a2", AckState.ACCEPTED),
        ("btn-1", "a1", AckState.ACCEPTED),
    ]
    again = PendingAcks.loads(pending.dumps())
    assert again.items() == pending.items()
    assert again.sent("btn-1", ack("a2", AckState.RESOLVED))  # a newer one went out
    assert not again.sent("btn-1", ack("a2", AckState.RESOLVED))
    assert [a.alarm_id for _, a in again.items()] == ["a1"]


def _set_aside(directory: Path) -> list[Path]:
    return list(directory.glob("hub.db.damaged-*"))


async def test_a_store_locked_by_another_process_is_never_set_aside(tmp_path: Path) -> None:
    """Locked is not damaged: the hub stops with SQLite's error (systemd starts it again),
    the store stays where it is."""
    db = tmp_path / "hub.db"
    async with HubStore(db):
        pass
    holder = sqlite3.connect(db, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            async with HubStore(db, busy_timeout_s=0.1):
                pass
    finally:
        holder.rollback()
        holder.close()
    assert not _set_aside(tmp_path)
    async with HubStore(db) as store:
        assert store.damage is None


def _pending_faults(db: Path) -> list[tuple[str, bool]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT body FROM outbox WHERE kind='fault' ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(json.loads(b)["fault"], json.loads(b)["active"]) for (b,) in rows]


async def test_the_damage_fault_clears_once_a_person_removed_the_set_aside_files(
    tmp_path: Path,
) -> None:
    db = tmp_path / "hub.db"
    async with HubStore(db):
        pass
    db.write_bytes(b"\x00" * 4096)  # not a SQLite file any more
    hub, _ = make_hub(tmp_path, FakeUplink())
    async with hub.opened():
        await hub.supervision_pass()
        assert _pending_faults(db) == [("hub_store_damaged", True)]
        (aside,) = _set_aside(tmp_path)
        aside.unlink()  # the installer looked at it
        await hub.supervision_pass()
        assert _pending_faults(db) == [("hub_store_damaged", True), ("hub_store_damaged", False)]
    async with hub.opened():  # and stays cleared across a restart
        await hub.supervision_pass()
        assert len(_pending_faults(db)) == 2
