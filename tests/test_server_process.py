"""`carehub server` as an operator runs it: where it listens, a quiet log, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from carehub.api_contract import ALARMS_PATH
from harness.broker import free_port
from harness.processes import Child, wait_http_ok, wait_until
from harness.sms_sandbox import SmsSandbox
from tests.conftest import DIRECTORY

TOKEN = "hub-token-" + "x" * 20
CAREHUB = Path(sys.executable).with_name("carehub")


def _server(tmp_path: Path, sms: SmsSandbox, port: int) -> Child:
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token=TOKEN))
    return Child(
        "server",
        ["server", "--directory", str(tmp_path / "directory.toml")],  # default log level
        {
            "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
            "CAREHUB_PORT": str(port),
            "CAREHUB_NOTIFIER": "twilio",
            "CAREHUB_TWILIO_API_BASE": sms.url,
            "CAREHUB_TWILIO_ACCOUNT_SID": "AC" + "0" * 31 + "1",
            "CAREHUB_TWILIO_AUTH_TOKEN": "test-secret",
            "CAREHUB_SECRET_KEY": "s" * 32,
        },
        tmp_path / "server.log",
    ).start()


@pytest.mark.integration
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_log_says_where_it_listens_stays_quiet_and_stops_cleanly(
    tmp_path: Path, sms: SmsSandbox, stop: signal.Signals
) -> None:
    port = free_port()
    server = _server(tmp_path, sms, port)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/healthz", 60, server)
        upload = {
            "alarm_id": uuid.uuid4().hex,
            "device_id": "btn-1",
            "kind": "button",
            "raised_at_ms": int(time.time() * 1000),
        }
        r = httpx.post(
            base + ALARMS_PATH, json=upload, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert r.status_code in (200, 201), r.text
        wait_until(lambda: len(sms.messages) >= 1, 30, "an SMS through the Twilio SDK", [server])
        assert server.process is not None
        server.process.send_signal(stop)
        assert server.process.wait(15) == 0
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert f"listening on http://127.0.0.1:{port}" in log, log
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert "twilio.http_client" not in log, log  # the SDK logs each request at INFO
    assert f"stopped (signal {int(stop)})" in log, log


def test_server_help_names_every_setting() -> None:
    from carehub.settings import ServerSettings

    result = subprocess.run(
        [str(CAREHUB), "server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    missing = [
        f"CAREHUB_{name.upper()}"
        for name in ServerSettings.model_fields
        if f"CAREHUB_{name.upper()}" not in result.stdout
    ]
    assert not missing, f"carehub server --help does not name {missing}"


def test_a_broken_directory_stops_the_server_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text(DIRECTORY.format(token=TOKEN).replace('kind = "pendant"', 'kind = "sock"'))
    result = subprocess.run(
        [str(CAREHUB), "server", "--directory", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"},
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if "sock" in ln)
    assert f"{path}:{line}: devices.2.kind (id pend-1)" in result.stderr, result.stderr


async def test_console_sms_log_keeps_no_link_token(caplog: pytest.LogCaptureFixture) -> None:
    from server.notifier import ConsoleNotifier

    body = "CareHub URGENT: Zhang pressed. Open: https://c.example.org/r/BDA4F1/WtT118Hw-tJ_Og"
    with caplog.at_level("INFO", logger="server.notifier"):
        await ConsoleNotifier().send_sms("+8613800000001", body)
    assert "WtT118Hw" not in caplog.text and "/r/BDA4F1/…" in caplog.text
    assert "+8613800000001" not in caplog.text and "0001" in caplog.text
