"""The installer's self-test as plain decisions: which checks a home needs (from its
paired devices), what each message seen on the broker proves, and the report. The shell
(`gateway.selftest_session`) only feeds it messages and the clock.

Per device: a heartbeat (``status``) with battery and signal good enough; then per kind:
a button is pressed and its test alarm is taken by the server (the ack goes past
``received``), a pendant feels an impact (dropped onto a cushion), a wearable is worn (a
reading with a pulse and a good signal). A Zigbee device (through Zigbee2MQTT, no
``status`` channel and no dBm) is heard and reports its battery in its state; a Zigbee
button is pressed and its test alarm taken by the server, a radar sees someone, a motion
sensor sees motion, a door sensor sees its door opened. A Bluetooth health device (through
the Bluetooth bridge: no ``status``) is proven by one measurement of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carehub.api_contract import SelftestCheck, SelftestReport
from carehub.mqtt_contract import (
    Ack,
    AckState,
    ButtonEvent,
    DeviceStatus,
    ImuFrame,
    VitalsReading,
)
from gateway.zigbee.bridge import BridgeEvent as ZigbeeEvent
from gateway.zigbee.bridge import Heard
from gateway.zigbee.models import MAINS_KINDS
from gateway.zigbee.translate import Activity, BatteryLevel, Call

IMPACT_G = 2.5
"""An IMU sample this strong (|acc|, g) is the drop: walking stays under 2 g."""
SIGNAL_MIN_DBM = -85.0
"""Weaker than this and the device will drop out in parts of the home: move the hub."""
WORN_QUALITY = 0.5
TAKEN_STATES = frozenset({AckState.DISPATCHED, AckState.ACCEPTED, AckState.RESOLVED})
"""Acks that say the server has the alarm (``received`` only says the hub has it)."""

TEST_CALL = "test call answered by the centre"
MEASURED = "measurement taken"
BLUETOOTH_INSTRUCTION = "take a measurement with the Bluetooth device {id}"

INSTRUCTIONS = {
    "button": "press the call button {id}",
    "pendant": "drop the fall pendant {id} onto a cushion",
    "wearable": "put the wearable {id} on the wrist",
    "fall_radar": "walk in front of the fall radar {id}",
    "motion_sensor": "walk past the motion sensor {id}",
    "door_sensor": "open the door of the door sensor {id}",
}
ACTION_CHECKS = {
    "button": "button pressed",
    "pendant": "impact felt",
    "wearable": "worn",
    "fall_radar": "presence seen",
    "motion_sensor": "motion seen",
    "door_sensor": "door opened",
}
ZIGBEE_TRIPS = {"presence": "presence seen", "motion": "motion seen", "door_opened": "door opened"}


NOT_SEEN = "not seen"


@dataclass
class _Check:
    name: str
    device_id: str | None
    passed: bool = False
    detail: str = NOT_SEEN


@dataclass
class SelftestCore:
    devices: dict[str, str]
    """Paired devices: id → kind."""
    battery_low_pct: float
    started_at_ms: int
    checks: list[_Check] = field(default_factory=list)
    press_seqs: dict[str, int] = field(default_factory=dict)
    press_acks: dict[str, str] = field(default_factory=dict)
    """The latest ack state the hub sent each button for its test press."""
    test_alarm_id: str | None = None
    zigbee: frozenset[str] = frozenset()
    """The devices among `devices` that come through Zigbee2MQTT (no signal check)."""
    zigbee_pressed: set[str] = field(default_factory=set)
    bluetooth: frozenset[str] = frozenset()
    """The devices among `devices` paired over Bluetooth (their readings come through the
    Bluetooth bridge: no heartbeat, battery nor signal; a measurement proves them)."""
    voice: bool = False
    """The hub is set up for voice calls: the test alarm's call must be answered by the
    centre (the hub tells the home's devices `talking`; docs/voice.md)."""

    def __post_init__(self) -> None:
        for device_id, kind in sorted(self.devices.items()):
            if device_id in self.bluetooth:
                self.checks.append(_Check(MEASURED, device_id))
                continue
            for name in ("heartbeat", "battery", "signal"):
                zigbee = device_id in self.zigbee
                if zigbee and (name == "signal" or (name == "battery" and kind in MAINS_KINDS)):
                    continue  # Zigbee2MQTT reports no dBm; a radar has no battery
                self.checks.append(_Check(name, device_id))
            if kind in ACTION_CHECKS:
                self.checks.append(_Check(ACTION_CHECKS[kind], device_id))
            if kind == "button":
                self.checks.append(_Check("test alarm taken by the server", device_id))
        if not any(k == "button" for k in self.devices.values()):
            self.checks.append(_Check("test alarm taken by the server", None, detail="no button"))
        if self.voice:
            self.checks.append(_Check(TEST_CALL, None, detail="not answered"))

    def _pass(self, name: str, device_id: str, detail: str, passed: bool = True) -> None:
        for c in self.checks:
            if c.name == name and c.device_id == device_id and not c.passed:
                c.passed, c.detail = passed, detail.replace("\x00", "")[:200]

    def seen(self, device_id: str, message: object) -> None:
        """A message of a paired device (parsed by the contract)."""
        if device_id not in self.devices:
            return
        if isinstance(message, DeviceStatus):
            self._pass("heartbeat", device_id, f"firmware {message.firmware or '?'}")
            if message.battery is not None:
                ok = message.battery >= self.battery_low_pct
                self._pass("battery", device_id, f"{message.battery:.0f} %", ok)
            if message.rssi is not None:
                ok = message.rssi >= SIGNAL_MIN_DBM
                self._pass("signal", device_id, f"{message.rssi:.0f} dBm", ok)
        elif isinstance(message, ButtonEvent) and message.action == "press":
            if message.ts >= self.started_at_ms - 5000:  # not a retry of an old press
                self.press_seqs.setdefault(device_id, message.seq)
                self._pass("button pressed", device_id, f"seq {message.seq}")
        elif isinstance(message, ImuFrame):
            peak = max((x * x + y * y + z * z) ** 0.5 for x, y, z in message.acc)
            if peak >= IMPACT_G:
                self._pass("impact felt", device_id, f"{peak:.1f} g")
        elif isinstance(message, VitalsReading) and device_id in self.bluetooth:
            fields = ("hr", "spo2", "temp", "sbp")
            got = ", ".join(
                f"{name} {value:g}" for name in fields if (value := getattr(message, name))
            )
            self._pass(MEASURED, device_id, got or "a reading")
        elif isinstance(message, VitalsReading):
            if message.hr is not None and (message.quality or 0.0) >= WORN_QUALITY:
                self._pass("worn", device_id, f"pulse {message.hr:.0f}/min")

    def zigbee_seen(self, device_id: str, event: ZigbeeEvent) -> None:
        """What `gateway.zigbee.bridge.ZigbeeBridge` made of a Zigbee device's message."""
        if device_id not in self.devices or device_id not in self.zigbee:
            return
        if isinstance(event, Heard):
            self._pass("heartbeat", device_id, "heard through zigbee2mqtt")
        elif isinstance(event, BatteryLevel):
            ok = event.pct >= self.battery_low_pct
            self._pass("battery", device_id, f"{event.pct:.0f} %", ok)
        elif isinstance(event, Call):
            self.zigbee_pressed.add(device_id)
            self._pass("button pressed", device_id, f"action {event.action}")
        elif isinstance(event, Activity) and event.kind in ZIGBEE_TRIPS:
            self._pass(ZIGBEE_TRIPS[event.kind], device_id, event.kind)

    def acked(self, device_id: str, ack: Ack) -> None:
        """An ack the hub sent a device: the server has the test press's alarm once the
        ack for that press goes past ``received`` (a Zigbee button's press has no ``seq``:
        its alarm's acks have none either)."""
        if ack.state is AckState.TALKING and device_id in self.devices:
            for c in self.checks:
                if c.name == TEST_CALL and not c.passed:
                    c.passed, c.detail = True, f"talking (alarm {ack.alarm_id})"
            return
        seq = self.press_seqs.get(device_id)
        if device_id in self.zigbee_pressed and ack.seq is None:
            pass
        elif seq is None or ack.seq != seq:
            return
        self.press_acks[device_id] = ack.state.value
        if ack.state is AckState.NOT_DELIVERED:
            self._pass("test alarm taken by the server", device_id, "not delivered: refused", False)
            return
        if ack.state not in TAKEN_STATES:
            return
        self.test_alarm_id = self.test_alarm_id or ack.alarm_id
        self._pass("test alarm taken by the server", device_id, f"alarm {ack.alarm_id} {ack.state}")

    def missing(self) -> list[str]:
        """Checks not (yet) passed, as lines for the installer."""
        return [
            f"{c.device_id or 'home'}: {c.name} ({c.detail})" for c in self.checks if not c.passed
        ]

    def why(self, check: _Check) -> str:
        """A check's detail at the end, and for one never seen, what the installer can do."""
        if check.passed or check.detail != NOT_SEEN:
            return check.detail
        if check.name in ("heartbeat", "battery", "signal"):
            return "no status from the device: is it switched on, in range and paired?"
        if check.name == "button pressed":
            return "no press seen: press it during the test"
        if check.name == "impact felt":
            return f"no impact of {IMPACT_G} g seen: drop it onto a cushion"
        if check.name == "worn":
            return "no reading with a pulse and a good signal: put it on the wrist"
        if check.device_id is None or check.device_id not in self.press_seqs:
            return "no test press to send"
        state = self.press_acks.get(check.device_id)
        if state is None:
            return "no ack from the hub for the press: is `carehub hub` running?"
        return (
            f"the hub has the press ({state}) but the server did not take it: is the hub"
            " enrolled and the server reachable?"
        )

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def report(self, report_id: str, finished_at_ms: int) -> SelftestReport:
        return SelftestReport(
            report_id=report_id,
            started_at_ms=self.started_at_ms,
            finished_at_ms=finished_at_ms,
            passed=self.passed,
            test_alarm_id=self.test_alarm_id,
            checks=[
                SelftestCheck(
                    name=c.name, device_id=c.device_id, passed=c.passed, detail=self.why(c)
                )
                for c in self.checks
            ],
        )

    def checklist(self) -> list[str]:
        return [
            f"[{'PASS' if c.passed else 'FAIL'}] {c.device_id or 'home':<16} {c.name}: "
            + self.why(c)
            for c in self.checks
        ]
