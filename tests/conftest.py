"""Shared fixtures: a private mosquitto, the SMS sandbox, databases, CareHub processes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness import postgres
from harness.broker import Mosquitto, free_port, mosquitto_binary
from harness.processes import Child, wait_http_ok
from harness.sms_sandbox import SmsSandbox

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    if mosquitto_binary() is None:
        pytest.fail(
            "mosquitto is not installed: run `make test` (it installs it)"
            " or apt-get install mosquitto"
        )
    with Mosquitto() as broker:
        yield broker


@pytest.fixture
def sms() -> Iterator[SmsSandbox]:
    with SmsSandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A PostgreSQL server for this test process (one per xdist worker), started on first
    use in a temporary directory, or the developer's own at CAREHUB_TEST_PG. Never skips:
    a machine without PostgreSQL fails the tests that need it."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(postgres.server())
        except (OSError, RuntimeError) as e:
            pytest.fail(f"no PostgreSQL for the tests: {e}")
        yield url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (its asyncpg URL), dropped afterwards."""
    with postgres.fresh_database(pg_admin_url) as url:
        yield url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true a test skipped for want of PostgreSQL fails: those legs must run."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if "postgres" in reason.lower():
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where PostgreSQL tests must run: {reason}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    return str(request.getfixturevalue("pg_url"))


DIRECTORY = """\
[[teams]]
id = "team-a"
name = "Team A"

[[doctors]]
id = "dr-a"
team = "team-a"
name = "Doctor A"
phone = "+8613800000001"
language = "en"

[[doctors]]
id = "dr-b"
team = "team-a"
name = "Doctor B"
phone = "+8613800000002"
priority = 1

[[elders]]
id = "elder-1"
team = "team-a"
name = "Zhang San"
short_address = "Bldg 3-501"

[[hubs]]
id = "hub-1"
elder = "elder-1"
token = "{token}"

[[devices]]
id = "btn-1"
hub = "hub-1"
kind = "button"

[[devices]]
id = "btn-2"
hub = "hub-1"
kind = "button"

[[devices]]
id = "pend-1"
hub = "hub-1"
kind = "pendant"

[[devices]]
id = "wear-1"
hub = "hub-1"
kind = "wearable"
"""


@dataclass
class Deployment:
    """A server and a hub as real processes on a private broker, SMS to the sandbox."""

    tmp: Path
    broker: Mosquitto
    sms: SmsSandbox
    server: Child
    hub: Child
    base_url: str
    admin: httpx.Client
    token: str

    def alarms(self, limit: int = 100) -> list[dict]:
        return self.admin.get("/api/v1/admin/alarms", params={"limit": limit}).json()

    def faults(self, device_id: str, fault: str) -> list[dict]:
        """This device's reports of one fault, newest first."""
        everything = self.admin.get("/api/v1/admin/faults", params={"limit": 1000}).json()
        return [f for f in everything if f["device_id"] == device_id and f["fault"] == fault]

    def alarm(self, alarm_id: str) -> dict:
        return self.admin.get(f"/api/v1/admin/alarms/{alarm_id}").json()

    def restart_hub(self, kill: bool = True) -> None:
        self.hub.kill() if kill else self.hub.stop()
        self.hub.start()

    def wait_hub_online(self, timeout_s: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.hub.running, self.hub.log_tail()
            hubs = self.admin.get("/api/v1/admin/hubs").json()
            if hubs and hubs[0]["online"]:
                return
            time.sleep(0.1)
        raise TimeoutError(self.hub.log_tail())


@pytest.fixture
def directory() -> str:
    """The deployment's directory file (``{token}``: the hub's token); override it in a test
    module for other elders, care plans or time zones."""
    return DIRECTORY


@pytest.fixture
def hub_env() -> dict[str, str]:
    """Extra CAREHUB_* settings for the deployment's hub; override it in a test module."""
    return {}


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra CAREHUB_* settings for the deployment's server; override it in a test module."""
    return {}


BOTH_DATABASES = pytest.mark.parametrize("server_db", ["sqlite", "postgresql"], indirect=True)
"""Run a deployment test once with the server on SQLite and once on PostgreSQL."""


@pytest.fixture
def server_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The deployment server's database: SQLite unless a test asks for PostgreSQL with
    ``@pytest.mark.parametrize("server_db", ["sqlite", "postgresql"], indirect=True)``."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def deployment(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sms: SmsSandbox,
    hub_env: dict[str, str],
    server_env: dict[str, str],
    server_db: str,
    directory: str,
) -> Iterator[Deployment]:
    token, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    (tmp_path / "directory.toml").write_text(directory.format(token=token))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = Child(
        "server",
        ["server", "--directory", str(tmp_path / "directory.toml"), "--log-level", "DEBUG"],
        {
            "CAREHUB_DATABASE_URL": server_db,
            "CAREHUB_PORT": str(port),
            "CAREHUB_ADMIN_TOKEN": admin,
            "CAREHUB_NOTIFIER": "twilio",
            "CAREHUB_TWILIO_API_BASE": sms.url,
            "CAREHUB_TWILIO_ACCOUNT_SID": "AC" + "0" * 31 + "1",
            "CAREHUB_TWILIO_AUTH_TOKEN": "test-secret",
            "CAREHUB_TWILIO_FROM": "+15550000000",
            "CAREHUB_HUB_OFFLINE_AFTER_S": "5",
            "CAREHUB_SECRET_KEY": secrets.token_urlsafe(24),
            "CAREHUB_PUBLIC_BASE_URL": base,  # accept links and Twilio webhooks
            **server_env,
        },
        tmp_path / "server.log",
    ).start()
    hub = Child(
        "hub",
        ["hub", "--log-level", "DEBUG"],
        {
            "CAREHUB_SERVER_URL": base,
            "CAREHUB_HUB_TOKEN": token,
            "CAREHUB_MQTT_PORT": str(mosquitto.port),
            "CAREHUB_HUB_DB": str(tmp_path / "hub.db"),
            "CAREHUB_RETRY_MAX_S": "2",
            "CAREHUB_HEARTBEAT_INTERVAL_S": "1",
            **hub_env,
        },
        tmp_path / "hub.log",
    )
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    try:
        wait_http_ok(f"{base}/healthz", 60, server)
        hub.start()
        d = Deployment(tmp_path, mosquitto, sms, server, hub, base, client, token)
        d.wait_hub_online()
        yield d
    finally:
        client.close()
        hub.stop()
        server.stop()
