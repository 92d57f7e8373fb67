"""Per-wearable vital-sign detection on the hub, with the pendant's motion as context. Pure.

The detectors run on the wearables' timestamps, mapped onto the hub's clock by each device's
`DeviceClock` (a wrong clock is re-stamped, never allowed to move a detector's time past the
hub's clock + tolerance); ``tick`` (the hub's clock) lets a silent wearable be noticed. A
detector whose stream went back restarts its timeline. Each such event is one `Notice` for
the shell to log (`take_notices`). The elder's care plan says whether SpO2 scale 2 applies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from carehub.mqtt_contract import (
    CLOCK_AHEAD_TOLERANCE_MS,
    CLOCK_BEHIND_TOLERANCE_MS,
    ImuFrame,
    VitalsReading,
    finite_or_none,
)
from edge.vital_signs import VitalsDetector, VitalsEvent, VitalsSample, VitalsSettings
from gateway.device_clock import DeviceClock, Notice


@dataclass
class _Wearable:
    detector: VitalsDetector
    clock: DeviceClock


class VitalsWatch:
    def __init__(
        self, spo2_scale2: bool = False, device_clock: Callable[[], DeviceClock] = DeviceClock
    ) -> None:
        """`device_clock` makes each wearable's clock guard (the contract's tolerances)."""
        self._device_clock = device_clock
        self._settings = VitalsSettings(spo2_scale2=spo2_scale2)
        self._wearables: dict[str, _Wearable] = {}
        self._notices: deque[Notice] = deque(maxlen=256)
        self._now_ms: int | None = None  # the hub's clock at the last push or tick

    def set_care_plan(
        self,
        spo2_scale2: bool,
        *,
        on_oxygen: bool = False,
        channels: Iterable[str] | None = None,
    ) -> None:
        """The elder's NEWS2 scale and oxygen, and the channels the wearable reports (None =
        whatever arrives); a change restarts the detectors with the new settings."""
        settings = VitalsSettings(
            spo2_scale2=spo2_scale2,
            on_supplemental_oxygen=on_oxygen,
            channels=None if channels is None else frozenset(channels),
        )
        if settings != self._settings:
            self._settings = settings
            self._wearables.clear()

    def take_notices(self) -> list[Notice]:
        """The notices since the last call, oldest first, for the shell to log (at most the
        last 256 are kept if nobody asks)."""
        out = list(self._notices)
        self._notices.clear()
        return out

    def push(
        self, device_id: str, reading: VitalsReading, now_ms: int | None = None
    ) -> list[VitalsEvent]:
        """Alarms/faults started or ended by this reading; `now_ms` is the hub's clock.

        Without `now_ms` (callers from before the clock guard) the reading's own time is
        trusted, as it was: pass the hub's clock."""
        w = self._wearables.get(device_id)
        if w is None:
            w = self._wearables[device_id] = _Wearable(
                VitalsDetector(self._settings), self._device_clock()
            )
        ts = reading.ts
        if now_ms is not None:
            self._now_ms = now_ms
            stamp = w.clock.stamp(reading.ts, now_ms)
            ts = stamp.hub_ms
            if stamp.change is not None:
                text = f"wearable {stamp.change.value} (offset {stamp.offset_ms} ms)"
                self._notices.append(Notice(device_id, text))
            if stamp.drop:
                return []
        restarts = w.detector.restarts
        events = w.detector.push(
            VitalsSample(
                ts_ms=ts,
                hr=finite_or_none(reading.hr),
                spo2=finite_or_none(reading.spo2),
                rr=finite_or_none(reading.rr),
                temp=finite_or_none(reading.temp),
                sbp=finite_or_none(reading.sbp),
                motion=finite_or_none(reading.motion),
                quality=finite_or_none(reading.quality),
            )
        )
        if w.detector.restarts != restarts:
            text = "wearable stream went back in time; vital-signs detector restarted"
            self._notices.append(Notice(device_id, text))
        return events

    def push_imu(self, frame: ImuFrame, now_ms: int | None = None) -> None:
        """The elder is moving: wrist PPG readings around now are not trusted. A frame stamped
        outside the clock tolerance of the hub's `now_ms` (default: the last time seen) counts
        as motion now."""
        if not self._wearables or not frame.acc:
            return
        now = self._now_ms if now_ms is None else now_ms
        ts = frame.t0
        if now is not None and not (
            now - CLOCK_BEHIND_TOLERANCE_MS <= ts <= now + CLOCK_AHEAD_TOLERANCE_MS
        ):
            ts = now
        acc = np.asarray(frame.acc, dtype=float)
        dynamic = np.abs(np.linalg.norm(acc, axis=1) - 1.0)
        motion = float(np.sqrt(np.mean(dynamic**2)))
        if np.isfinite(motion):
            for w in self._wearables.values():
                w.detector.push_motion(ts, min(motion, 1.0))

    def tick(self, now_ms: int) -> list[tuple[str, VitalsEvent]]:
        self._now_ms = now_ms
        return [(d, e) for d, w in self._wearables.items() for e in w.detector.tick(now_ms)]

    def forget(self, device_id: str) -> None:
        self._wearables.pop(device_id, None)
