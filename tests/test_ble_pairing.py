"""Bluetooth health devices pair in `carehub hub pair`'s window (docs/devices.md,
Bluetooth): a device advertising one of the four standard health services during the
window is shown to the installer, bonded (LE pairing over bumble's virtual link: real HCI,
L2CAP and SMP between two emulated controllers) and recorded with its own broker account
on a real mosquitto running the generated configuration; the bridge then publishes its
readings under that account. A device without a health service is never asked about, one
the installer declines is neither bonded nor recorded, and outside the window nothing is
scanned."""

from __future__ import annotations

import asyncio
import getpass
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from carehub.mqtt_contract import PairAnnounce, Topics, VitalsReading, parse_payload
from carehub.settings import HubSettings
from gateway.ble.bridge import BleDevice, MqttPublisher
from gateway.ble.pairing import (
    BLOOD_PRESSURE_SERVICE,
    HEART_RATE_SERVICE,
    decide,
    device_id_for,
    question,
)
from gateway.ble.transport import Advertisement
from gateway.broker_auth import Listener
from gateway.broker_files import load_accounts, write_all
from gateway.device_link import hub_credentials
from gateway.pairing import BrokerAccounts
from gateway.pairing_session import PairingSession, remove_device
from harness.broker import free_port, mosquitto_binary, wait_for_port

emulated = pytest.importorskip("tests.ble_emulated")

OXI = "C0:FF:EE:00:00:01"  # advertises heart rate, pulse oximeter, thermometer
DECLINED = "C0:FF:EE:00:00:02"  # a health device the installer says no to
PHONE = "C0:FF:EE:00:00:03"  # advertises no health service
HUB = "C0:FF:EE:00:00:AA"


# ------------------------------------------------------------------- the pure decisions


def advert(services: set[int], address: str = OXI) -> Advertisement:
    return Advertisement(address, "Oxi", frozenset(services))


def test_only_health_devices_during_the_window_are_asked_about_once() -> None:
    handled: set[str] = set()
    assert decide(advert({HEART_RATE_SERVICE}), handled, True, False).verdict == "ask"
    assert decide(advert({BLOOD_PRESSURE_SERVICE}), handled, True, True).verdict == "accept"
    assert decide(advert({HEART_RATE_SERVICE}), handled, False, True).verdict == "ignore"
    assert decide(advert({0x180F, 0xFE95}), handled, True, True).verdict == "ignore"  # battery
    assert decide(advert(set()), handled, True, True).verdict == "ignore"
    handled.add(OXI)
    lower = advert({HEART_RATE_SERVICE}, OXI.lower())
    assert decide(lower, handled, True, True).verdict == "ignore"  # asked once


def test_a_bluetooth_device_id_is_a_valid_device_id() -> None:
    assert device_id_for("c0:ff:ee:00:00:01") == "ble-c0ffee000001"
    text = question(advert({HEART_RATE_SERVICE, 0x1822}))
    assert (
        text == "pair Bluetooth 'Oxi' C0:FF:EE:00:00:01 (heart rate, pulse oximeter) as a wearable?"
    )


def test_accounts_with_a_bluetooth_device_survive_their_file(tmp_path: Path) -> None:
    from gateway.pairing import BluetoothLink, PairedDevice

    device = PairedDevice("ble-c0ffee000001", "wearable", OXI, "$7$x", 1)
    accounts = BrokerAccounts.new().with_bluetooth(
        BluetoothLink(OXI, "ble-c0ffee000001", "pw"), device
    )
    again = BrokerAccounts.from_json(accounts.to_json())
    assert again == accounts and again.device("ble-c0ffee000001") == device
    gone = again.without_device("ble-c0ffee000001")
    assert gone.devices == () and gone.bluetooth == ()


# ------------------------------------------- the window, with emulated devices


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


async def never(announce: PairAnnounce) -> bool:
    return False


