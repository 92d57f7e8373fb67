"""The simulators and the installer's commands, through the `carehub` command against a
real mosquitto running the hub's generated configuration (no anonymous clients):

- `carehub sim press` pairs like a device (announces; `hub pair --accept-all` accepts it),
  keeps its credential and logs in with it; the running hub acks its press. Refused by the
  broker (anonymous, or a stale credential) it says so and presses nothing (it printed
  `press seq …` while refused, and connected anonymously, so it could never pair).
- `carehub hub pair` closes its window early on Ctrl-C, with its summary.
- `carehub hub remove` says "removed on the server" only when the server removed it.
- a self-test that cannot reach the broker, or that fails, says why.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.broker_auth import Listener, hash_password
from gateway.broker_files import load_accounts, write_all
from gateway.pairing import BrokerAccounts, PairedDevice
from harness.broker import free_port, mosquitto_binary, wait_for_port
from harness.processes import Child, wait_http_ok
from tests.conftest import DIRECTORY

pytestmark = pytest.mark.integration


class Home:
    """A secured broker and the settings every command of this home gets."""

    def __init__(self, tmp: Path, port: int) -> None:
        self.tmp, self.port, self.dir = tmp, port, tmp / "broker"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")},
            "CAREHUB_HUB_BROKER_DIR": str(self.dir),
            "CAREHUB_MQTT_PORT": str(port),
            "CAREHUB_HUB_DB": str(tmp / "hub.db"),
            "CAREHUB_HUB_CREDENTIAL_FILE": str(tmp / "no-credential.json"),
            "CAREHUB_SERVER_URL": "http://127.0.0.1:9",
        }

    def carehub(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.tmp,
            env={**self.env, **env},
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.tmp,
            env={**self.env, **env},
        )

    def pair_on_the_hub_only(self, device_id: str) -> None:
        """A device in the broker's accounts (as after `hub pair`), whatever the server has."""
        accounts = load_accounts(self.dir)
        assert accounts is not None
        device = PairedDevice(device_id, "button", device_id, hash_password("pw"), 1)
        write_all(self.dir, accounts.with_device(device), "carehub", self.listener())

    def listener(self) -> Listener:
        return Listener(self.port, "127.0.0.1")

    def hub_client(self) -> mqtt.Client:
        accounts = load_accounts(self.dir)
        assert accounts is not None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-hub-eye")
        client.username_pw_set(accounts.hub_username, accounts.hub_password)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        return client


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed")
    h = Home(tmp_path, free_port())
    write_all(h.dir, BrokerAccounts.new(), "carehub", h.listener(), getpass.getuser())
    broker = subprocess.Popen(
        [mosquitto_binary(), "-c", str(h.dir / "carehub.conf")],  # type: ignore[list-item]
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(h.port)
        yield h
    finally:
        broker.terminate()
        broker.wait(5)


def read_until(process: subprocess.Popen[str], text: str) -> str:
    """stdout lines until one contains `text` (or the process ends)."""
    assert process.stdout is not None
    seen = ""
    for line in process.stdout:
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never came:\n{seen}")


def test_sim_press_pairs_logs_in_and_gets_the_hubs_ack(home: Home) -> None:
    hub = home.start("hub", CAREHUB_HUB_TOKEN="t" * 24)
    pairing = home.start("hub", "pair", "--seconds", "60", "--accept-all")
    try:
        read_until(pairing, "pairing open")
        pressed = home.carehub(
            "sim", "press", "--device", "btn-7", "--until", "received", "--wait", "30"
        )
        assert pressed.returncode == 0, pressed.stdout + pressed.stderr
        assert "btn-7: paired; credential kept in sim-credentials/btn-7.json" in pressed.stdout
        assert "btn-7: press seq" in pressed.stdout and "ack received" in pressed.stdout
        kept = home.tmp / "sim-credentials" / "btn-7.json"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert json.loads(kept.read_text())["username"] == "btn-7"
        # pressed again: the kept credential, no second pairing
        again = home.carehub(
            "sim", "press", "--device", "btn-7", "--until", "received", "--wait", "30"
        )
        assert again.returncode == 0 and "paired" not in again.stdout, again.stdout
    finally:
        pairing.send_signal(signal.SIGINT)
        pairing.communicate(timeout=30)
        hub.terminate()
        hub.communicate(timeout=30)


def test_a_refused_sim_says_so_and_presses_nothing(home: Home) -> None:
    anonymous = home.carehub("sim", "press", "--device", "btn-1", "--anonymous", "--wait", "2")
    assert anonymous.returncode == 1
    assert "press seq" not in anonymous.stdout, anonymous.stdout
    assert "btn-1: the broker refused it: Not authorized" in anonymous.stderr, anonymous.stderr
    assert "run without --anonymous to pair" in anonymous.stderr

    kept = home.tmp / "sim-credentials"
    kept.mkdir()
    for device in ("btn-1", "wear-1", "pend-1"):
        (kept / f"{device}.json").write_text(
            json.dumps({"device_id": device, "username": device, "password": "stale"})
        )
    stale = home.carehub("sim", "home", "--seconds", "1")
    assert stale.returncode == 1
    assert "home running" not in stale.stdout, stale.stdout
    assert "btn-1: the broker refused it" in stale.stderr, stale.stderr
    assert f"delete {Path('sim-credentials') / 'btn-1.json'} to pair again" in stale.stderr


def test_hub_pair_closes_its_window_early_on_ctrl_c(home: Home) -> None:
    pairing = home.start("hub", "pair", "--seconds", "600")
    out = read_until(pairing, "pairing open")
    pairing.send_signal(signal.SIGINT)
    rest, err = pairing.communicate(timeout=30)
    out += rest
    assert pairing.returncode == 1, out + err  # nothing paired
    assert "pairing closed" in out and "paired: none" in out, out
    assert "Traceback" not in err, err
    # the retained window says closed
    seen: list[dict] = []
    got = threading.Event()
    eye = home.hub_client()

    def on_message(client: object, userdata: object, m: mqtt.MQTTMessage) -> None:
        seen.append(json.loads(m.payload))
        got.set()

    eye.on_message = on_message
    eye.subscribe("carehub/bridge/pairing", qos=1)
    assert got.wait(5)
    assert seen[0]["open"] is False
    eye.loop_stop()
    eye.disconnect()


def test_hub_remove_says_removed_on_the_server_only_when_it_was(home: Home) -> None:
    token, server_port = secrets.token_urlsafe(24), free_port()
    (home.tmp / "directory.toml").write_text(DIRECTORY.format(token=token))
    server = Child(
        "server",
        ["server", "--directory", str(home.tmp / "directory.toml")],
        {
            "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{home.tmp / 'server.db'}",
            "CAREHUB_PORT": str(server_port),
        },
        home.tmp / "server.log",
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{server_port}/healthz", 60, server)
        env = {"CAREHUB_HUB_TOKEN": token, "CAREHUB_SERVER_URL": f"http://127.0.0.1:{server_port}"}
        home.pair_on_the_hub_only("btn-1")  # the server has btn-1 on hub-1
        home.pair_on_the_hub_only("btn-9")  # and no btn-9
        known = home.carehub("hub", "remove", "btn-1", **env)
        assert known.returncode == 0, known.stdout + known.stderr
        assert "removed on the server" in known.stdout, known.stdout
        unknown = home.carehub("hub", "remove", "btn-9", **env)
        assert "removed on the server" not in unknown.stdout, unknown.stdout
        assert "the server has no btn-9 for this hub" in unknown.stdout, unknown.stdout
    finally:
        server.stop()


def test_a_self_test_that_cannot_reach_its_broker_says_why(home: Home) -> None:
    gone = free_port()
    done = home.carehub("hub", "selftest", "--yes", "--timeout", "5", CAREHUB_MQTT_PORT=str(gone))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"carehub hub selftest: broker 127.0.0.1:{gone}: "), done.stderr


def test_a_failing_self_test_says_why_each_check_failed(home: Home) -> None:
    home.pair_on_the_hub_only("btn-1")
    selftest = home.start("hub", "selftest", "--yes", "--timeout", "3")
    read_until(selftest, "self-test started")
    eye = home.hub_client()  # the button's status and press, as the hub's broker sees them
    now = int(time.time() * 1000)
    status = {"v": 1, "seq": 1, "ts": now, "battery": 90, "rssi": -50, "firmware": "t"}
    eye.publish("carehub/btn-1/status", json.dumps(status), qos=1).wait_for_publish(5)
    press = {"v": 1, "seq": 2, "ts": now, "action": "press"}
    eye.publish("carehub/btn-1/button", json.dumps(press), qos=1).wait_for_publish(5)
    out, err = selftest.communicate(timeout=30)
    eye.loop_stop()
    eye.disconnect()
    assert selftest.returncode == 1, out + err
    assert "SELF-TEST FAILED" in out, out
    assert (
        "test alarm taken by the server: no ack from the hub for the press:"
        " is `carehub hub` running?"
    ) in out, out
