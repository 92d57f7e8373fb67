"""Issue 25, acceptance 3 (transport): the Bluetooth bridge's pure adapter, and every
measurement path end to end — an emulated Heart Rate + Pulse Oximeter (notified) and
Health Thermometer (indicated) peripheral, and an emulated blood-pressure monitor with a
spot-check oximeter (both indicated), over bumble's virtual link (real HCI, L2CAP, ATT and
GATT between two emulated controllers); the hub's central subscribes; the readings arrive
on a real Mosquitto as the device's contract ``vitals`` messages, which the hub's intake
parses and its vital-sign watch takes; and the same into a real hub and server, as an
alarm. What this does not exercise (bleak, BlueZ, a radio) is listed in docs/devices.md,
Bluetooth."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiomqtt
import pytest

from carehub.mqtt_contract import Topics, VitalsReading, parse_payload
from edge.vital_signs import VitalsEvent
from gateway.ble.bridge import BleDevice, MqttPublisher, run_bridge
from gateway.ble.gatt import (
    BLOOD_PRESSURE_MEASUREMENT,
    HEART_RATE_MEASUREMENT,
    PLX_CONTINUOUS_MEASUREMENT,
    PLX_SPOT_CHECK_MEASUREMENT,
    TEMPERATURE_MEASUREMENT,
)
from gateway.ble.transport import Notification, NotificationQueue, sig_uuid, uuid16
from gateway.ble.vitals import BleVitals, Dropped, Ignored, Reading
from gateway.vitals_watch import VitalsWatch
from harness.broker import Mosquitto
from tests.conftest import Deployment

WEARABLE = "C0:FF:EE:00:00:01"
HUB = "C0:FF:EE:00:00:AA"
STRANGER = "C0:FF:EE:00:00:02"

# The service specifications' layouts: flags, then the fields the flags announce.
HR_72_CONTACT = bytes([0x06, 72])  # uint8 bpm, contact supported and detected
HR_NO_CONTACT = bytes([0x04, 80])  # contact supported, not detected
PLX_97_71 = bytes([0x00, 97, 0x00, 71, 0x00])  # SFLOAT 97 %, 71 bpm, no options
TEMP_36_6 = bytes([0x00, 0x6E, 0x01, 0x00, 0xFF])  # FLOAT 366 x 10^-1 °C, no options


def note(characteristic: int, value: bytes, address: str = WEARABLE) -> Notification:
    return Notification(address, characteristic, value)


# ------------------------------------------------------------------- the pure adapter


def test_sig_uuids_round_trip_and_others_have_no_number() -> None:
    assert uuid16(sig_uuid(0x2A37)) == 0x2A37
    assert uuid16("00002A5F-0000-1000-8000-00805F9B34FB") == 0x2A5F
    assert uuid16("6e400003-b5a3-f393-e0a9-e50e24dcca9e") is None  # a vendor's UART
    assert uuid16("0000zzzz-0000-1000-8000-00805f9b34fb") is None
    assert uuid16("") is None


def test_each_measurement_becomes_one_reading_of_its_fields_with_its_own_seq() -> None:
    core = BleVitals({WEARABLE.lower(): "wear-ble"})
    hr = core.reading(note(HEART_RATE_MEASUREMENT, HR_72_CONTACT), 1_000)
    plx = core.reading(note(PLX_CONTINUOUS_MEASUREMENT, PLX_97_71), 2_000)
    assert hr == Reading("wear-ble", VitalsReading(v=1, seq=1, ts=1_000, hr=72.0))
    assert plx == Reading("wear-ble", VitalsReading(v=1, seq=2, ts=2_000, spo2=97.0, hr=71.0))


@pytest.mark.parametrize(
    ("notification", "why"),
    [
        (note(HEART_RATE_MEASUREMENT, HR_72_CONTACT, STRANGER), Ignored.UNKNOWN_DEVICE),
        (note(0x2A19, b"\x50"), Ignored.UNSUPPORTED),  # battery level
        (note(HEART_RATE_MEASUREMENT, b""), Ignored.MALFORMED),
        (note(PLX_CONTINUOUS_MEASUREMENT, bytes([0x01, 97, 0, 71, 0])), Ignored.MALFORMED),
        (note(HEART_RATE_MEASUREMENT, HR_NO_CONTACT), Ignored.NO_VALUE),
        (note(PLX_CONTINUOUS_MEASUREMENT, bytes([0, 0xFF, 0x07, 0xFF, 0x07])), Ignored.NO_VALUE),
        (note(TEMPERATURE_MEASUREMENT, bytes([0, 0x10, 0x27, 0, 0])), Ignored.NO_VALUE),  # 10000
    ],
)
def test_what_is_not_a_usable_reading_is_dropped_with_its_reason(
    notification: Notification, why: Ignored
) -> None:
    core = BleVitals({WEARABLE: "wear-ble"})
    outcome = core.reading(notification, 1_000)
    assert isinstance(outcome, Dropped) and outcome.why is why
    ok = core.reading(note(HEART_RATE_MEASUREMENT, HR_72_CONTACT), 2_000)
    assert isinstance(ok, Reading) and ok.reading.seq == 1  # a drop spends no seq


async def test_a_full_queue_drops_the_newest_and_counts_them() -> None:
    queue = NotificationQueue(size=2)
    for bpm in (60, 61, 62):
        queue.put(WEARABLE.lower(), HEART_RATE_MEASUREMENT, bytes([0, bpm]))
    assert queue.dropped == 1
    assert (await queue.get()) == note(HEART_RATE_MEASUREMENT, bytes([0, 60]))


# ------------------------------------------- end to end through an emulated peripheral


class StepClock:
    """One second of hub time per reading: minutes of wearable time in a moment."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.t = start_ms

    def now_ms(self) -> int:
        self.t += 1_000
        return self.t


