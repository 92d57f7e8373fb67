"""The GATT health-characteristic parsers, pure: values laid out as the Bluetooth GATT
Specification Supplement defines them, the IEEE 11073 special values, and hostile bytes
(truncated, over-long, random) that must give a `GattError` or a measurement, never a
crash, and never a value outside CareHub's ranges on the vitals channel."""

from __future__ import annotations

import random

import pytest

from gateway.ble.gatt import (
    PARSERS,
    BloodPressure,
    DateTime,
    GattError,
    HeartRate,
    PulseOximetry,
    Temperature,
    blood_pressure,
    float32,
    heart_rate,
    plx_continuous,
    plx_spot_check,
    sfloat,
    temperature,
    vitals_fields,
)

STAMP = bytes([0xE9, 0x07, 12, 6, 15, 4, 30])  # 2025-12-06 15:04:30


def test_ieee_11073_numbers_and_their_reserved_values() -> None:
    assert sfloat(0x0078) == 120.0
    assert sfloat(0xF16E) == 36.6  # mantissa 366, exponent -1
    assert sfloat(0x0FFF) == -1.0  # mantissa -1
    assert sfloat(0x27FD) == 204_500.0  # mantissa 2045, exponent 2
    for special in (0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801, 0xF7FF):
        assert sfloat(special) is None  # NaN, NRes, +INF, -INF, reserved (any exponent)
    assert float32(0xFF00016E) == 36.6
    assert float32(0x00FFFFFF) == -1.0
    for special in (0x007FFFFF, 0x00800000, 0x007FFFFE, 0x00800002, 0x00800001):
        assert float32(special) is None


def test_heart_rate_measurement() -> None:
    # flags 0x16: uint8 rate, contact supported and detected, RR intervals present
    assert heart_rate(bytes([0x16, 72, 0x00, 0x04])) == HeartRate(72, True, None, (1000.0,))
    # flags 0x01: uint16 rate, no contact feature
    assert heart_rate(bytes([0x01, 0x2C, 0x01])) == HeartRate(300, None)
    # flags 0x1C: contact supported but lost, energy 0x0100 kJ, two RR intervals
    hr = heart_rate(bytes([0x1C, 60, 0x00, 0x01, 0x00, 0x04, 0x00, 0x02]))
    assert hr == HeartRate(60, False, 256, (1000.0, 500.0))
    assert vitals_fields(hr) == {}  # off the skin: no reading
    assert vitals_fields(heart_rate(bytes([0x06, 72]))) == {"hr": 72.0}


def test_blood_pressure_measurement() -> None:
    mmhg = bytes([0x00, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00])  # 120/80, mean 93 mmHg
    assert blood_pressure(mmhg) == BloodPressure(120.0, 80.0, 93.0)
    # flags 0x1F: kPa, time stamp, pulse, user, status
    kpa = bytes([0x1F, 0xA0, 0xF0, 0x6B, 0xF0, 0x7C, 0xF0]) + STAMP
    kpa += bytes([0x48, 0x00, 0x02, 0x00, 0x00])
    bp = blood_pressure(kpa)
    assert (bp.systolic_mmhg, bp.diastolic_mmhg, bp.pulse_bpm) == (120.0, 80.3, 72.0)
    assert bp.time == DateTime(2025, 12, 6, 15, 4, 30) and bp.user == 2 and bp.status == 0
    assert vitals_fields(bp) == {"sbp": 120.0, "hr": 72.0}
    nan = blood_pressure(bytes([0x00, 0xFF, 0x07, 0x50, 0x00, 0x5D, 0x00]))
    assert nan.systolic_mmhg is None and vitals_fields(nan) == {}


def test_temperature_measurement() -> None:
    assert temperature(bytes([0x00, 0x6E, 0x01, 0x00, 0xFF])) == Temperature(36.6)
    # flags 0x07: Fahrenheit (98.6 °F), time stamp, type 2 (body)
    t = temperature(bytes([0x07, 0xDA, 0x03, 0x00, 0xFF]) + STAMP + bytes([0x02]))
    assert t == Temperature(37.0, DateTime(2025, 12, 6, 15, 4, 30), 2)
    assert vitals_fields(t) == {"temp": 37.0}
    assert vitals_fields(temperature(bytes([0x00, 0x10, 0x27, 0x00, 0x00]))) == {}  # 10000 °C


def test_pulse_oximetry_measurements() -> None:
    spot = plx_spot_check(bytes([0x00, 0x61, 0x00, 0x48, 0x00]))
    assert spot == PulseOximetry(97.0, 72.0)
    full = bytes([0x0F, 0x61, 0x00, 0x48, 0x00]) + STAMP + bytes(2 + 3 + 2)
    assert plx_spot_check(full).time == DateTime(2025, 12, 6, 15, 4, 30)
    cont = plx_continuous(bytes([0x1F, 0x60, 0x00, 0x4B, 0x00]) + bytes(4 + 4 + 2 + 3 + 2))
    assert cont == PulseOximetry(96.0, 75.0)
    assert vitals_fields(cont) == {"spo2": 96.0, "hr": 75.0}
    assert vitals_fields(plx_spot_check(bytes([0x00, 0x2C, 0x01, 0x48, 0x00]))) == {"hr": 72.0}


@pytest.mark.parametrize(
    "parser, data",
    [
        (heart_rate, b""),
        (heart_rate, bytes([0x01, 0x48])),  # uint16 rate cut short
        (heart_rate, bytes([0x10, 72])),  # RR flag, no interval
        (heart_rate, bytes([0x10, 72, 0x00])),  # half an interval
        (heart_rate, bytes([0x16, 72]) + bytes(600)),  # longer than any attribute
        (blood_pressure, bytes([0x02, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00, 0xE9])),
        (temperature, bytes([0x00, 0x6E, 0x01])),
        (temperature, bytes([0x04, 0x6E, 0x01, 0x00, 0xFF])),  # type flag, no type
        (plx_spot_check, bytes([0x04, 0x61, 0x00, 0x48, 0x00, 0x00])),
        (plx_continuous, bytes([0x01, 0x61, 0x00, 0x48, 0x00, 0x00, 0x00])),
    ],
)
def test_truncated_or_oversized_values_are_refused(parser, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GattError):
        parser(data)


def test_random_bytes_never_crash_nor_leave_the_contracts_ranges() -> None:
    rng = random.Random(25)
    for uuid, parser in PARSERS.items():
        for _ in range(3000):
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
            try:
                m = parser(data)
            except GattError:
                continue
            for name, value in vitals_fields(m).items():
                assert value == value and abs(value) < 1e6, (hex(uuid), data.hex(), name)
