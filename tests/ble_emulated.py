"""Bluetooth without a radio: bumble's controllers on an in-process virtual link. An
emulated health device (a GATT server with the SIG's Heart Rate and Pulse Oximeter
services) and `BumbleSource`, the hub's `GattSource` as a bumble central, which connects,
discovers and subscribes over real ATT/L2CAP/HCI packets, as bleak does over BlueZ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bumble.controller import Controller
from bumble.core import UUID
from bumble.device import Device, Peer
from bumble.gatt import Characteristic, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from gateway.ble.gatt import (
    HEART_RATE_MEASUREMENT,
    PLX_CONTINUOUS_MEASUREMENT,
    TEMPERATURE_MEASUREMENT,
)
from gateway.ble.transport import MEASUREMENTS, Notification, NotificationQueue

HEART_RATE_SERVICE = 0x180D
PULSE_OXIMETER_SERVICE = 0x1822
HEALTH_THERMOMETER_SERVICE = 0x1809


def device(link: LocalLink, address: str) -> Device:
    controller = Controller(address, link=link, public_address=address)
    return Device(address=Address(address), host=Host(controller, AsyncPipeSink(controller)))


class EmulatedWearable:
    """A heart-rate strap, pulse oximeter and thermometer in one, advertising on `link`.
    Temperature is indicated (acknowledged), as its service specification requires."""

    def __init__(self, link: LocalLink, address: str) -> None:
        self.address = address
        self.device = device(link, address)
        notify = Characteristic.Properties.NOTIFY
        self.heart_rate = Characteristic(UUID.from_16_bits(HEART_RATE_MEASUREMENT), notify, 0)
        self.plx = Characteristic(UUID.from_16_bits(PLX_CONTINUOUS_MEASUREMENT), notify, 0)
        indicate = Characteristic.Properties.INDICATE
        self.temperature = Characteristic(UUID.from_16_bits(TEMPERATURE_MEASUREMENT), indicate, 0)
        self.device.add_services(
            [
                Service(UUID.from_16_bits(HEART_RATE_SERVICE), [self.heart_rate]),
                Service(UUID.from_16_bits(PULSE_OXIMETER_SERVICE), [self.plx]),
                Service(UUID.from_16_bits(HEALTH_THERMOMETER_SERVICE), [self.temperature]),
            ]
        )

    async def start(self) -> None:
        await self.device.power_on()
        await self.device.start_advertising(advertising_interval_min=20)

    async def notify(self, characteristic: Characteristic, value: bytes) -> None:
        await self.device.notify_subscribers(characteristic, value)

    async def indicate(self, characteristic: Characteristic, value: bytes) -> None:
        """Returns once the central confirmed the indication."""
        await self.device.indicate_subscribers(characteristic, value)


class BumbleSource:
    """The hub's `GattSource` as a bumble central on `link`: it follows `addresses`."""

    def __init__(self, link: LocalLink, address: str, addresses: list[str]) -> None:
        self.device = device(link, address)
        self._addresses = addresses
        self.queue = NotificationQueue()
        self.subscribed: set[tuple[str, int]] = set()
        self._started = False

    async def _follow(self, address: str) -> None:
        connection = await self.device.connect(Address(address))
        peer = Peer(connection)
        await peer.discover_services()
        for service in peer.services:
            await service.discover_characteristics()
            for char in service.characteristics:
                number = int(char.uuid.to_hex_str(), 16) if len(char.uuid.uuid_bytes) == 2 else 0
                if number not in MEASUREMENTS:
                    continue
                await char.discover_descriptors()
                await peer.subscribe(
                    char, lambda value, n=number: self.queue.put(address, n, bytes(value))
                )
                self.subscribed.add((address, number))

    async def start(self) -> None:
        await self.device.power_on()
        for address in self._addresses:
            await self._follow(address)
        self._started = True

    async def notifications(self) -> AsyncIterator[Notification]:
        assert self._started, "start() the source first"
        while True:
            yield await self.queue.get()


async def until(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` on the event loop until true; TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - a condition, not an event we own
            await asyncio.sleep(0.01)
