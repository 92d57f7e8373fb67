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

    def push(self, device_id: str, frame: ImuFrame) -> list[FallEvent]:
        """Falls decided with this frame (usually none)."""
        state = self._devices.get(device_id)
        if state is None:
            state = _DeviceState(
                FrameOrderer(), FallDetector(FallSettings(sensitivity=self._sensitivity))
            )
            self._devices[device_id] = state
        acc = np.asarray(frame.acc, dtype=float)
        gyr = None if frame.gyr is None else np.asarray(frame.gyr, dtype=float)
        events: list[FallEvent] = []
        for f in state.orderer.push(Frame(float(frame.t0), frame.hz, acc, gyr)):
            events += state.detector.push(int(f.t0_ms), f.hz, f.acc, f.gyr)
        return events

    def forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)
