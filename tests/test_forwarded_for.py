"""A real `carehub server` believes X-Forwarded-For only from `CAREHUB_TRUSTED_PROXIES`: a
client cannot escape the per-source enrollment limit by naming another address."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from carehub.api_contract import ENROLL_PATH
from harness.broker import free_port
from harness.processes import Child, wait_http_ok
from tests.conftest import DIRECTORY
from tests.test_server_process import TOKEN


def statuses(tmp_path: Path, trusted: str) -> list[int]:
    """Three enrollment attempts from 127.0.0.1, each claiming another address, against a
    server allowing two per source."""
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token=TOKEN))
    port = free_port()
    server = Child(
        "server",
        ["server", "--directory", str(tmp_path / "directory.toml")],
        {
            "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
            "CAREHUB_PORT": str(port),
            "CAREHUB_ENROLL_MAX_ATTEMPTS_PER_CLIENT": "2",
            "CAREHUB_TRUSTED_PROXIES": trusted,
        },
        tmp_path / "server.log",
    ).start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/healthz", 60, server)
        body = {"code": "ABCD-EFGH-JKMN", "hardware_id": "pi", "version": "1"}
        return [
            httpx.post(
                base + ENROLL_PATH, json=body, headers={"X-Forwarded-For": f"198.51.100.{n}"}
            ).status_code
            for n in range(3)
        ]
    finally:
        server.stop()


@pytest.mark.integration
def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    assert statuses(tmp_path, "") == [404, 404, 429]  # all three are 127.0.0.1's


@pytest.mark.integration
def test_forwarded_for_from_a_configured_proxy_names_the_client(tmp_path: Path) -> None:
    assert statuses(tmp_path, "127.0.0.1, ::1") == [404, 404, 404]  # three clients


def test_a_trusted_proxy_is_an_address_or_a_network() -> None:
    from carehub.settings import ServerSettings, SettingsError, load

    assert load(ServerSettings, trusted_proxies="10.0.0.0/8, ::1").trusted_proxies
    with pytest.raises(SettingsError, match="CAREHUB_TRUSTED_PROXIES"):
        load(ServerSettings, trusted_proxies="proxy.local")
