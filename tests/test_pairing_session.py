"""The pairing window against a real mosquitto running the generated configuration: the
bridge topics an observer sees, an installer who declines, a second device announcing under
the same hardware id, and a device re-paired getting a new password."""

from __future__ import annotations

import asyncio
import getpass
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from carehub.mqtt_contract import PairAnnounce
from carehub.pairing_seal import new_private_key, public_b64
from carehub.settings import HubSettings
from firmware_sim.pairing import PairingTimeout, pair_device
from gateway.broker_auth import Listener, verify_password
from gateway.broker_files import load_accounts, write_all
from gateway.pairing import BrokerAccounts
from gateway.pairing_session import PairingError, PairingSession
from harness.broker import free_port, mosquitto_binary, wait_for_port

pytestmark = pytest.mark.integration


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[HubSettings]:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed")
    port = free_port()
    d = tmp_path / "broker"
    write_all(d, BrokerAccounts.new(), "carehub", Listener(port, "127.0.0.1"), getpass.getuser())
    broker = subprocess.Popen(
        [mosquitto_binary(), "-c", str(d / "carehub.conf")],  # type: ignore[list-item]
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield HubSettings(hub_broker_dir=d, mqtt_port=port, hub_db=tmp_path / "hub.db")
    finally:
        broker.terminate()
        broker.wait(5)


def watch_bridge(s: HubSettings) -> tuple[mqtt.Client, list[tuple[str, dict | str]]]:
    accounts = load_accounts(s.hub_broker_dir)
    assert accounts is not None
    seen: list[tuple[str, dict | str]] = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
    c.username_pw_set(accounts.hub_username, accounts.hub_password)
    c.on_connect = lambda c, *a: c.subscribe("carehub/bridge/#", qos=1)
    c.on_subscribe = lambda *a: ready.set()

    def on_message(client: object, userdata: object, m: mqtt.MQTTMessage) -> None:
        body = m.payload.decode()
        seen.append((m.topic, json.loads(body) if body.startswith("{") else body))

    c.on_message = on_message
    c.connect("127.0.0.1", s.mqtt_port)
    c.loop_start()
    assert ready.wait(5)
    return c, seen


async def test_a_declined_device_gets_nothing_and_the_bridge_tells_it_all(
    secured: HubSettings,
) -> None:
    watcher, seen = watch_bridge(secured)
    asked: list[str] = []

    async def installer(announce: PairAnnounce) -> bool:
        asked.append(announce.hardware_id)
        return announce.hardware_id == "wear-5"

    session = PairingSession(secured, installer, say=lambda _: None, pickup_grace_s=0.2)
    results: dict[str, object] = {}

    def device(hardware_id: str, kind: str) -> None:
        try:
            results[hardware_id] = pair_device(
                hardware_id,
                kind,
                "127.0.0.1",
                secured.mqtt_port,
                timeout_s=6.0,  # type: ignore[arg-type]
            )
        except PairingTimeout as e:
            results[hardware_id] = e

    threads = [
        threading.Thread(target=device, args=a)
        for a in (("wear-5", "wearable"), ("btn-5", "button"))
    ]
    for t in threads:
        t.start()
    # a window long enough for both to announce on a loaded machine (both test workers busy)
    result = await session.pair(4.0, accept_all=False)
    await asyncio.to_thread(lambda: [t.join(10) for t in threads])
    watcher.loop_stop()
    watcher.disconnect()

    assert sorted(asked) == ["btn-5", "wear-5"]
    assert result.accepted == ["wear-5"] and result.refused == ["btn-5"]
    assert isinstance(results["btn-5"], PairingTimeout)
    cred = results["wear-5"]
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None and [d.device_id for d in accounts.devices] == ["wear-5"]
    assert verify_password(cred.password, accounts.devices[0].password_hash)  # type: ignore[attr-defined]
    events = [body["event"] for topic, body in seen if topic.endswith("/event")]  # type: ignore[index]
    assert events[0] == "pairing_opened" and events[-1] == "pairing_closed"
    assert {"device_announced", "device_accepted", "device_refused"} <= set(events)
    windows = [body for topic, body in seen if topic.endswith("/pairing")]
    assert windows[0]["open"] is True and windows[-1] == {"v": 1, "open": False}  # type: ignore[index]
    assert ("carehub/bridge/state", "online") not in seen  # the hub itself is not running here


async def test_a_second_key_under_the_same_hardware_id_is_refused(secured: HubSettings) -> None:
    rogue_key = public_b64(new_private_key())

    async def installer(announce: PairAnnounce) -> bool:
        return True

    is_open = threading.Event()
    session = PairingSession(secured, installer, say=lambda _: is_open.set(), pickup_grace_s=0.2)

    def rogue_then_real() -> None:
        assert is_open.wait(5)  # the hub listens: the rogue is first
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="btn-6")
        c.username_pw_set("_pair", "carehub-pairing")
        c.connect("127.0.0.1", secured.mqtt_port)
        c.loop_start()
        body = {"v": 1, "hardware_id": "btn-6", "kind": "button", "public_key": rogue_key}
        c.publish("carehub/pair/btn-6/announce", json.dumps(body), qos=1).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()
        with pytest.raises(PairingTimeout):  # the real one is now refused too: installer sees it
            pair_device("btn-6", "button", "127.0.0.1", secured.mqtt_port, timeout_s=3.0)

    worker = threading.Thread(target=rogue_then_real)
    worker.start()
    result = await session.pair(3.0, accept_all=False)
    await asyncio.to_thread(worker.join, 8)
    assert result.accepted == ["btn-6"]  # the first key, confirmed by the installer
    assert "btn-6" in result.refused  # the second key