class Hub:
    """The hub's intake of device messages, as `gateway.hub` runs it for a wearable: the
    contract's topic and payload parsing, then the vital-sign watch on the hub's clock."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.topics = Topics("carehub")
        self.watch = VitalsWatch()
        self.readings: list[tuple[str, VitalsReading]] = []
        self.events: list[VitalsEvent] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.broker.port, identifier="hub") as client:
            await client.subscribe("carehub/+/vitals", qos=1)
            self.subscribed.set()
            async for message in client.messages:
                parsed = self.topics.parse(str(message.topic))
                reading = parse_payload(parsed.channel, bytes(message.payload))  # type: ignore[arg-type]
                assert isinstance(reading, VitalsReading)
                self.readings.append((parsed.device_id, reading))
                self.events += self.watch.push(parsed.device_id, reading, reading.ts)


@pytest.mark.integration
async def test_heart_rate_spo2_and_temperature_from_an_emulated_peripheral_reach_the_vitals_watch(
    mosquitto: Mosquitto,
) -> None:
    emulated = pytest.importorskip("tests.ble_emulated")
    link = emulated.LocalLink()
    wearable = emulated.EmulatedWearable(link, WEARABLE)
    stranger = emulated.EmulatedWearable(link, STRANGER)
    await wearable.start()
    await stranger.start()
    source = emulated.BumbleSource(link, HUB, [WEARABLE, STRANGER])
    await source.start()
    measurements = {HEART_RATE_MEASUREMENT, PLX_CONTINUOUS_MEASUREMENT, TEMPERATURE_MEASUREMENT}
    assert source.subscribed == {(a, c) for a in (WEARABLE, STRANGER) for c in measurements}

    hub = Hub(mosquitto)
    hub_task = asyncio.create_task(hub.run())
    async with asyncio.timeout(10):
        await hub.subscribed.wait()
    devices = [BleDevice(WEARABLE, "wear-ble")]  # the stranger is in range, not paired
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "carehub", devices)
    bridge = asyncio.create_task(run_bridge(source, devices, publisher, StepClock()))
    try:
        await stranger.notify(stranger.heart_rate, HR_72_CONTACT)
        await wearable.notify(wearable.heart_rate, bytes([0x16, 72, 0x00, 0x04]))  # + RR
        await wearable.notify(wearable.heart_rate, HR_NO_CONTACT)
        await wearable.notify(wearable.plx, bytes([0, 0xFF, 0x07, 0xFF, 0x07]))  # NaN, NaN
        await wearable.notify(wearable.heart_rate, b"\x10\x48\x00")  # RR truncated
        await wearable.notify(wearable.plx, PLX_97_71)
        await wearable.indicate(wearable.temperature, TEMP_36_6)
        await emulated.until(lambda: len(hub.readings) >= 3)
        ts = [r.ts for _, r in hub.readings]
        assert hub.readings == [
            ("wear-ble", VitalsReading(v=1, seq=1, ts=ts[0], hr=72.0)),
            ("wear-ble", VitalsReading(v=1, seq=2, ts=ts[1], spo2=97.0, hr=71.0)),
            ("wear-ble", VitalsReading(v=1, seq=3, ts=ts[2], temp=36.6)),
        ]
        # Three minutes (of the step clock) of an SpO2 of 83-85 % with a pulse of 116-120:
        # the detector's critical persistence is 90 s (a value that never changes is a
        # flat line, not a measurement, hence the variation).
        for i in range(180):
            await wearable.notify(wearable.plx, bytes([0, 83 + i % 3, 0, 116 + i % 5, 0]))
        await emulated.until(lambda: len(hub.readings) >= 183)
    finally:
        bridge.cancel()
        hub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge
        await publisher.close()
    assert {d for d, _ in hub.readings} == {"wear-ble"}
    alarms = [e for e in hub.events if e.kind == "alarm"]
    assert [a.severity for a in alarms] == ["critical"], hub.events
    assert alarms[0].scores["spo2"] == 3


MONITOR = "C0:FF:EE:00:00:10"
DATE_TIME = bytes([0xEA, 0x07, 12, 6, 9, 30, 0])  # 2026-12-06 09:30:00, the device's time
BP_120_80_PULSE_72 = bytes([0x06, 120, 0, 80, 0, 93, 0]) + DATE_TIME + bytes([72, 0])  # mmHg
BP_KPA_16_0 = bytes([0x01, 0xA0, 0xF0, 0x6B, 0xF0, 0x7C, 0xF0])  # 16.0 / 10.7 / 12.4 kPa
BP_NAN_SYSTOLIC = bytes([0x00, 0xFF, 0x07, 80, 0, 93, 0])  # NaN: no systolic, nothing to use
SPOT_98_68 = bytes([0x01, 98, 0, 68, 0]) + DATE_TIME  # with its time stamp
SPOT_95_75_ALL = bytes([0x0E, 95, 0, 75, 0, 0, 0, 0, 0, 0, 0x10, 0])  # status, device, PAI
SPOT_SHORT = bytes([0x01, 98, 0, 68, 0, 0xEA, 0x07])  # time stamp cut short


@pytest.mark.integration
async def test_blood_pressure_and_plx_spot_check_from_an_emulated_monitor_reach_the_vitals_watch(
    mosquitto: Mosquitto,
) -> None:
    """The other two paths: a blood-pressure monitor with a spot-check oximeter indicates
    Blood Pressure (0x2A35, in mmHg with a time stamp and pulse, and in kPa) and PLX
    Spot-Check (0x2A5E, with a time stamp, and with every optional field) measurements
    through the emulated link; the hub's intake and vital-sign watch take each as one
    reading of its fields; a NaN systolic and a cut-short value are dropped on the way."""
    emulated = pytest.importorskip("tests.ble_emulated")
    link = emulated.LocalLink()
    monitor = emulated.EmulatedMonitor(link, MONITOR)
    await monitor.start()
    source = emulated.BumbleSource(link, HUB, [MONITOR])
    await source.start()
    assert source.subscribed == {
        (MONITOR, BLOOD_PRESSURE_MEASUREMENT),
        (MONITOR, PLX_SPOT_CHECK_MEASUREMENT),
    }
    hub = Hub(mosquitto)
    hub_task = asyncio.create_task(hub.run())
    async with asyncio.timeout(10):
        await hub.subscribed.wait()
    devices = [BleDevice(MONITOR, "bpm-ble")]
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "carehub", devices)
    bridge = asyncio.create_task(run_bridge(source, devices, publisher, StepClock()))
    try:
        for characteristic, value in (
            (monitor.blood_pressure, BP_NAN_SYSTOLIC),
            (monitor.blood_pressure, BP_120_80_PULSE_72),
            (monitor.spot_check, SPOT_SHORT),
            (monitor.spot_check, SPOT_98_68),
            (monitor.blood_pressure, BP_KPA_16_0),
            (monitor.spot_check, SPOT_95_75_ALL),
        ):
            await monitor.indicate(characteristic, value)  # confirmed by the hub's central
        await emulated.until(lambda: len(hub.readings) >= 4)
    finally:
        bridge.cancel()
        hub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge
        await publisher.close()
    ts = [r.ts for _, r in hub.readings]
    assert hub.readings == [
        ("bpm-ble", VitalsReading(v=1, seq=1, ts=ts[0], sbp=120.0, hr=72.0)),
        ("bpm-ble", VitalsReading(v=1, seq=2, ts=ts[1], spo2=98.0, hr=68.0)),
        ("bpm-ble", VitalsReading(v=1, seq=3, ts=ts[2], sbp=120.0)),
        ("bpm-ble", VitalsReading(v=1, seq=4, ts=ts[3], spo2=95.0, hr=75.0)),
    ]
    assert [e.kind for e in hub.events if e.kind == "alarm"] == []  # normal values


@pytest.fixture
def hub_env() -> dict[str, str]:
    """The step clock runs 30x fast: the hub's device-clock guard must tolerate it, as in
    tests/test_e2e_vitals.py."""
    return {"CAREHUB_DEVICE_CLOCK_TOLERANCE_S": "86400"}


@pytest.mark.integration
async def test_low_spo2_from_an_emulated_oximeter_is_one_critical_alarm_at_the_server(
    deployment: Deployment,
) -> None:
    """The same path into the real hub process, on to the server."""
    d = deployment
    emulated = pytest.importorskip("tests.ble_emulated")
    link = emulated.LocalLink()
    wearable = emulated.EmulatedWearable(link, WEARABLE)
    await wearable.start()
    source = emulated.BumbleSource(link, HUB, [WEARABLE])
    await source.start()
    devices = [BleDevice(WEARABLE, "wear-1")]  # the deployment's wearable
    publisher = MqttPublisher("127.0.0.1", d.broker.port, "carehub", devices)
    clock = StepClock(time.time_ns() // 1_000_000)
    bridge = asyncio.create_task(run_bridge(source, devices, publisher, clock))
    alarms: list[dict] = []
    try:
        for i in range(600):  # 30 readings a second: 30x the wearable's 1 Hz
            await wearable.notify(wearable.plx, bytes([0, 83 + i % 3, 0, 116 + i % 5, 0]))
            await asyncio.sleep(1 / 30)
            if i % 30 == 29:
                alarms = await asyncio.to_thread(
                    lambda: [a for a in d.alarms() if a["kind"] == "vitals"]
                )
                if alarms:
                    break
    finally:
        bridge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge
        await publisher.close()
    assert len(alarms) == 1, d.hub.log_tail()
    assert alarms[0]["severity"] == "critical" and alarms[0]["device_id"] == "wear-1"
    details = await asyncio.to_thread(d.alarm, alarms[0]["id"])
    assert details["details"]["scores"]["spo2"] == 3, details


@pytest.mark.integration
async def test_the_publisher_reconnects_after_the_broker_restarts(mosquitto: Mosquitto) -> None:
    hub = Hub(mosquitto)
    device = BleDevice(WEARABLE, "wear-ble")
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "carehub", [device])
    clock = StepClock()

    async def publish_until_heard(count: int) -> None:
        async with asyncio.timeout(30):
            while len(hub.readings) < count:
                await publisher.publish("wear-ble", VitalsReading(v=1, seq=1, ts=clock.now_ms()))
                await asyncio.sleep(0.1)  # a wearable's next reading; the broker may be down

    try:
        for round_ in (1, 2):
            hub_task = asyncio.create_task(hub.run())
            async with asyncio.timeout(10):
                await hub.subscribed.wait()
            await publish_until_heard(round_)
            hub_task.cancel()
            hub.subscribed.clear()
            await asyncio.to_thread(mosquitto.restart)
    finally:
        await publisher.close()
