"""Issue 12, acceptance 1: a home installed from the box. The hub's broker runs with the
generated password and ACL files; three simulated devices pair through a pairing window;
the self-test runs non-interactively; then a device cannot publish as another, cannot read
another's acks, an anonymous client is refused, and a removed device is dropped at once
and can no longer connect. The self-test sends one SMS: the pendant's drop is kept on the
hub, not raised as a second alarm.

Enrollment: until the enroll branch is merged the hub gets its token from the directory
file (hub-1 in tests/conftest.py) and the server does not implement device registration
or self-test reports; the assertions on those run only when the server's OpenAPI has the
paths (otherwise the test ends as xfail after every hub-side assertion passed)."""

from __future__ import annotations

import getpass
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from carehub.mqtt_contract import DeviceType
from cli.main import app
from firmware_sim.button import CallButton
from firmware_sim.pairing import DeviceCredential, pair_device
from firmware_sim.pendant import FallPendant, synthetic_fall
from firmware_sim.wearable import Wearable
from gateway.broker_files import load_accounts
from harness.broker import free_port, mosquitto_binary, wait_for_port
from harness.processes import Child, wait_http_ok, wait_until
from harness.sms_sandbox import SmsSandbox
from tests.conftest import DIRECTORY

pytestmark = pytest.mark.integration

KINDS: dict[str, DeviceType] = {"btn-1": "button", "pend-1": "pendant", "wear-1": "wearable"}


def carehub(args: list[str], env: dict[str, str]) -> str:
    """Run one short `carehub` command in this process (saves a start-up per command);
    its exit code and output."""
    result = CliRunner().invoke(app, args, env=env)
    return f"exit {result.exit_code}\n{result.output}"


class Probe:
    """A bare MQTT client with some account: what it may connect to, publish, read."""

    def __init__(self, port: int, client_id: str, user: str | None, password: str | None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.received: list[tuple[str, bytes]] = []
        self.result: list[object] = []
        self.ready = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: object, userdata: object, flags: object, rc: object, p: object):  # type: ignore[no-untyped-def]
        self.result.append(rc)
        self.ready.set()

    def accepted(self, timeout_s: float = 5) -> bool:
        assert self.ready.wait(timeout_s), "no CONNACK"
        return not self.result[0].is_failure  # type: ignore[attr-defined]

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict]:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
    token, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    # the care directory knows the team, its doctors and the elder; the hub and its devices
    # come from enrollment and pairing
    people = DIRECTORY.format(token=token).split("[[hubs]]", 1)[0]
    (tmp_path / "directory.toml").write_text(people)
    broker_port, server_port = free_port(), free_port()
    base = f"http://127.0.0.1:{server_port}"
    env = {
        "CAREHUB_HUB_BROKER_DIR": str(tmp_path / "broker"),
        "CAREHUB_HUB_BROKER_PORT": str(broker_port),
        "CAREHUB_HUB_BROKER_HOST": "127.0.0.1",
        "CAREHUB_HUB_BROKER_RUN_AS": getpass.getuser(),
        "CAREHUB_MQTT_PORT": str(broker_port),
        "CAREHUB_SERVER_URL": base,
        "CAREHUB_HUB_CREDENTIAL_FILE": str(tmp_path / "hub" / "credential.json"),
        "CAREHUB_HUB_DB": str(tmp_path / "hub.db"),
        "CAREHUB_RETRY_MAX_S": "1",
        "CAREHUB_HEARTBEAT_INTERVAL_S": "1",
    }
    full_env = {**os.environ, **env}
    out = carehub(["hub", "broker-config"], full_env)
    assert out.startswith("exit 0"), out
    conf = tmp_path / "broker" / "carehub.conf"
    broker = subprocess.Popen(
        [mosquitto_binary(), "-c", str(conf)],  # type: ignore[list-item]
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "mosquitto.log").open("wb"),
    )
    sms = SmsSandbox().__enter__()
    server = Child(
        "server",
        ["server", "--directory", str(tmp_path / "directory.toml")],
        {
            "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
            "CAREHUB_PORT": str(server_port),
            "CAREHUB_ADMIN_TOKEN": admin,
            "CAREHUB_NOTIFIER": "twilio",
            "CAREHUB_TWILIO_API_BASE": sms.url,
            "CAREHUB_TWILIO_ACCOUNT_SID": "AC" + "0" * 31 + "1",
            "CAREHUB_TWILIO_AUTH_TOKEN": "test-secret",
            "CAREHUB_TWILIO_FROM": "+15550000000",
            "CAREHUB_SECRET_KEY": secrets.token_urlsafe(24),
            "CAREHUB_PUBLIC_BASE_URL": base,
        },
        tmp_path / "server.log",
    ).start()
    hub = Child("hub", ["hub", "--log-level", "DEBUG"], env, tmp_path / "hub.log")
    try:
        wait_for_port(broker_port)
        wait_http_ok(f"{base}/healthz", 60, server)
        # the installer: a household for the elder, a one-time code, the hub enrolled with it
        installer = {**full_env, "CAREHUB_PUBLIC_BASE_URL": base, "CAREHUB_ADMIN_TOKEN": admin}
        for step in (
            ["household-create", "--household", "home-1", "--address", "Bldg 3-501"],
            ["assign-elder", "--household", "home-1", "--elder", "elder-1"],
            ["assign-team", "--household", "home-1", "--team", "team-a"],
        ):
            assert carehub(["admin", *step], installer).startswith("exit 0")
        made = carehub(["admin", "enroll-code", "--household", "home-1"], installer)
        assert made.startswith("exit 0"), made
        code = made.splitlines()[1]
        enrolled = carehub(["hub", "enroll", "--server", base, "--code", code], full_env)
        assert enrolled.startswith("exit 0"), enrolled
        hub.start()
        yield {
            "env": full_env,
            "port": broker_port,
            "dir": tmp_path / "broker",
            "hub": hub,
            "server": server,
            "sms": sms,
            "admin": httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=10
            ),
            "base": base,
        }
    finally:
        hub.stop()
        server.stop()
        sms.__exit__(None, None, None)
        broker.terminate()
        broker.wait(5)


