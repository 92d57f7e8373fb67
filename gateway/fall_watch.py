"""Per-device fall detection on the hub: orders each pendant's frames and runs its detector.

Pure (no I/O, no clock). The state lives in this object, not in the MQTT connection, so a
broker restart loses nothing; the elder's sensitivity comes from the care plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carehub.mqtt_contract import ImuFrame
from edge.fall_detection import FallDetector, FallEvent, FallSettings
from gateway.imu_order import Frame, FrameOrderer


@dataclass
class _DeviceState:
    orderer: FrameOrderer
    detector: FallDetector
    last_frame_ms: int = 0  # hub clock
    flushed: bool = False


class FallWatch:
    def __init__(self, sensitivity: float = 0.5) -> None:
        self._sensitivity = sensitivity
        self._devices: dict[str, _DeviceState] = {}

    @property
    def sensitivity(self) -> float:
        return self._sensitivity

    def set_sensitivity(self, sensitivity: float) -> None:
        """A new care plan: detectors restart with the new threshold (rare)."""
        if sensitivity != self._sensitivity:
            self._sensitivity = sensitivity
            self._devices.clear()

    def push(self, device_id: str, frame: ImuFrame, now_ms: int = 0) -> list[FallEvent]:
        """Falls decided with this frame (usually none); `now_ms` is the hub's clock."""
        state = self._devices.get(device_id)
        if state is None:
            state = _DeviceState(
                FrameOrderer(), FallDetector(FallSettings(sensitivity=self._sensitivity))
            )
            self._devices[device_id] = state
        state.last_frame_ms, state.flushed = now_ms, False
        acc = np.asarray(frame.acc, dtype=float)
        gyr = None if frame.gyr is None else np.asarray(frame.gyr, dtype=float)
        events: list[FallEvent] = []
        for f in state.orderer.push(Frame(float(frame.t0), frame.hz, acc, gyr)):
            events += state.detector.push(int(f.t0_ms), f.hz, f.acc, f.gyr)
        return events

    def stream_ended(self, device_id: str) -> list[FallEvent]:
        """The pendant went silent or offline right after an impact (a fall can break it or
        tear it off): decide what it was still confirming with the signal there is."""
        state = self._devices.get(device_id)
        if state is None or state.flushed:
            return []
        state.flushed = True
        return state.detector.flush()

    def silent(self, now_ms: int, after_ms: int) -> list[tuple[str, FallEvent]]:
        """`stream_ended` for every pendant silent for `after_ms` (hub clock)."""
        return [
            (device_id, event)
            for device_id, state in list(self._devices.items())
            if not state.flushed and now_ms - state.last_frame_ms > after_ms
            for event in self.stream_ended(device_id)
        ]

    def forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)
