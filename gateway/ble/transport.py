"""The hub's view of a Bluetooth LE radio: a `GattSource` yields every value a paired
health device notifies (or indicates) on a measurement characteristic, as
`Notification`s; a `BleRadio` scans advertisements and bonds a device for the pairing
window. What the radio is stays behind it: BlueZ through bleak on a real hub
(`gateway.ble.bleak_source`), an emulated controller in the tests.

UUIDs are carried as the 16-bit numbers the Bluetooth SIG assigns (0x2A37); a 128-bit
UUID outside the SIG base is not a standard measurement and has no number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from gateway.ble.gatt import PARSERS

log = logging.getLogger(__name__)

MEASUREMENTS = frozenset(PARSERS)
"""The characteristics a source subscribes to on every device it follows."""
SIG_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
QUEUE_SIZE = 1024
"""Notifications waiting for the bridge; beyond this the newest are dropped (a vital sign
is worth its freshness, and a stuck bridge must not grow the hub's memory)."""


@dataclass(frozen=True)
class Notification:
    address: str
    """The device's Bluetooth address, ``AA:BB:CC:DD:EE:FF`` (upper case)."""
    characteristic: int
    """The 16-bit SIG UUID of the characteristic, e.g. 0x2A37."""
    value: bytes


@dataclass(frozen=True)
class Advertisement:
    address: str
    """``AA:BB:CC:DD:EE:FF`` (upper case)."""
    name: str
    """The advertised local name ('' when none)."""
    services: frozenset[int]
    """The 16-bit SIG service UUIDs advertised."""


class GattSource(Protocol):
    def notifications(self) -> AsyncIterator[Notification]:
        """Every notification of the followed devices, forever; connecting, subscribing
        and reconnecting are the source's business."""
        ...


class RadioError(Exception):
    """The radio cannot scan (no adapter, BlueZ not running, no right to it)."""


class BondError(Exception):
    """The device could not be bonded (out of range, refused, pairing failed); the message
    says why, for the installer."""


class BleRadio(Protocol):
    """The radio as `carehub hub pair` uses it, only while its window is open."""

    def advertisements(self) -> AsyncIterator[Advertisement]:
        """Every advertisement heard while iterated (scanning stops when the iterator is
        closed)."""
        ...

    async def bond(self, address: str) -> None:
        """Connect, pair (LE Secure Connections where the device offers it, keys kept by
        the radio's stack) and disconnect; `BondError` when it cannot."""
        ...


def sig_uuid(number: int) -> str:
    """The 128-bit string form of a 16-bit SIG UUID (as bleak names characteristics)."""
    return f"0000{number:04x}{SIG_BASE_SUFFIX}"


def uuid16(text: str) -> int | None:
    """The 16-bit number of a SIG UUID given as a 128-bit string, else None."""
    text = text.lower()
    if len(text) != 36 or not text.startswith("0000") or not text.endswith(SIG_BASE_SUFFIX):
        return None
    try:
        return int(text[4:8], 16)
    except ValueError:
        return None


def normal_address(address: str) -> str:
    return address.strip().upper()


class NotificationQueue:
    """Where radio callbacks put notifications and the source's iterator takes them."""

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(size)
        self.dropped = 0

    def put(self, address: str, characteristic: int, value: bytes | bytearray) -> None:
        note = Notification(normal_address(address), characteristic, bytes(value))
        try:
            self._queue.put_nowait(note)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % QUEUE_SIZE == 0:
                log.warning(
                    "bluetooth: %d notifications dropped, the bridge is behind", self.dropped
                )

    async def get(self) -> Notification:
        return await self._queue.get()
