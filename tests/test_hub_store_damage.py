"""A damaged hub store is never silent: the hub, a real process with a real Mosquitto and
server, finds it at start (a file check, then SQLite's quick_check), moves it aside (kept,
never deleted), starts a fresh store, reports `hub_store_damaged` to the server's health
board, writes it all to its log file, and answers the next press. A store it cannot set
aside makes it exit non-zero with one clear line, never hang."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from server.console.health_board import HealthBoard, health_board
from tests.conftest import Deployment
from tests.mqtt_tools import AckWatcher, pub, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def hub_env(tmp_path: Path) -> dict[str, str]:
    return {"CAREHUB_LOG_FILE": str(tmp_path / "hub-file.log")}


SERVES = "hub hub-1 serves"


def _log(d: Deployment) -> str:
    path = d.tmp / "hub-file.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _press(d: Deployment, seq: int) -> str | None:
    """Press btn-1 once; the alarm id of its `received` ack, or None when none came."""
    watcher = AckWatcher(d, "btn-1")
    try:
        press = {"v": 1, "seq": seq, "ts": int(time.time() * 1000), "action": "press"}
        pub(d, "btn-1", "button", json.dumps(press))
        acks = [a for a in watcher.collect("received", 20) if a.get("seq") == seq]
    finally:
        watcher.close()
    return acks[-1]["alarm_id"] if acks and acks[-1]["state"] == "received" else None


def _overwrite_alarms_root(db: Path) -> None:
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='alarms'").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()  # the last connection: the WAL is checkpointed into the file and removed
    with db.open("r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xa5" * size)


def _bad_header(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"\x00" * 100)


def _random(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


def _truncated(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


def _emptied(db: Path) -> None:
    db.write_bytes(b"")


@pytest.mark.parametrize(
    "damage",
    [_overwrite_alarms_root, _bad_header, _random, _truncated, _emptied],
    ids=["alarms-root-page", "header", "random-bytes", "truncated", "zero-length"],
)
def test_a_damaged_store_is_set_aside_reported_and_the_next_press_is_received(
    deployment: Deployment, damage: Callable[[Path], None]
) -> None:
    d = deployment
    db = d.tmp / "hub.db"
    d.server.stop()  # alarms stay queued in the hub's store, never uploaded
    for seq in (1, 2, 3):
        assert _press(d, seq), d.hub.log_tail()
    d.hub.stop()
    assert not db.with_name("hub.db-wal").exists()  # a clean stop checkpointed the WAL
    damage(db)
    d.server.start()
    served = _log(d).count(SERVES)
    d.hub.start()
    # the fresh store has no cached config: the hub knows btn-1 again once the server
    # answered (on a secured broker, from the broker's accounts file at once)
    assert wait_for(lambda: _log(d).count(SERVES) > served, 30), _log(d)[-3000:]
    assert _press(d, 4), f"the press after the damage was not received\n{_log(d)[-3000:]}"
    aside = sorted(p.name for p in d.tmp.glob("hub.db.damaged-*"))
    assert aside, "the damaged store is kept beside the fresh one"
    assert db.exists() and db.stat().st_size > 0
    faults = wait_for(lambda: d.faults("hub-1", "hub_store_damaged"), 30)
    assert faults and faults[0]["active"], _log(d)[-3000:]
    assert aside[0] in faults[0]["detail"], faults
    log = _log(d)
    assert "damaged" in log and "moved aside as" in log and "hub_store_damaged" in log
    assert d.hub.running


def test_the_health_board_shows_a_damaged_store_until_a_person_removed_it(
    deployment: Deployment,
) -> None:
    d = deployment
    d.hub.stop()
    _random(d.tmp / "hub.db")
    d.hub.start()
    assert wait_for(lambda: d.faults("hub-1", "hub_store_damaged"), 30), _log(d)[-3000:]
    (problem,) = _board(d).faults["hub_store_damaged"]
    assert problem.subject == "hub-1" and "not_sqlite" in problem.detail
    for aside in d.tmp.glob("hub.db.damaged-*"):
        aside.unlink()  # a person looked at them
    assert wait_for(lambda: not _board(d).faults["hub_store_damaged"], 30), _log(d)[-2000:]


def _board(d: Deployment) -> HealthBoard:
    async def read() -> HealthBoard:
        engine = create_async_engine(f"sqlite+aiosqlite:///{d.tmp / 'server.db'}")
        try:
            return await health_board(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_a_store_that_cannot_be_set_aside_stops_the_hub_non_zero(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    d.hub.stop()
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "hub.db").write_bytes(os.urandom(8192))
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE)")
    try:
        d.hub.env["CAREHUB_HUB_DB"] = str(locked / "hub.db")
        d.hub.start()
        assert d.hub.process is not None
        try:
            code = d.hub.process.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the hub hangs on a store it cannot set aside\n{d.hub.log_tail()}")
        assert code != 0
        log = _log(d)
        assert "hub stopped: StoreUnrecoverable" in log and "Traceback" in log, log[-3000:]
        assert "carehub hub: stopped: StoreUnrecoverable" in d.hub.log_tail()
        assert (locked / "hub.db").exists()
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=False)


CONNECTED = "connected to broker"


def test_a_store_damaged_while_running_stops_the_hub_and_its_press_survives(
    deployment: Deployment,
) -> None:
    """The issue's case: the `alarms` table's root page overwritten under a running hub. The
    press is not acknowledged and dropped: the hub exits non-zero (systemd restarts it), the
    restart sets the store aside, and the broker redelivers the press to the fresh store."""
    d = deployment
    db = d.tmp / "hub.db"
    d.hub.stop()  # a clean stop: every page in the main file, none in the WAL
    connected = _log(d).count(CONNECTED)
    d.hub.start()
    assert wait_for(lambda: _log(d).count(CONNECTED) > connected, 30), _log(d)[-3000:]
    _overwrite_alarms_root(db)
    nudge = sqlite3.connect(db)  # another writer: the hub's page cache is read afresh
    nudge.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('test-nudge', '1')")
    nudge.commit()
    nudge.close()
    watcher = AckWatcher(d, "btn-1")
    try:
        press = {"v": 1, "seq": 77, "ts": int(time.time() * 1000), "action": "press"}
        pub(d, "btn-1", "button", json.dumps(press))
        assert d.hub.process is not None
        try:
            code = d.hub.process.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the hub runs on with a damaged store\n{_log(d)[-3000:]}")
        assert code != 0
        assert "failed its integrity check" in _log(d)
        assert "acknowledged and dropped" not in _log(d)
        d.hub.start()  # as systemd does
        acks = [a for a in watcher.collect("received", 60) if a.get("seq") == 77]
        assert acks and acks[-1]["state"] == "received", _log(d)[-3000:]
    finally:
        watcher.close()
    assert list(d.tmp.glob("hub.db.damaged-*"))
    assert wait_for(lambda: d.faults("hub-1", "hub_store_damaged"), 30)
    assert wait_for(
        lambda: [a for a in d.alarms() if a["seq"] == 77 and a["device_id"] == "btn-1"], 30
    ), "the redelivered press reached the server"
