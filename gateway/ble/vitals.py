"""Bluetooth health devices as wearables of the ``vitals`` channel. Pure: a notification
and the hub's clock in, a contract `VitalsReading` for one paired device (or the reason
there is none) out.

The reading is stamped with the time the notification arrived: heart rate and continuous
SpO2 carry no time, and the optional Date Time of the other measurements is the device's
local time without a zone. Each notification is one reading with the fields its
measurement gives (`gatt.vitals_fields`); the detector takes readings with some fields
missing, as it does from any wearable.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from carehub.mqtt_contract import VitalsReading
from gateway.ble.gatt import PARSERS, GattError, Measurement, vitals_fields
from gateway.ble.transport import Notification, normal_address


class Ignored(enum.Enum):
    UNKNOWN_DEVICE = "unknown_device"
    """Not paired with this hub: anyone's device in radio range."""
    UNSUPPORTED = "unsupported_characteristic"
    MALFORMED = "malformed"
    NO_VALUE = "no_value"
    """Well formed, but nothing the detector can use (no contact, a reserved value, a
    value outside the contract's range)."""


@dataclass(frozen=True)
class Reading:
    device_id: str
    reading: VitalsReading


@dataclass(frozen=True)
class Dropped:
    address: str
    why: Ignored
    detail: str = ""


class BleVitals:
    """The paired devices (Bluetooth address → CareHub device id) and each one's ``seq``."""

    def __init__(self, devices: Mapping[str, str]) -> None:
        self._devices = {normal_address(a): d for a, d in devices.items()}
        self._seq: dict[str, int] = {}

    def reading(self, note: Notification, now_ms: int) -> Reading | Dropped:
        device_id = self._devices.get(note.address)
        if device_id is None:
            return Dropped(note.address, Ignored.UNKNOWN_DEVICE)
        parse = PARSERS.get(note.characteristic)
        if parse is None:
            return Dropped(note.address, Ignored.UNSUPPORTED, f"0x{note.characteristic:04X}")
        try:
            fields = vitals_fields(cast(Measurement, parse(note.value)))
        except GattError as e:
            return Dropped(note.address, Ignored.MALFORMED, str(e))
        if not fields:
            return Dropped(note.address, Ignored.NO_VALUE, f"0x{note.characteristic:04X}")
        seq = self._seq[device_id] = self._seq.get(device_id, 0) + 1
        return Reading(device_id, VitalsReading(v=1, seq=seq, ts=now_ms, **fields))