def test_install_pair_selftest_and_isolation(home: dict, tmp_path: Path) -> None:
    port, env, hub = home["port"], home["env"], home["hub"]
    t0 = time.monotonic()

    # --- pairing (the hub running): a window, three devices announce, all accepted
    wait_until(lambda: "connected to broker" in hub.log_tail(200), 10, "hub on the broker", [hub])
    pairing = subprocess.Popen(
        [sys.executable, "-m", "cli", "hub", "pair", "--seconds", "5", "--accept-all"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    creds: dict[str, DeviceCredential] = {}
    devices: dict[str, CallButton | FallPendant | Wearable] = {}

    def pair_one(device_id: str) -> None:
        """As firmware does: pair, keep the credential, log in with it at once."""
        creds[device_id] = cred = pair_device(
            device_id,
            KINDS[device_id],
            "127.0.0.1",
            port,
            timeout_s=15,
            store=tmp_path / f"{device_id}.cred",
        )
        where = (device_id, "127.0.0.1", port)
        if KINDS[device_id] == "button":
            devices[device_id] = CallButton(*where, credential=cred).start()
        elif KINDS[device_id] == "pendant":
            devices[device_id] = FallPendant(
                *where, credential=cred, status_every_s=1.0, time_scale=4.0
            ).start()
        else:
            devices[device_id] = Wearable(*where, credential=cred, status_every_s=1.0).start()

    threads = [threading.Thread(target=pair_one, args=(d,)) for d in KINDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    pair_out = pairing.communicate(timeout=20)[0]
    print(f"paired after {time.monotonic() - t0:.1f} s")
    assert pairing.returncode == 0, pair_out
    assert set(creds) == set(KINDS), pair_out
    assert all((tmp_path / f"{d}.cred").stat().st_mode & 0o777 == 0o600 for d in KINDS)
    accounts = load_accounts(home["dir"])
    assert accounts is not None and {d.device_id for d in accounts.devices} == set(KINDS)
    assert "paired: btn-1, pend-1, wear-1" in pair_out, pair_out
    assert (home["dir"] / "passwd").stat().st_mode & 0o777 == 0o600
    listed = carehub(["hub", "devices"], env)
    assert all(d in listed for d in KINDS), listed
    for device_id in KINDS:  # the running hub learns them from the bridge event
        wait_until(
            lambda d=device_id: f"device {d} (" in hub.log_path.read_text(),  # type: ignore[misc]
            10,
            f"the hub learnt {device_id}",
            [hub],
        )

    button, pendant, wearable = devices["btn-1"], devices["pend-1"], devices["wear-1"]
    assert isinstance(button, CallButton) and isinstance(pendant, FallPendant)
    try:
        for dev in (button, pendant, wearable):
            assert dev.connected.wait(5), f"{dev.device_id} could not log in"

        # --- the self-test, non-interactive; the sims are driven once it has started
        selftest = subprocess.Popen(
            [sys.executable, "-m", "cli", "hub", "selftest", "--yes", "--timeout", "15"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert selftest.stdout is not None
        lines = []
        for line in selftest.stdout:
            lines.append(line)
            if line.startswith("self-test started"):
                break
        button.send_status(battery=95.0)
        press_seq = button.press()
        pendant.replay(synthetic_fall(pendant.hz, np.random.default_rng(1), 1.0, 1.0))
        rest, _ = selftest.communicate(timeout=30)
        st_out = "".join(lines) + rest
        print(f"self-test done after {time.monotonic() - t0:.1f} s")
        print(st_out)
        assert selftest.returncode == 0, st_out
        assert "SELF-TEST PASSED" in st_out and "[FAIL]" not in st_out, st_out
        taken = button.acks.wait_for(
            lambda a: a.seq == press_seq and a.state.value == "dispatched", 5
        )
        assert taken is not None, button.acks.entries
        assert f"alarm {taken[1].alarm_id} dispatched" in st_out, st_out

        # --- the pendant's drop is the self-test's: no second alarm after its cancel window
        wait_until(
            lambda: "is the self-test's drop" in hub.log_path.read_text(), 15, "the drop", [hub]
        )
        assert "cancel window" not in hub.log_path.read_text()  # no fall waits to be raised
        assert [m.body[:5] for m in home["sms"].messages] == ["[TEST"], home["sms"].messages

        # --- a device cannot publish as another: the hub never sees it
        hub_eye = Probe(port, "probe-hub", accounts.hub_username, accounts.hub_password)
        assert hub_eye.accepted()
        hub_eye.subscribe("carehub/+/button")
        forger = Probe(port, "probe-forger", "pend-1", creds["pend-1"].password)
        assert forger.accepted()
        forged = b'{"v": 1, "seq": 424242, "ts": %d, "action": "press"}' % (time.time() * 1000)
        forger.client.publish("carehub/btn-1/button", forged, qos=1).wait_for_publish(5)
        forger.client.publish("carehub/pend-1/button", b"marker", qos=1).wait_for_publish(5)
        wait_until(lambda: ("carehub/pend-1/button", b"marker") in hub_eye.received, 5, "marker")
        assert all(payload != forged for _, payload in hub_eye.received), hub_eye.received
        assert "424242" not in hub.log_path.read_text()

        # --- ... nor read another device's acks (its own it does)
        forger.subscribe("carehub/btn-1/ack")
        forger.subscribe("carehub/pend-1/ack")
        hub_eye.client.publish("carehub/btn-1/ack", b"for-btn-1", qos=1).wait_for_publish(5)
        hub_eye.client.publish("carehub/pend-1/ack", b"for-pend-1", qos=1).wait_for_publish(5)
        wait_until(lambda: ("carehub/pend-1/ack", b"for-pend-1") in forger.received, 5, "own ack")
        assert all(t != "carehub/btn-1/ack" for t, _ in forger.received), forger.received
        forger.close()

        # --- an anonymous client, and a wrong password, are refused
        anonymous = Probe(port, "probe-anon", None, None)
        assert not anonymous.accepted()
        anonymous.close()
        wrong = Probe(port, "probe-wrong", "btn-1", "not-its-password")
        assert not wrong.accepted()
        wrong.close()

        # --- removal: revoked at once, the connected device is dropped, cannot come back
        out = carehub(["hub", "remove", "btn-1"], env)
        assert "account of btn-1 removed" in out and "SIGHUP" in out, out
        wait_until(lambda: not button.connected.is_set(), 5, "btn-1 dropped by the broker")
        again = Probe(port, "dev-btn-1", "btn-1", creds["btn-1"].password)
        assert not again.accepted()
        again.close()
        assert "btn-1" not in carehub(["hub", "devices"], env)
        wait_until(lambda: "device btn-1 removed" in hub.log_tail(200), 5, "hub told", [hub])
        hub_eye.close()
    finally:
        for dev in devices.values():
            dev.stop(graceful=False)
    elapsed = time.monotonic() - t0
    print(f"all done after {elapsed:.1f} s")

    # --- the server side of pairing and self-test
    assert "recorded on the server" in st_out, st_out
    assert "not registered" not in pair_out, pair_out
    assert "removed on the server" in out, out