@pytest.mark.integration
async def test_a_health_device_advertising_in_the_window_is_confirmed_bonded_and_recorded(
    secured: HubSettings,
) -> None:
    link = emulated.LocalLink()
    oxi = emulated.EmulatedWearable(link, OXI)
    declined = emulated.EmulatedWearable(link, DECLINED, name="Thermo")
    phone = emulated.EmulatedWearable(link, PHONE, name="Phone")
    phone.device.advertising_data = emulated.advertising_data("Phone", [])
    for device in (oxi, declined, phone):
        await device.start()
    radio = emulated.BumbleRadio(link, HUB)
    said: list[str] = []
    asked: list[str] = []

    async def installer(text: str) -> bool:
        asked.append(text)
        return OXI in text

    session = PairingSession(
        secured, never, say=said.append, pickup_grace_s=0.2, ask=installer, bluetooth=radio
    )
    result = await session.pair(3.0, accept_all=False)

    assert sorted(asked) == sorted(
        [
            f"pair Bluetooth 'CareHub Oxi' {OXI} (thermometer, heart rate, pulse oximeter)"
            " as a wearable?",
            f"pair Bluetooth 'Thermo' {DECLINED} (thermometer, heart rate, pulse oximeter)"
            " as a wearable?",
        ]
    ), said
    oxi_id = device_id_for(OXI)
    assert result.accepted == [oxi_id] and result.refused == [DECLINED], said
    assert radio.bonded == [OXI]  # the declined device was not bonded
    assert not radio.device.is_scanning  # outside the window nothing is heard
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None
    [bonded] = accounts.bluetooth
    assert (bonded.address, bonded.device_id) == (OXI, oxi_id)
    paired = accounts.device(oxi_id)
    assert paired is not None and (paired.kind, paired.hardware_id) == ("wearable", OXI)
    assert oxi_id in (secured.hub_broker_dir / "passwd").read_text()
    text = "\n".join(said)
    assert f"paired Bluetooth {OXI}" in text and f"refused Bluetooth device {DECLINED}" in text

    # the bridge publishes the device's readings under the account pairing gave it
    topics = Topics(secured.base_topic)
    username, password = hub_credentials(secured)
    publisher = MqttPublisher(
        "127.0.0.1",
        secured.mqtt_port,
        secured.base_topic,
        [BleDevice(OXI, oxi_id, oxi_id, bonded.password)],
    )
    async with aiomqtt.Client(
        "127.0.0.1", secured.mqtt_port, username=username, password=password
    ) as hub:
        await hub.subscribe(f"{topics.base}/+/vitals", qos=1)
        try:
            await publisher.publish(oxi_id, VitalsReading(v=1, seq=1, ts=1, spo2=97.0))
            async with asyncio.timeout(10):
                message = await anext(aiter(hub.messages))
        finally:
            await publisher.close()
    assert str(message.topic) == f"{topics.base}/{oxi_id}/vitals"
    reading = parse_payload(topics.parse(str(message.topic)).channel, bytes(message.payload))  # type: ignore[arg-type]
    assert reading == VitalsReading(v=1, seq=1, ts=1, spo2=97.0)

    # `hub remove` forgets it: its link, its broker account
    done = await remove_device(secured, oxi_id)
    assert f"account of {oxi_id} removed from passwd and acl" in done
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None and accounts.bluetooth == () and accounts.devices == ()
    assert oxi_id not in (secured.hub_broker_dir / "passwd").read_text()


# ------------------------------------------- a paired Bluetooth device on the hub


async def test_a_bluetooth_device_is_offline_by_its_bridge_or_a_day_of_silence(
    tmp_path: Path,
) -> None:
    """A blood-pressure monitor measures once or twice a day: the hub's 3-minute silence
    rule would call it offline all day. Its bridge's will says when it is gone; silence
    counts only after `ble.pairing.SILENCE_MS`, for a device paired before the hub started
    and for one paired while it runs."""
    from gateway.ble.pairing import SILENCE_MS
    from gateway.broker_files import write_security
    from gateway.pairing import BluetoothLink, PairedDevice
    from tests.test_hub_pairing import event
    from tests.test_hub_shell import FakeUplink, make_hub

    first, later = device_id_for(OXI), device_id_for(DECLINED)
    accounts = BrokerAccounts.new().with_bluetooth(
        BluetoothLink(OXI, first, "pw"), PairedDevice(first, "wearable", OXI, "$7$", 0)
    )
    write_security(tmp_path / "broker", accounts, "carehub")
    hub, _ = make_hub(tmp_path, FakeUplink(), hub_broker_dir=tmp_path / "broker")
    async with hub.opened():
        await hub.refresh_config()  # btn-1, btn-2, pend-1, and the Bluetooth device
        await hub.handle_message(*event("device_accepted", later, "wearable"))
        supervisor = hub.core.supervisor
        start = hub.clock.now_ms()
        for device_id in ("btn-1", first, later):
            supervisor.seen(device_id, start)
        offline = {c.device_id for c in supervisor.tick(start + 10 * 60_000) if c.active}
        assert "btn-1" in offline and first not in offline and later not in offline
        offline = {c.device_id for c in supervisor.tick(start + SILENCE_MS + 1) if c.active}
        assert {first, later} <= offline


def test_the_selftest_takes_a_measurement_from_a_bluetooth_device() -> None:
    """No heartbeat, battery or signal comes through the bridge: a Bluetooth device passes
    once a measurement of it arrives (any field: a cuff gives no pulse quality)."""
    from gateway.selftest import SelftestCore

    cuff = device_id_for(OXI)
    core = SelftestCore({cuff: "wearable", "btn-1": "button"}, 20, 0, bluetooth=frozenset({cuff}))
    mine = sorted(c.name for c in core.checks if c.device_id == cuff)
    assert mine == ["measurement taken"]
    core.seen(cuff, VitalsReading(v=1, seq=1, ts=1, sbp=120.0))
    assert [c.passed for c in core.checks if c.device_id == cuff] == [True]
    assert not any(c.device_id == cuff for c in core.checks if not c.passed)
