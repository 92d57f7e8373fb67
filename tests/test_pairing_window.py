"""What a pairing window leaves behind, against a real mosquitto running the generated
configuration: the pairing account can do nothing outside a window, an announcement the
broker kept from before a window pairs nobody, a window leaves nothing retained under
``<base>/pair/`` and no session that could collect a credential later."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from carehub.mqtt_contract import PairAnnounce, PairCredential, parse_model
from carehub.pairing_seal import new_private_key, public_b64, unseal
from carehub.settings import HubSettings
from gateway.broker_files import load_accounts
from gateway.pairing_session import PairingSession, remove_device
from tests.test_pairing_session import announce_body, pair_client, secured  # noqa: F401

pytestmark = pytest.mark.integration


def hub_account(s: HubSettings) -> tuple[str, str]:
    accounts = load_accounts(s.hub_broker_dir)
    assert accounts is not None
    return accounts.hub_username, accounts.hub_password


def retained_under(s: HubSettings, topic_filter: str) -> dict[str, bytes]:
    """Every retained message the broker holds under `topic_filter`: they come right after
    the subscription, and before the retained marker subscribed next."""
    marker = "carehub/test/marker"
    found: dict[str, bytes] = {}
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retained-reader")
    c.username_pw_set(*hub_account(s))

    def on_message(client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        if m.topic == marker:
            done.set()
        elif m.retain:
            found[m.topic] = bytes(m.payload)

    c.on_message = on_message
    c.connect("127.0.0.1", s.mqtt_port)
    c.loop_start()
    try:
        c.publish(marker, b"x", qos=1, retain=True).wait_for_publish(5)
        c.subscribe(topic_filter, qos=1)
        c.subscribe(marker, qos=1)
        assert done.wait(5)
    finally:
        c.disconnect()
        c.loop_stop()
    return found


def queued_for(s: HubSettings, client_id: str) -> tuple[bool, list[bytes]]:
    """Reconnect `client_id` (pairing account, persistent session): was its session still
    there, and what had the broker queued in it? Queued messages are sent right after the
    CONNACK, so all of them arrive before the SUBACK of a subscription made then."""
    got: list[bytes] = []
    present: list[bool] = []
    subacked = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.username_pw_set("_pair", "carehub-pairing")
    c.on_message = lambda client, userdata, m: got.append(bytes(m.payload))

    def on_connect(client: mqtt.Client, userdata: object, flags, rc, props) -> None:  # type: ignore[no-untyped-def]
        present.append(bool(flags.session_present))
        client.subscribe("carehub/test/nothing", qos=1)

    c.on_connect = on_connect
    c.on_subscribe = lambda *a: subacked.set()
    c.connect("127.0.0.1", s.mqtt_port)
    c.loop_start()
    try:
        assert subacked.wait(5)
    finally:
        c.disconnect()
        c.loop_stop()
    return present[0], [p for p in got if p]


async def yes(announce: PairAnnounce) -> bool:
    return True


async def test_outside_a_window_the_pairing_account_can_leave_nothing_for_later(
    secured: HubSettings,  # noqa: F811
) -> None:
    """The attack: a retained announcement and a persistent session subscribed to the
    credential topic, both made while no window is open; a later ``pair --accept-all``
    must not pair that device, and the session must collect nothing."""
    key = new_private_key()
    rogue = pair_client(secured.mqtt_port, "btn-evil", clean=False)
    rogue.subscribe("carehub/pair/btn-evil/credential", qos=1)
    body = announce_body("btn-evil", public_b64(key))
    rogue.publish("carehub/pair/btn-evil/announce", body, qos=1, retain=True).wait_for_publish(5)
    rogue.disconnect()
    rogue.loop_stop()
    assert retained_under(secured, "carehub/pair/#") == {}  # refused by the broker

    session = PairingSession(secured, yes, say=lambda _: None, pickup_grace_s=0.2)
    result = await session.pair(1.0, accept_all=True)
    assert result.accepted == []
    _, queued = queued_for(secured, "btn-evil")
    assert [unseal(key, parse_model(PairCredential, p)) for p in queued] == []


async def test_a_window_leaves_no_retained_announcement_and_no_session(
    secured: HubSettings,  # noqa: F811
) -> None:
    """During a window, a device announces retained (under its hardware id, and a client
    whose id has a ``/``), and one with a persistent session leaves before its credential
    comes: after the close nothing is retained under ``pair/`` and that session is gone,
    with the credential that was queued in it."""
    key = new_private_key()
    left = threading.Event()
    is_open = threading.Event()

    async def installer(announce: PairAnnounce) -> bool:
        await asyncio.to_thread(left.wait, 5)  # answered once the device has gone
        return announce.hardware_id == "btn-away"

    def devices() -> None:
        assert is_open.wait(5)
        slashed = pair_client(secured.mqtt_port, "x/y")
        slashed.publish("carehub/pair/x/y/announce", b"junk", qos=1, retain=True).wait_for_publish(
            5
        )
        slashed.disconnect()
        slashed.loop_stop()
        away = pair_client(secured.mqtt_port, "btn-away", clean=False)
        away.subscribe("carehub/pair/btn-away/credential", qos=1)
        body = announce_body("btn-away", public_b64(key))
        away.publish("carehub/pair/btn-away/announce", body, qos=1, retain=True).wait_for_publish(5)
        away.disconnect()
        away.loop_stop()
        left.set()

    session = PairingSession(secured, installer, say=lambda _: is_open.set(), pickup_grace_s=0.2)
    worker = threading.Thread(target=devices)
    worker.start()
    result = await session.pair(2.0, accept_all=False)
    await asyncio.to_thread(worker.join, 10)
    assert result.accepted == ["btn-away"]  # the credential went into its offline session
    assert retained_under(secured, "carehub/pair/#") == {}
    present, queued = queued_for(secured, "btn-away")
    assert (present, queued) == (False, [])


async def test_a_removed_device_is_not_paired_again_by_its_old_announcement(
    secured: HubSettings,  # noqa: F811
) -> None:
    is_open = threading.Event()

    def device() -> None:
        assert is_open.wait(5)
        c = pair_client(secured.mqtt_port, "btn-old")
        c.publish(
            "carehub/pair/btn-old/announce", announce_body("btn-old"), qos=1, retain=True
        ).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()

    worker = threading.Thread(target=device)
    worker.start()
    first = PairingSession(secured, yes, say=lambda _: is_open.set(), pickup_grace_s=0.2)
    assert (await first.pair(2.0, accept_all=True)).accepted == ["btn-old"]
    await asyncio.to_thread(worker.join, 10)
    await remove_device(secured, "btn-old")

    again = PairingSession(secured, yes, say=lambda _: None, pickup_grace_s=0.2)
    assert (await again.pair(1.0, accept_all=True)).accepted == []
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None and accounts.devices == ()


def test_the_acl_lets_the_pairing_account_in_only_during_a_window(tmp_path: Path) -> None:
    from gateway.broker_auth import acl_file

    closed = acl_file("carehub", "_hub")
    opened = acl_file("carehub", "_hub", pairing_open=True)
    assert "carehub/pair/" not in closed
    assert opened.splitlines() != closed.splitlines()
    assert "pattern write carehub/pair/%c/announce" in opened.splitlines()
    assert "pattern read carehub/pair/%c/credential" in opened.splitlines()