async def test_a_broker_that_cannot_reload_pairs_nothing(
    secured: HubSettings, tmp_path: Path
) -> None:
    async def installer(announce: PairAnnounce) -> bool:
        return True

    never = secured.model_copy(update={"hub_broker_reload_command": "false"})
    with pytest.raises(PairingError, match="cannot open the pairing window"):
        await PairingSession(never, installer, say=lambda _: None).pair(1.0, accept_all=True)
    assert "carehub/pair/" not in (secured.hub_broker_dir / "acl").read_text()

    # the window opens (one reload), then the device's account cannot be loaded
    flag, pid = tmp_path / "reloaded", secured.hub_broker_dir / "mosquitto.pid"
    once = f"sh -c 'test ! -e {flag} && touch {flag} && kill -HUP $(cat {pid})'"
    settings = secured.model_copy(update={"hub_broker_reload_command": once})
    is_open = threading.Event()
    session = PairingSession(settings, installer, say=lambda _: is_open.set(), pickup_grace_s=0.2)

    def device() -> None:
        assert is_open.wait(5)
        with pytest.raises(PairingTimeout):
            pair_device("btn-7", "button", "127.0.0.1", secured.mqtt_port, timeout_s=3.0)

    worker = threading.Thread(target=device)
    worker.start()
    result = await session.pair(3.0, accept_all=True)
    await asyncio.to_thread(worker.join, 8)
    assert result.accepted == [] and result.refused == ["btn-7"]
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None and accounts.devices == ()
    assert "btn-7" not in (secured.hub_broker_dir / "passwd").read_text()


def pair_client(
    port: int, client_id: str, clean: bool = True, password: str = "carehub-pairing"
) -> mqtt.Client:
    """A client of the shared pairing account, connected (its loop running)."""
    connected = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.username_pw_set("_pair", password)
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(5)
    return c


def announce_body(hardware_id: str, key: str | None = None) -> bytes:
    key = key or public_b64(new_private_key())
    return json.dumps(
        {"v": 1, "hardware_id": hardware_id, "kind": "button", "public_key": key}
    ).encode()


async def test_an_id_with_a_colon_is_refused_and_the_window_goes_on(secured: HubSettings) -> None:
    """``btn:1`` matched the contract but not the password file: pairing it crashed the
    window and left an accounts file that crashed every later `broker-config`."""
    is_open = threading.Event()
    session = PairingSession(
        secured, lambda a: asyncio.sleep(0, True), say=lambda _: is_open.set(), pickup_grace_s=0.2
    )

    def devices() -> None:
        assert is_open.wait(5)
        colon = pair_client(secured.mqtt_port, "btn:1")
        colon.publish(
            "carehub/pair/btn:1/announce", announce_body("btn:1"), qos=1
        ).wait_for_publish(5)
        colon.disconnect()
        colon.loop_stop()
        pair_device("btn-2", "button", "127.0.0.1", secured.mqtt_port, timeout_s=5.0)

    worker = threading.Thread(target=devices)
    worker.start()
    result = await session.pair(3.0, accept_all=True)
    await asyncio.to_thread(worker.join, 10)
    assert result.accepted == ["btn-2"]
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None and [d.device_id for d in accounts.devices] == ["btn-2"]
    assert "btn:1" not in (secured.hub_broker_dir / "accounts.json").read_text()
