"""Bluetooth without a radio: bumble's controllers on an in-process virtual link. An
emulated health device (a GATT server with the SIG's Heart Rate and Pulse Oximeter
services) and `BumbleSource`, the hub's `GattSource` as a bumble central, which connects,
discovers and subscribes over real ATT/L2CAP/HCI packets, as bleak does over BlueZ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Device, Peer
from bumble.gatt import Characteristic, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from gateway.ble.gatt import (
    BLOOD_PRESSURE_MEASUREMENT,
    HEART_RATE_MEASUREMENT,
    PLX_CONTINUOUS_MEASUREMENT,
    PLX_SPOT_CHECK_MEASUREMENT,
    TEMPERATURE_MEASUREMENT,
)
from gateway.ble.transport import (
    MEASUREMENTS,
    Advertisement,
    BondError,
    Notification,
    NotificationQueue,
)

HEART_RATE_SERVICE = 0x180D
PULSE_OXIMETER_SERVICE = 0x1822
HEALTH_THERMOMETER_SERVICE = 0x1809
BLOOD_PRESSURE_SERVICE = 0x1810


def device(link: LocalLink, address: str) -> Device:
    controller = Controller(address, link=link, public_address=address)
    return Device(address=Address(address), host=Host(controller, AsyncPipeSink(controller)))


def advertising_data(name: str, services: list[int]) -> bytes:
    """What a health device advertises: its name and its services' 16-bit UUIDs."""
    uuids = b"".join(bytes(UUID.from_16_bits(s)) for s in services)
    fields = [(AdvertisingData.COMPLETE_LOCAL_NAME, name.encode())]
    if uuids:
        fields.append((AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, uuids))
    return bytes(AdvertisingData(fields))


class EmulatedWearable:
    """A heart-rate strap, pulse oximeter and thermometer in one, advertising on `link`.
    Temperature is indicated (acknowledged), as its service specification requires."""

    def __init__(self, link: LocalLink, address: str, name: str = "CareHub Oxi") -> None:
        self.address = address
        self.device = device(link, address)
        self.device.advertising_data = advertising_data(
            name, [HEART_RATE_SERVICE, PULSE_OXIMETER_SERVICE, HEALTH_THERMOMETER_SERVICE]
        )
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


class EmulatedMonitor:
    """A home blood-pressure monitor with a spot-check pulse oximeter: Blood Pressure
    Measurement (0x2A35) and PLX Spot-Check Measurement (0x2A5E), both indicated, as their
    service specifications require (a stored measurement must not be lost)."""

    def __init__(self, link: LocalLink, address: str, name: str = "CareHub BPM") -> None:
        self.address = address
        self.device = device(link, address)
        self.device.advertising_data = advertising_data(
            name, [BLOOD_PRESSURE_SERVICE, PULSE_OXIMETER_SERVICE]
        )
        indicate = Characteristic.Properties.INDICATE
        self.blood_pressure = Characteristic(
            UUID.from_16_bits(BLOOD_PRESSURE_MEASUREMENT), indicate, 0
        )
        self.spot_check = Characteristic(UUID.from_16_bits(PLX_SPOT_CHECK_MEASUREMENT), indicate, 0)
        self.device.add_services(
            [
                Service(UUID.from_16_bits(BLOOD_PRESSURE_SERVICE), [self.blood_pressure]),
                Service(UUID.from_16_bits(PULSE_OXIMETER_SERVICE), [self.spot_check]),
            ]
        )

    async def start(self) -> None:
        await self.device.power_on()
        await self.device.start_advertising(advertising_interval_min=20)

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


class BumbleRadio:
    """The hub's `BleRadio` for the pairing window, as a bumble central on `link`: it
    scans while `advertisements()` is iterated and bonds with LE pairing (Just Works: the
    emulated devices have no display nor keys); the bonds are in `bonded`."""

    def __init__(self, link: LocalLink, address: str) -> None:
        self.device = device(link, address)
        self.bonded: list[str] = []
        self._powered = False

    async def _power(self) -> None:
        if not self._powered:
            await self.device.power_on()
            self._powered = True

    async def advertisements(self) -> AsyncIterator[Advertisement]:
        await self._power()
        heard: asyncio.Queue[Advertisement] = asyncio.Queue()

        def on_advertisement(adv) -> None:  # type: ignore[no-untyped-def]
            uuids = adv.data.get_all(AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS)
            services = frozenset(int(u.to_hex_str(), 16) for group in uuids for u in group)
            name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or ""
            address = str(adv.address).split("/")[0]
            heard.put_nowait(Advertisement(address, str(name), services))

        self.device.on("advertisement", on_advertisement)
        await self.device.start_scanning(filter_duplicates=True)
        try:
            while True:
                yield await heard.get()
        finally:
            self.device.remove_listener("advertisement", on_advertisement)
            if self.device.is_scanning:
                await self.device.stop_scanning()

    async def bond(self, address: str) -> None:
        await self._power()
        try:
            connection = await self.device.connect(Address(address))
            try:
                await connection.pair()
            finally:
                await connection.disconnect()
        except Exception as e:  # bumble's own errors: the installer sees why
            raise BondError(str(e) or type(e).__name__) from e
        self.bonded.append(address)


async def until(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` on the event loop until true; TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - a condition, not an event we own
            await asyncio.sleep(0.01)
