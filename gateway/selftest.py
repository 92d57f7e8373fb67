"""The installer's self-test as plain decisions: which checks a home needs (from its
paired devices), what each message seen on the broker proves, and the report. The shell
(`gateway.selftest_session`) only feeds it messages and the clock.

Per device: a heartbeat (``status``) with battery and signal good enough; then per kind:
a button is pressed and its test alarm is taken by the server (the ack goes past
``received``), a pendant feels an impact (dropped onto a cushion), a wearable is worn (a
reading with a pulse and a good signal).
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

IMPACT_G = 2.5
"""An IMU sample this strong (|acc|, g) is the drop: walking stays under 2 g."""
SIGNAL_MIN_DBM = -85.0
"""Weaker than this and the device will drop out in parts of the home: move the hub."""
WORN_QUALITY = 0.5
TAKEN_STATES = frozenset({AckState.DISPATCHED, AckState.ACCEPTED, AckState.RESOLVED})
"""Acks that say the server has the alarm (``received`` only says the hub has it)."""

TEST_CALL = "test call answered by the centre"

INSTRUCTIONS = {
    "button": "press the call button {id}",
    "pendant": "drop the fall pendant {id} onto a cushion",
    "wearable": "put the wearable {id} on the wrist",
}


@dataclass
class _Check:
    name: str
    device_id: str | None
    passed: bool = False
    detail: str = "not seen"


@dataclass
class SelftestCore:
    devices: dict[str, str]
    """Paired devices: id → kind."""
    battery_low_pct: float
    started_at_ms: int
    checks: list[_Check] = field(default_factory=list)
    press_seqs: dict[str, int] = field(default_factory=dict)
    test_alarm_id: str | None = None
    voice: bool = False
    """The hub is set up for voice calls: the test alarm's call must be answered by the
    centre (the hub tells the home's devices `talking`; docs/voice.md)."""

    def __post_init__(self) -> None:
        for device_id, kind in sorted(self.devices.items()):
            for name in ("heartbeat", "battery", "signal"):
                self.checks.append(_Check(name, device_id))
            action = {"button": "button pressed", "pendant": "impact felt", "wearable": "worn"}
            if kind in action:
                self.checks.append(_Check(action[kind], device_id))
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
        elif isinstance(message, VitalsReading):
            if message.hr is not None and (message.quality or 0.0) >= WORN_QUALITY:
                self._pass("worn", device_id, f"pulse {message.hr:.0f}/min")

    def acked(self, device_id: str, ack: Ack) -> None:
        """An ack the hub sent a device: the server has the test press's alarm once the
        ack for that press goes past ``received``."""
        if ack.state is AckState.TALKING and device_id in self.devices:
            for c in self.checks:
                if c.name == TEST_CALL and not c.passed:
                    c.passed, c.detail = True, f"talking (alarm {ack.alarm_id})"
            return
        seq = self.press_seqs.get(device_id)
        if seq is None or ack.seq != seq or ack.state not in TAKEN_STATES:
            return
        self.test_alarm_id = self.test_alarm_id or ack.alarm_id
        self._pass("test alarm taken by the server", device_id, f"alarm {ack.alarm_id} {ack.state}")

    def missing(self) -> list[str]:
        """Checks not (yet) passed, as lines for the installer."""
        return [
            f"{c.device_id or 'home'}: {c.name} ({c.detail})" for c in self.checks if not c.passed
        ]

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
                SelftestCheck(name=c.name, device_id=c.device_id, passed=c.passed, detail=c.detail)
                for c in self.checks
            ],
        )

    def checklist(self) -> list[str]:
        return [
            f"[{'PASS' if c.passed else 'FAIL'}] {c.device_id or 'home':<16} {c.name}: {c.detail}"
            for c in self.checks
        ]
