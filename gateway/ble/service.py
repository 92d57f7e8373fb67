"""`carehub hub ble`: the Bluetooth bridge as a hub's service (unit ``carehub-ble``).

It follows the Bluetooth devices paired with the hub (``accounts.json``, `bluetooth`) and
publishes their readings under each one's broker account (`gateway.ble.bridge`). When a
pairing window accepts a Bluetooth device, or `hub remove` forgets one, the hub's bridge
events say so (``device_accepted`` / ``device_removed`` of a ``ble-`` id) and the bridge
starts over with the new list: the installer restarts nothing. With no Bluetooth device
paired it only waits for one. The radio is a `GattSource` made by `source_for`: bleak on a
hub (`gateway.ble.bleak_source`, imported only here), an emulated one in the tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from carehub.mqtt_contract import BridgeEvent, BridgeTopic, ContractError, Topics, parse_model
from carehub.settings import HubSettings
from gateway.ble.bridge import BleDevice, MqttPublisher, run_bridge
from gateway.ble.pairing import is_bluetooth_id
from gateway.ble.transport import GattSource
from gateway.pairing_session import hub_client, require_accounts

log = logging.getLogger(__name__)

SourceFor = Callable[[list[str]], Awaitable[GattSource]]
"""Makes the radio's source for these addresses (started, ready to iterate)."""
RETRY_S = 5.0
"""After the broker was lost, how long before the bridge connects again."""


def paired_devices(settings: HubSettings) -> list[BleDevice]:
    """The Bluetooth devices paired with this hub, with their broker logins."""
    accounts = require_accounts(settings)
    return [BleDevice(b.address, b.device_id, b.device_id, b.password) for b in accounts.bluetooth]


def changes_bluetooth(payload: bytes) -> bool:
    """Whether a hub bridge event pairs or forgets a Bluetooth device."""
    try:
        event = parse_model(BridgeEvent, payload)
    except ContractError:
        return False
    return event.event in ("device_accepted", "device_removed") and is_bluetooth_id(
        event.device_id or ""
    )


async def bleak_source(addresses: list[str]) -> GattSource:
    from gateway.ble.bleak_source import BleakSource  # bleak: the `ble` extra

    return BleakSource(addresses)


async def run_ble_service(
    settings: HubSettings, source_for: SourceFor = bleak_source, retry_s: float = RETRY_S
) -> None:
    """Forever: bridge the paired devices; start over when the paired list changes."""
    topics = Topics(settings.base_topic)
    while True:
        devices = paired_devices(settings)
        log.info(
            "bluetooth bridge: following %s", ", ".join(d.device_id for d in devices) or "nothing"
        )
        publisher = MqttPublisher(
            settings.mqtt_host, settings.mqtt_port, settings.base_topic, devices
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            async with hub_client(settings, "ble") as client:
                await client.subscribe(topics.bridge(BridgeTopic.EVENT), qos=1)
                tasks.append(asyncio.create_task(_until_changed(client)))
                if devices:
                    source = await source_for([d.address for d in devices])
                    tasks.append(asyncio.create_task(run_bridge(source, devices, publisher)))
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a radio that failed raises: systemd restarts the service
                log.info("bluetooth bridge: the paired devices changed")
        except aiomqtt.MqttError as e:
            log.warning("bluetooth bridge: broker: %s; again in %.0f s", e, retry_s)
            await asyncio.sleep(retry_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # what failed was raised
            await publisher.close()


async def _until_changed(client: aiomqtt.Client) -> None:
    """Returns once the hub's bridge events pair or forget a Bluetooth device."""
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if changes_bluetooth(payload):
            return
