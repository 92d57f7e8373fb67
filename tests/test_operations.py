"""docs/operations.md, done as written: backups taken with the documented commands while
the server runs (SQLite `.backup`, `pg_dump`) restore to a working server; the demo runs on
PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from carehub.api_contract import ALARMS_PATH
from harness import postgres
from harness.broker import free_port
from harness.processes import Child, wait_http_ok
from tests.conftest import DIRECTORY

TOKEN, ADMIN = "hub-token-" + "b" * 20, "admin-" + "a" * 20
CAREHUB = Path(sys.executable).with_name("carehub")


def _server(tmp_path: Path, db: Path, name: str, *args: str) -> tuple[Child, str]:
    return _start_server(tmp_path, f"sqlite+aiosqlite:///{db}", name, *args)


def _start_server(tmp_path: Path, url: str, name: str, *args: str) -> tuple[Child, str]:
    """A `carehub server` child on `url` (any database), up and answering."""
    port = free_port()
    child = Child(
        name,
        ["server", *args],
        {
            "CAREHUB_DATABASE_URL": url,
            "CAREHUB_PORT": str(port),
            "CAREHUB_ADMIN_TOKEN": ADMIN,
            "CAREHUB_SECRET_KEY": "s" * 32,
        },
        tmp_path / f"{name}.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/healthz", 60, child)
    return child, base


@pytest.mark.integration
def test_sqlite_backup_restores_to_a_working_server(tmp_path: Path) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 shell is not installed (apt-get install sqlite3)")
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token=TOKEN))
    live, backup = tmp_path / "server.db", tmp_path / "backup.db"
    server, base = _server(
        tmp_path, live, "server", "--directory", str(tmp_path / "directory.toml")
    )
    alarm_id = uuid.uuid4().hex
    try:
        r = httpx.post(
            base + ALARMS_PATH,
            json={
                "alarm_id": alarm_id,
                "device_id": "btn-1",
                "kind": "button",
                "raised_at_ms": int(time.time() * 1000),
            },
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code in (200, 201), r.text
        # the documented command, while the server runs
        subprocess.run(["sqlite3", str(live), f".backup '{backup}'"], check=True, timeout=30)
    finally:
        server.stop()
    live.unlink()  # the disk died: only the backup is left
    restored, base = _server(tmp_path, backup, "restored")  # no --directory: all from backup
    try:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        alarms = httpx.get(f"{base}/api/v1/admin/alarms", headers=admin).json()
        assert [a["hub_alarm_id"] for a in alarms] == [alarm_id]
        again = {  # the hub's token still opens the API: the directory came back too
            "alarm_id": uuid.uuid4().hex,
            "device_id": "btn-2",
            "kind": "button",
            "raised_at_ms": int(time.time() * 1000),
        }
        r = httpx.post(base + ALARMS_PATH, json=again, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code in (200, 201), r.text
    finally:
        restored.stop()


@pytest.mark.integration
def test_demo_runs_on_postgresql(pg_url: str) -> None:
    result = subprocess.run(
        [str(CAREHUB), "demo", "--database-url", pg_url],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=os.environ,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(PostgreSQL)" in result.stdout and "'dispatched'" in result.stdout
    # the press went to PostgreSQL, not a SQLite file
    assert postgres.psql(pg_url, "select count(*) from alarms") == [["1"]]


@pytest.mark.integration
def test_postgresql_dump_restores_to_a_working_server(
    tmp_path: Path, pg_url: str, pg_admin_url: str
) -> None:
    """`pg_dump -Fc` of a running server's database, `pg_restore --no-owner` into a new
    one, and a server started on the copy serves the same alarms (docs/operations.md)."""
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token=TOKEN))
    libpq = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    directory = str(tmp_path / "directory.toml")
    server, base = _start_server(tmp_path, pg_url, "server", "--directory", directory)
    alarm_id = uuid.uuid4().hex
    dump = tmp_path / "carehub.dump"
    try:
        r = httpx.post(
            base + ALARMS_PATH,
            json={
                "alarm_id": alarm_id,
                "device_id": "btn-1",
                "kind": "button",
                "raised_at_ms": int(time.time() * 1000),
            },
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code in (200, 201), r.text
        subprocess.run(
            [postgres.tool("pg_dump"), "-Fc", "-d", libpq, "-f", str(dump)], check=True, timeout=60
        )
    finally:
        server.stop()
    with postgres.fresh_database(pg_admin_url, "carehub_r_") as url:
        restored_libpq = url.replace("postgresql+asyncpg://", "postgresql://")
        subprocess.run(
            [postgres.tool("pg_restore"), "--no-owner", "-d", restored_libpq, str(dump)],
            check=True,
            timeout=60,
        )
        restored, base = _start_server(tmp_path, url, "restored")
        try:
            alarms = httpx.get(
                f"{base}/api/v1/admin/alarms", headers={"Authorization": f"Bearer {ADMIN}"}
            ).json()
            assert [a["hub_alarm_id"] for a in alarms] == [alarm_id]
        finally:
            restored.stop()
