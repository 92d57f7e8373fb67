"""The broker's security files as text: mosquitto's own password format (checked both
ways against the real tools), the ACL's pattern lines, the configuration and TLS."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.broker_auth import (
    Account,
    Listener,
    acl_file,
    hash_password,
    mosquitto_conf,
    password_file,
    verify_password,
)
from gateway.broker_files import ACCOUNTS, ACL, PASSWD, load_accounts, write_all
from gateway.pairing import BrokerAccounts, PairedDevice


def test_hash_has_mosquittos_format_and_verifies() -> None:
    hashed = hash_password("s3cret", salt=b"0123456789ab")
    _, kind, iterations, salt, digest = hashed.split("$")
    assert (kind, iterations, len(salt), len(digest)) == ("7", "101", 16, 88)
    assert verify_password("s3cret", hashed)
    assert not verify_password("s3cret!", hashed)
    assert not verify_password("s3cret", "$6$garbage")
    assert hash_password("s3cret") != hash_password("s3cret")  # a fresh salt each time


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_a_hash_made_by_mosquitto_passwd_verifies_here(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "alice", "pa:ss wörd"], check=True)
    user, hashed = path.read_text().strip().split(":", 1)
    assert user == "alice" and verify_password("pa:ss wörd", hashed)
    assert not verify_password("pass", hashed)


def test_password_file_refuses_a_username_that_would_break_it() -> None:
    assert password_file([Account("b", "$7$x"), Account("a", "$7$y")]) == "a:$7$y\nb:$7$x\n"
    for bad in ("a:b", "a\nb", ""):
        with pytest.raises(ValueError):
            password_file([Account(bad, "$7$x")])


def test_acl_gives_devices_their_own_topics_only() -> None:
    text = acl_file("carehub", "_hub", "_observer", pairing_open=True)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[:2] == ["user _hub", "topic readwrite #"]
    patterns = [line for line in lines if line.startswith("pattern")]
    assert patterns == [
        "pattern write carehub/pair/%c/announce",
        "pattern read carehub/pair/%c/credential",
        "pattern write carehub/%u/availability",
        "pattern write carehub/%u/button",
        "pattern write carehub/%u/imu",
        "pattern write carehub/%u/status",
        "pattern write carehub/%u/vitals",
        "pattern read carehub/%u/ack",
    ]
    observer = lines[lines.index("user _observer") + 1 : lines.index("user _observer") + 5]
    assert all(line.startswith("topic read ") for line in observer)
    assert "user _observer" not in acl_file("carehub", "_hub")


def test_conf_refuses_anonymous_names_the_files_and_keeps_persistence(tmp_path: Path) -> None:
    conf = mosquitto_conf(tmp_path, Listener(port=1884, host="127.0.0.1"), run_as="carehub")
    d = tmp_path.resolve()
    for line in (
        "user carehub",
        "listener 1884 127.0.0.1",
        "allow_anonymous false",
        f"password_file {d}/passwd",
        f"acl_file {d}/acl",
        "persistence true",
        f"persistence_location {d}/data/",
        f"pid_file {d}/mosquitto.pid",
        f"max_packet_size {64 * 1024 + 1024}",  # the hub's payload limit and a topic
    ):
        assert line in conf.splitlines(), line
    assert "certfile" not in conf


def test_tls_is_one_setting_away(tmp_path: Path) -> None:
    listener = Listener(port=8883, certfile=Path("/etc/c.pem"), keyfile=Path("/etc/k.pem"))
    lines = mosquitto_conf(tmp_path, listener).splitlines()
    at = lines.index("listener 8883")
    assert lines[at + 1 : at + 3] == ["certfile /etc/c.pem", "keyfile /etc/k.pem"]


def test_files_are_written_with_secret_modes_and_read_back(tmp_path: Path) -> None:
    accounts = BrokerAccounts.new(hub_password="hub-password").with_device(
        PairedDevice("btn-1", "button", "btn-1", hash_password("device-pw"), 1)
    )
    write_all(tmp_path, accounts, "carehub", Listener())
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in (ACCOUNTS, PASSWD, ACL)}
    assert modes == {ACCOUNTS: 0o600, PASSWD: 0o600, ACL: 0o640}
    assert load_accounts(tmp_path) == accounts
    passwd = dict(line.split(":", 1) for line in (tmp_path / PASSWD).read_text().splitlines())
    assert set(passwd) == {"_hub", "_pair", "btn-1"}
    assert verify_password("hub-password", passwd["_hub"])
    assert verify_password("carehub-pairing", passwd["_pair"])
    assert verify_password("device-pw", passwd["btn-1"])
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("device_id", ["btn:1", "a/b", "x+", "#", "é", ""])
def test_an_id_the_contract_refuses_is_refused_as_a_broker_account_too(device_id: str) -> None:
    """One id pattern: what the contract refuses as a device or hardware id, the password
    file refuses as an account (``:`` would split a passwd line), and the other way round."""
    from carehub.mqtt_contract import DEVICE_ID_PATTERN, ContractError, PairAnnounce, Topics
    from carehub.mqtt_contract import parse_model as parse

    assert not DEVICE_ID_PATTERN.match(device_id)
    with pytest.raises(ContractError):
        Topics().parse(f"carehub/{device_id}/button")
    with pytest.raises(ValueError):
        Topics().pair_credential(device_id)
    body = {"v": 1, "hardware_id": device_id, "kind": "button", "public_key": "A" * 43 + "="}
    with pytest.raises(ContractError):
        parse(PairAnnounce, json.dumps(body).encode())
    with pytest.raises(ValueError):
        password_file([Account(device_id, "$7$x")])
    for ok in ("btn-1", "A.b_c-9", "x" * 64):
        assert DEVICE_ID_PATTERN.match(ok) and password_file([Account(ok, "$7$x")])


def test_broker_config_survives_an_accounts_file_with_a_colon_id(tmp_path: Path) -> None:
    """An accounts file written when ``:`` was allowed: the device is left out (it could never
    log in), everything else is written, and the command does not crash."""
    from typer.testing import CliRunner

    from cli.main import app

    good = PairedDevice("btn-1", "button", "btn-1", hash_password("pw"), 1)
    bad = PairedDevice("btn:2", "button", "btn:2", hash_password("pw"), 1)
    accounts = BrokerAccounts.new(hub_password="hub-pw")
    raw = json.loads(accounts.with_device(good).to_json())
    raw["devices"].append(json.loads(json.dumps(bad.__dict__)))
    (tmp_path / ACCOUNTS).write_text(json.dumps(raw))
    loaded = load_accounts(tmp_path)
    assert loaded is not None and [d.device_id for d in loaded.devices] == ["btn-1"]
    done = CliRunner().invoke(
        app, ["hub", "broker-config", "--dir", str(tmp_path)], env={"CAREHUB_CONFIG": ""}
    )
    assert done.exit_code == 0, done.output
    users = [line.split(":", 1)[0] for line in (tmp_path / PASSWD).read_text().splitlines()]
    assert users == ["_hub", "_pair", "btn-1"]


def test_both_brokers_bound_the_queue_alike_and_never_save_on_a_timer(tmp_path: Path) -> None:
    from gateway.broker_auth import AUTOSAVE_CHANGES, QUEUE_BYTES, QUEUE_LIMIT, queue_settings
    from harness.broker import mosquitto_config

    appliance = mosquitto_conf(tmp_path, Listener()).splitlines()
    development = mosquitto_config(1883, tmp_path / "dev").splitlines()
    assert set(queue_settings(tmp_path.resolve() / "data")) <= set(appliance)
    assert set(queue_settings(tmp_path / "dev")) <= set(development)
    for conf in (appliance, development):
        assert (
            "autosave_on_changes true" in conf and f"autosave_interval {AUTOSAVE_CHANGES}" in conf
        )
        assert f"max_queued_bytes {QUEUE_BYTES}" in conf
        assert f"max_queued_messages {QUEUE_LIMIT}" in conf
