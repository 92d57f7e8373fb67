"""Parsers of the standard Bluetooth GATT health characteristics, pure and total: bytes
in, a measurement or `GattError` out, whatever the bytes.

Layouts are those of the Bluetooth SIG's GATT Specification Supplement (and the Heart
Rate, Blood Pressure, Health Thermometer and Pulse Oximeter service specifications):
little-endian fields after a flags byte, medical values as IEEE 11073-20601 ``SFLOAT``
(16 bits: 4-bit exponent, 12-bit mantissa) or ``FLOAT`` (32 bits: 8-bit exponent, 24-bit
mantissa), whose reserved values (NaN, NRes, ±INFINITY) mean "no value" and become None.

Characteristics (UUID): Heart Rate Measurement (0x2A37), Blood Pressure Measurement
(0x2A35), Temperature Measurement (0x2A1C), PLX Spot-Check Measurement (0x2A5E), PLX
Continuous Measurement (0x2A5F). `vitals_fields` maps a measurement onto CareHub's
``vitals`` channel (`carehub.mqtt_contract.VitalsReading`), in its units and ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from carehub.mqtt_contract import RANGES

HEART_RATE_MEASUREMENT = 0x2A37
BLOOD_PRESSURE_MEASUREMENT = 0x2A35
TEMPERATURE_MEASUREMENT = 0x2A1C
PLX_SPOT_CHECK_MEASUREMENT = 0x2A5E
PLX_CONTINUOUS_MEASUREMENT = 0x2A5F
MAX_VALUE_BYTES = 512
"""An attribute value is at most 512 bytes (Bluetooth Core, ATT)."""
MMHG_PER_KPA = 7.500_615_75


class GattError(ValueError):
    """Bytes that are not the characteristic they claim to be; ``str()`` says why."""


# ---------------------------------------------------------------- IEEE 11073 numbers

_SFLOAT_SPECIAL = {0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801}
"""NaN, NRes, +INFINITY, −INFINITY, reserved: a mantissa value, any exponent."""
_FLOAT_SPECIAL = {0x7FFFFF, 0x800000, 0x7FFFFE, 0x800002, 0x800001}


def sfloat(raw: int) -> float | None:
    """An IEEE 11073 16-bit SFLOAT (`raw` as read, little-endian, 0..65535)."""
    mantissa, exponent = raw & 0x0FFF, raw >> 12
    if mantissa in _SFLOAT_SPECIAL:
        return None
    mantissa -= 0x1000 if mantissa & 0x0800 else 0
    exponent -= 0x10 if exponent & 0x8 else 0
    return _scaled(mantissa, exponent)


def float32(raw: int) -> float | None:
    """An IEEE 11073 32-bit FLOAT (`raw` as read, little-endian, 0..2**32-1)."""
    mantissa, exponent = raw & 0xFFFFFF, raw >> 24
    if mantissa in _FLOAT_SPECIAL:
        return None
    mantissa -= 0x1000000 if mantissa & 0x800000 else 0
    exponent -= 0x100 if exponent & 0x80 else 0
    return _scaled(mantissa, exponent)


def _scaled(mantissa: int, exponent: int) -> float:
    """mantissa × 10^exponent, rounded to the digits the mantissa carries (2.7 × 10¹ is
    27.0, not 27.000000000000004)."""
    return round(mantissa * 10.0**exponent, max(0, -exponent))


class _Reader:
    """Reads little-endian fields off a value; running out is a `GattError`."""

    def __init__(self, data: bytes, what: str) -> None:
        if len(data) > MAX_VALUE_BYTES:
            raise GattError(f"{what}: {len(data)} bytes, longer than any attribute value")
        self.data, self.at, self.what = data, 0, what

    def uint(self, size: int, name: str) -> int:
        if self.at + size > len(self.data):
            where = f"byte {self.at} of {len(self.data)}"
            raise GattError(f"{self.what}: truncated at {name} ({where})")
        value = int.from_bytes(self.data[self.at : self.at + size], "little")
        self.at += size
        return value

    def left(self) -> int:
        return len(self.data) - self.at


@dataclass(frozen=True)
class DateTime:
    """The 7-byte Date Time field (year 0 = not known)."""

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int


def _date_time(r: _Reader) -> DateTime:
    return DateTime(
        r.uint(2, "year"),
        r.uint(1, "month"),
        r.uint(1, "day"),
        r.uint(1, "hours"),
        r.uint(1, "minutes"),
        r.uint(1, "seconds"),
    )


# ---------------------------------------------------------------- measurements


@dataclass(frozen=True)
class HeartRate:
    bpm: int
    contact: bool | None
    """Skin contact: None when the sensor does not report it."""
    energy_kj: int | None = None
    rr_ms: tuple[float, ...] = field(default_factory=tuple)
    """RR intervals, ms (sent in 1/1024 s)."""


def heart_rate(data: bytes) -> HeartRate:
    r = _Reader(data, "heart rate measurement")
    flags = r.uint(1, "flags")
    bpm = r.uint(2 if flags & 0x01 else 1, "heart rate")
    contact = bool(flags & 0x02) if flags & 0x04 else None
    energy = r.uint(2, "energy expended") if flags & 0x08 else None
    rr: list[float] = []
    if flags & 0x10:
        if r.left() == 0 or r.left() % 2:
            raise GattError("heart rate measurement: RR intervals are not whole uint16s")
        while r.left():
            rr.append(round(r.uint(2, "RR interval") * 1000 / 1024, 1))
    return HeartRate(bpm, contact, energy, tuple(rr))


@dataclass(frozen=True)
class BloodPressure:
    systolic_mmhg: float | None
    diastolic_mmhg: float | None
    mean_mmhg: float | None
    pulse_bpm: float | None = None
    time: DateTime | None = None
    user: int | None = None
    status: int | None = None


def blood_pressure(data: bytes) -> BloodPressure:
    r = _Reader(data, "blood pressure measurement")
    flags = r.uint(1, "flags")
    kpa = bool(flags & 0x01)
    values = [sfloat(r.uint(2, name)) for name in ("systolic", "diastolic", "mean")]
    if kpa:
        values = [None if v is None else round(v * MMHG_PER_KPA, 1) for v in values]
    time = _date_time(r) if flags & 0x02 else None
    pulse = sfloat(r.uint(2, "pulse rate")) if flags & 0x04 else None
    user = r.uint(1, "user id") if flags & 0x08 else None
    status = r.uint(2, "measurement status") if flags & 0x10 else None
    return BloodPressure(values[0], values[1], values[2], pulse, time, user, status)


@dataclass(frozen=True)
class Temperature:
    celsius: float | None
    time: DateTime | None = None
    site: int | None = None
    """Temperature Type: 1 armpit, 2 body, 3 ear, 4 finger, 5 GI tract, 6 mouth,
    7 rectum, 8 toe, 9 tympanum."""


def temperature(data: bytes) -> Temperature:
    r = _Reader(data, "temperature measurement")
    flags = r.uint(1, "flags")
    value = float32(r.uint(4, "temperature"))
    if value is not None and flags & 0x01:  # Fahrenheit
        value = round((value - 32) * 5 / 9, 2)
    time = _date_time(r) if flags & 0x02 else None
    site = r.uint(1, "temperature type") if flags & 0x04 else None
    return Temperature(value, time, site)


@dataclass(frozen=True)
class PulseOximetry:
    spo2_pct: float | None
    pulse_bpm: float | None
    time: DateTime | None = None


def plx_spot_check(data: bytes) -> PulseOximetry:
    r = _Reader(data, "PLX spot-check measurement")
    flags = r.uint(1, "flags")
    spo2, pulse = sfloat(r.uint(2, "SpO2")), sfloat(r.uint(2, "pulse rate"))
    time = _date_time(r) if flags & 0x01 else None
    if flags & 0x02:
        r.uint(2, "measurement status")
    if flags & 0x04:
        r.uint(3, "device and sensor status")
    if flags & 0x08:
        r.uint(2, "pulse amplitude index")
    return PulseOximetry(spo2, pulse, time)


def plx_continuous(data: bytes) -> PulseOximetry:
    """The normal SpO2 and pulse (the optional fast and slow ones are read and skipped)."""
    r = _Reader(data, "PLX continuous measurement")
    flags = r.uint(1, "flags")
    spo2, pulse = sfloat(r.uint(2, "SpO2")), sfloat(r.uint(2, "pulse rate"))
    for bit, name, size in (
        (0x01, "SpO2PR-Fast", 4),
        (0x02, "SpO2PR-Slow", 4),
        (0x04, "measurement status", 2),
        (0x08, "device and sensor status", 3),
        (0x10, "pulse amplitude index", 2),
    ):
        if flags & bit:
            r.uint(size, name)
    return PulseOximetry(spo2, pulse)


PARSERS = {
    HEART_RATE_MEASUREMENT: heart_rate,
    BLOOD_PRESSURE_MEASUREMENT: blood_pressure,
    TEMPERATURE_MEASUREMENT: temperature,
    PLX_SPOT_CHECK_MEASUREMENT: plx_spot_check,
    PLX_CONTINUOUS_MEASUREMENT: plx_continuous,
}

Measurement = HeartRate | BloodPressure | Temperature | PulseOximetry


def vitals_fields(m: Measurement) -> dict[str, float]:
    """The `VitalsReading` fields a measurement gives, in its units; a value outside the
    contract's range for that field (a sensor fault, not a measurement) is left out, as a
    missing value is."""
    if isinstance(m, HeartRate):
        values: dict[str, float | None] = {"hr": float(m.bpm)}
        if m.contact is False:
            values = {}  # not on the skin: the number is noise
    elif isinstance(m, BloodPressure):
        values = {"sbp": m.systolic_mmhg, "hr": m.pulse_bpm}
    elif isinstance(m, Temperature):
        values = {"temp": m.celsius}
    else:
        values = {"spo2": m.spo2_pct, "hr": m.pulse_bpm}
    out = {}
    for name, value in values.items():
        bounds = RANGES[f"vitals.{name}"]
        if value is not None and math.isfinite(value) and bounds.low <= value <= bounds.high:
            out[name] = value
    return out
