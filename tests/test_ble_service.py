"""`carehub hub ble` as a hub runs it (docs/devices.md, Bluetooth): the bridge service on a
real mosquitto running the generated configuration, with device accounts enforced. With no
Bluetooth device paired it waits; once a pairing window records one and the hub's bridge
event says so, it follows that device (an emulated peripheral on bumble's virtual link)
and its readings arrive under the device's own account."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest

from carehub.mqtt_contract import (
    BridgeEvent,
    BridgeTopic,
    Topics,
    VitalsReading,
    encode,
    parse_payload,
)
from carehub.settings import HubSettings
from gateway.ble.pairing import device_id_for
from gateway.ble.service import changes_bluetooth, paired_devices, run_ble_service
from gateway.ble.transport import GattSource
from gateway.broker_auth import hash_password
from gateway.broker_files import load_accounts, reload_broker, write_security
from gateway.device_link import hub_credentials
from gateway.pairing import BluetoothLink, PairedDevice
from tests.test_ble_pairing import HUB, OXI, secured  # noqa: F401 - the broker fixture

emulated = pytest.importorskip("tests.ble_emulated")
pytestmark = pytest.mark.integration

OXI_ID = device_id_for(OXI)


def event(what: str, device_id: str) -> bytes:
    return encode(BridgeEvent(v=1, event=what, ts=1, device_id=device_id))  # type: ignore[arg-type]


def test_only_bluetooth_pairings_and_removals_restart_the_bridge() -> None:
    assert changes_bluetooth(event("device_accepted", OXI_ID))
    assert changes_bluetooth(event("device_removed", OXI_ID))
    assert not changes_bluetooth(event("device_accepted", "btn-1"))
    assert not changes_bluetooth(event("device_announced", OXI_ID))
    assert not changes_bluetooth(b"not json")


def pair_oxi(settings: HubSettings) -> None:
    """What `hub pair` records for an accepted Bluetooth device, the broker reloaded."""
    accounts = load_accounts(settings.hub_broker_dir)
    assert accounts is not None
    device = PairedDevice(OXI_ID, "wearable", OXI, hash_password("oxi-password-0123"), 1)
    accounts = accounts.with_bluetooth(BluetoothLink(OXI, OXI_ID, "oxi-password-0123"), device)
    write_security(settings.hub_broker_dir, accounts, settings.base_topic)
    reload_broker(settings.hub_broker_dir)


async def test_the_bridge_service_follows_a_device_paired_while_it_runs(
    secured: HubSettings,  # noqa: F811
) -> None:
    link = emulated.LocalLink()
    oxi = emulated.EmulatedWearable(link, OXI)
    await oxi.start()
    followed: list[list[str]] = []

    async def source_for(addresses: list[str]) -> GattSource:
        followed.append(addresses)
        source = emulated.BumbleSource(link, HUB, addresses)
        await source.start()
        return source  # type: ignore[no-any-return]

    topics = Topics(secured.base_topic)
    username, password = hub_credentials(secured)
    service = asyncio.create_task(run_ble_service(secured, source_for, retry_s=0.2))
    try:
        async with aiomqtt.Client(
            "127.0.0.1", secured.mqtt_port, username=username, password=password
        ) as hub:
            await hub.subscribe(f"{topics.base}/+/vitals", qos=1)
            assert paired_devices(secured) == []  # nothing to follow: the service waits
            await asyncio.to_thread(pair_oxi, secured)
            # the pairing window's event; sent until the service has subscribed to it
            async with asyncio.timeout(20):
                while not followed:
                    await hub.publish(
                        topics.bridge(BridgeTopic.EVENT), event("device_accepted", OXI_ID), qos=1
                    )
                    await asyncio.sleep(0.1)
            assert followed == [[OXI]]
            messages = aiter(hub.messages)
            async with asyncio.timeout(20):
                while True:  # readings until one arrives (the link subscribes, then notifies)
                    await oxi.notify(oxi.plx, bytes([0, 96, 0, 70, 0]))
                    with contextlib.suppress(TimeoutError):
                        message = await asyncio.wait_for(anext(messages), 0.2)
                        break
            assert str(message.topic) == f"{topics.base}/{OXI_ID}/vitals"
            reading = parse_payload(
                topics.parse(str(message.topic)).channel,
                bytes(message.payload),  # type: ignore[arg-type]
            )
            assert isinstance(reading, VitalsReading) and reading.spo2 == 96.0
    finally:
        service.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await service
