"""`GattSource` and `BleRadio` on a real hub: bleak, over BlueZ and D-Bus (the ``ble``
extra). bleak is imported only when a source or a scan runs, so a hub without Bluetooth
never loads it.

Each followed device is connected, its measurement characteristics subscribed (notify or
indicate, whichever it offers), and reconnected after `RECONNECT_S` when the link drops
or connecting fails: a wearable walks out of range and back all day.

Not exercised by the tests (no controller nor BlueZ where they run): see docs/devices.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from gateway.ble.transport import (
    MEASUREMENTS,
    Advertisement,
    BondError,
    Notification,
    NotificationQueue,
    RadioError,
    normal_address,
    uuid16,
)

log = logging.getLogger(__name__)

RECONNECT_S = 10.0
CONNECT_TIMEOUT_S = 20.0


class BleakSource:
    def __init__(self, addresses: Iterable[str], reconnect_s: float = RECONNECT_S) -> None:
        self._addresses = sorted({a.upper() for a in addresses})
        self._reconnect_s = reconnect_s

    async def notifications(self) -> AsyncIterator[Notification]:
        queue = NotificationQueue()
        tasks = [asyncio.create_task(self._follow(a, queue)) for a in self._addresses]
        try:
            while True:
                yield await queue.get()
        finally:
            for task in tasks:
                task.cancel()

    async def _follow(self, address: str, queue: NotificationQueue) -> None:
        from bleak.exc import BleakError  # the `ble` extra

        while True:
            try:
                await self._session(address, queue)
                log.info("bluetooth: %s disconnected", address)
            except (BleakError, OSError, TimeoutError) as e:
                log.warning("bluetooth: %s: %s", address, e or type(e).__name__)
            await asyncio.sleep(self._reconnect_s)

    async def _session(self, address: str, queue: NotificationQueue) -> None:
        """Connect, subscribe to every measurement offered, return once disconnected."""
        from bleak import BleakClient

        gone = asyncio.Event()
        async with BleakClient(
            address, disconnected_callback=lambda _client: gone.set(), timeout=CONNECT_TIMEOUT_S
        ) as client:
            count = 0
            for service in client.services:
                for char in service.characteristics:
                    number = uuid16(char.uuid)
                    if number in MEASUREMENTS and {"notify", "indicate"} & set(char.properties):
                        await client.start_notify(char, _putter(queue, address, number))
                        count += 1
            log.info("bluetooth: %s connected, %d measurements followed", address, count)
            await gone.wait()


def _putter(queue: NotificationQueue, address: str, number: int) -> Any:
    def put(_characteristic: object, data: bytearray) -> None:
        queue.put(address, number, data)

    return put


class BleakRadio:
    """The pairing window's radio: BlueZ's scanner while iterated, BlueZ's pairing (its
    default agent: Just Works; a device that demands a passkey cannot be bonded here)."""

    async def advertisements(self) -> AsyncIterator[Advertisement]:
        from bleak import BleakScanner
        from bleak.exc import BleakError

        heard: asyncio.Queue[Advertisement] = asyncio.Queue(1024)

        def detected(device: Any, data: Any) -> None:
            services = frozenset(
                n for n in (uuid16(u) for u in data.service_uuids or ()) if n is not None
            )
            advert = Advertisement(normal_address(device.address), data.local_name or "", services)
            with contextlib.suppress(asyncio.QueueFull):
                heard.put_nowait(advert)

        try:
            async with BleakScanner(detection_callback=detected):
                while True:
                    yield await heard.get()
        except (BleakError, OSError) as e:
            raise RadioError(str(e) or type(e).__name__) from e

    async def bond(self, address: str) -> None:
        from bleak import BleakClient
        from bleak.exc import BleakError

        try:
            async with BleakClient(address, timeout=CONNECT_TIMEOUT_S) as client:
                await client.pair()
        except (BleakError, OSError, TimeoutError) as e:
            raise BondError(str(e) or type(e).__name__) from e
