"""From the installer's commands to a hub online: `carehub admin` makes the household and
the code against a real server process, `carehub hub enroll` writes the credential (mode
0600 from the start), and `carehub hub` with no token configured runs on it; moving the hub
then locks it out."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from carehub.api_contract import HUB_CONFIG_PATH
from carehub.settings import HubSettings
from cli.main import app
from gateway.broker_files import write_security
from gateway.credential import CredentialError, HubCredential, with_credential, write_credential
from gateway.pairing import BrokerAccounts, PairedDevice
from harness.broker import Mosquitto, free_port
from harness.processes import Child, wait_http_ok
from tests.conftest import DIRECTORY

ADMIN = "admin-token-for-the-cli-test"
SECOND_ELDER = '\n[[elders]]\nid = "elder-2"\nteam = "team-a"\nname = "Li Si"\n'


def test_the_credential_file_is_private_from_the_start(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "etc" / "credential.json"
    seen_modes: list[int] = []
    real_open = os.open

    def spying_open(file, flags, mode=0o777, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen_modes.append(mode)
        return real_open(file, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spying_open)
    write_credential(path, HubCredential("http://s", "hub-1", "home-1", "t1"))
    write_credential(path, HubCredential("http://s", "hub-2", "home-2", "t2"))  # replaced
    assert seen_modes == [0o600, 0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["hub_id"] == "hub-2"
    assert [p.name for p in path.parent.iterdir()] == ["credential.json"]  # no leftovers

    settings = HubSettings(hub_credential_file=path)
    resolved = with_credential(settings)
    assert resolved.hub_token.get_secret_value() == "t2" and resolved.server_url == "http://s"
    explicit = with_credential(HubSettings(hub_credential_file=path, server_url="http://proxy"))
    assert explicit.server_url == "http://proxy"  # an explicit URL wins
    try:
        with_credential(HubSettings(hub_credential_file=tmp_path / "missing.json"))
    except CredentialError as e:
        assert "carehub hub enroll" in str(e)
    else:
        raise AssertionError("a missing credential file must be refused")


def test_installer_commands_enroll_a_hub_that_runs_on_its_file(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token="t" * 24) + SECOND_ELDER)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = Child(
        "server",
        ["server", "--directory", str(tmp_path / "directory.toml")],
        {
            "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
            "CAREHUB_PORT": str(port),
            "CAREHUB_ADMIN_TOKEN": ADMIN,
        },
        tmp_path / "server.log",
    ).start()
    hub: Child | None = None
    runner = CliRunner()
    env = {"CAREHUB_PUBLIC_BASE_URL": base, "CAREHUB_ADMIN_TOKEN": ADMIN}
    try:
        wait_http_ok(f"{base}/healthz", 60, server)

        def admin(*args: str) -> str:
            result = runner.invoke(app, ["admin", *args], env=env)
            assert result.exit_code == 0, result.output
            return result.stdout

        admin("household-create", "--household", "home-2", "--address", "Road 9")
        admin("assign-elder", "--household", "home-2", "--elder", "elder-2")
        admin("assign-team", "--household", "home-2", "--team", "team-a")
        code = admin("enroll-code", "--household", "home-2").splitlines()[0]
        refused = runner.invoke(app, ["admin", "enroll-code", "--household", "nowhere"], env=env)
        assert refused.exit_code == 1 and "no household nowhere" in refused.output

        credential = tmp_path / "hub" / "credential.json"
        paired = BrokerAccounts.new()  # paired on this hub before (it is enrolled again)
        for device_id in ("btn-5", "btn-1"):  # btn-1 is elder-1's home's
            paired = paired.with_device(PairedDevice(device_id, "button", "hw", "x", 0))
        write_security(tmp_path / "broker", paired, "carehub")
        enrolled = runner.invoke(
            app,
            [
                "hub",
                "enroll",
                "--server",
                base,
                "--code",
                code,
                "--credential-file",
                str(credential),
            ],
            env={"CAREHUB_HUB_BROKER_DIR": str(tmp_path / "broker")},
        )
        assert enrolled.exit_code == 0, enrolled.output
        assert "device btn-5 (button): registered" in enrolled.output
        assert "device btn-1: NOT registered (409)" in enrolled.output
        assert "carehub admin release-device --device btn-1" in enrolled.output
        assert stat.S_IMODE(credential.stat().st_mode) == 0o600
        saved = json.loads(credential.read_text())
        assert saved["server_url"] == base and saved["household_id"] == "home-2"
        again = runner.invoke(
            app,
            [
                "hub",
                "enroll",
                "--server",
                base,
                "--code",
                code,
                "--credential-file",
                str(tmp_path / "x.json"),
            ],
        )
        assert again.exit_code == 1 and "used already" in again.output
        assert not (tmp_path / "x.json").exists()

        hub = Child(
            "hub",
            ["hub"],
            {
                "CAREHUB_HUB_TOKEN": "",
                "CAREHUB_HUB_CREDENTIAL_FILE": str(credential),
                "CAREHUB_MQTT_PORT": str(mosquitto.port),
                "CAREHUB_HUB_DB": str(tmp_path / "hub.db"),
                "CAREHUB_HEARTBEAT_INTERVAL_S": "0.5",
            },
            tmp_path / "hub.log",
        ).start()
        deadline = time.monotonic() + 30
        homes = ""
        while time.monotonic() < deadline:
            assert hub.running, hub.log_tail()
            hubs = httpx.get(
                f"{base}/api/v1/admin/hubs", headers={"Authorization": f"Bearer {ADMIN}"}
            ).json()
            if any(h["id"] == saved["hub_id"] and h["online"] for h in hubs):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(hub.log_tail())
        homes = admin("households")
        assert (
            f"home-2: team team-a; elders elder-2; hubs {saved['hub_id']}; never self-tested"
            in homes
        )

        admin("move-hub", "--hub", saved["hub_id"], "--household", "elder-1")
        locked = httpx.get(
            base + HUB_CONFIG_PATH, headers={"Authorization": f"Bearer {saved['token']}"}
        )
        assert locked.status_code == 401
    finally:
        if hub is not None:
            hub.stop()
        server.stop()
