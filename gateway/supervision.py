"""Device supervision: which devices are offline or low on battery. Pure, clock passed in.

A device is alive while it keeps talking: any message counts, ``status`` heartbeats are
the floor. Silence beyond ``offline_after_ms``, or its last will (``availability`` =
``offline``), raises ``device_offline``; a battery under ``battery_low_pct`` raises
``battery_low``, cleared only above ``battery_low_pct + battery_hysteresis_pct`` so a
battery hovering at the threshold does not flap. Faults are reported on change only, and
clear themselves when the device returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from carehub.api_contract import DeviceFault

Fault = DeviceFault
"""The faults a hub reports (defined once, in the hub ↔ server contract)."""


@dataclass(frozen=True)
class FaultChange:
    device_id: str
    fault: Fault
    active: bool
    detail: str = ""


@dataclass
class _Device:
    last_seen_ms: int
    active: set[Fault] = field(default_factory=set)


class Supervisor:
    def __init__(
        self,
        offline_after_ms: int,
        battery_low_pct: float = 20.0,
        battery_hysteresis_pct: float = 5.0,
    ) -> None:
        self.offline_after_ms = offline_after_ms
        self.battery_low_pct = battery_low_pct
        self.battery_hysteresis_pct = battery_hysteresis_pct
        self._devices: dict[str, _Device] = {}
        self._silence_ms: dict[str, int] = {}

    def expect(self, device_ids: Iterable[str], now_ms: int) -> None:
        """The paired devices: one never heard from goes offline after the interval too."""
        for device_id in device_ids:
            self._devices.setdefault(device_id, _Device(now_ms))

    def by_availability(self, device_ids: Iterable[str], silence_ms: int) -> None:
        """Devices whose presence another system supervises (Zigbee2MQTT's availability, for
        sensors that report hourly): offline by `last_will`, or after `silence_ms` of
        silence (the other system may be dead too) instead of ``offline_after_ms``."""
        for device_id in device_ids:
            self._silence_ms[device_id] = silence_ms

    def restore(self, device_id: str, fault: Fault) -> None:
        """A fault that was active before a restart (so it is not reported twice)."""
        self._devices.setdefault(device_id, _Device(0)).active.add(fault)

    def active(self) -> set[tuple[str, Fault]]:
        return {(d, f) for d, dev in self._devices.items() for f in dev.active}

    def online(self) -> int:
        return sum(1 for d in self._devices.values() if "device_offline" not in d.active)

    def seen(self, device_id: str, now_ms: int) -> list[FaultChange]:
        """Any message from the device."""
        dev = self._devices.setdefault(device_id, _Device(now_ms))
        dev.last_seen_ms = max(dev.last_seen_ms, now_ms)
        return self._set(device_id, dev, "device_offline", False, "back")

    def last_will(
        self, device_id: str, now_ms: int, detail: str = "last will: offline"
    ) -> list[FaultChange]:
        """The broker published the device's ``offline`` will (or the device said so)."""
        dev = self._devices.setdefault(device_id, _Device(now_ms))
        return self._set(device_id, dev, "device_offline", True, detail)

    def battery(self, device_id: str, pct: float) -> list[FaultChange]:
        dev = self._devices[device_id]
        if pct < self.battery_low_pct:
            return self._set(device_id, dev, "battery_low", True, f"battery {pct:.0f} %")
        if pct >= self.battery_low_pct + self.battery_hysteresis_pct:
            return self._set(device_id, dev, "battery_low", False, f"battery {pct:.0f} %")
        return []

    def worn(self, device_id: str, worn: bool, detail: str) -> list[FaultChange]:
        """From the vitals detector: the wearable is (not) on the elder."""
        dev = self._devices.setdefault(device_id, _Device(0))
        return self._set(device_id, dev, "sensor_not_worn", not worn, detail)

    def tick(self, now_ms: int) -> list[FaultChange]:
        changes: list[FaultChange] = []
        for device_id, dev in self._devices.items():
            silent_ms = now_ms - dev.last_seen_ms
            if silent_ms > self._silence_ms.get(device_id, self.offline_after_ms):
                changes += self._set(
                    device_id, dev, "device_offline", True, f"silent for {silent_ms / 1000:.0f} s"
                )
        return changes

    def forget(self, device_id: str) -> None:
        """Unpaired: no more faults for it."""
        self._devices.pop(device_id, None)
        self._silence_ms.pop(device_id, None)

    @staticmethod
    def _set(
        device_id: str, dev: _Device, fault: Fault, active: bool, detail: str
    ) -> list[FaultChange]:
        if (fault in dev.active) == active:
            return []
        (dev.active.add if active else dev.active.discard)(fault)
        return [FaultChange(device_id, fault, active, detail)]
