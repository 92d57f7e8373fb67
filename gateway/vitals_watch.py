"""Per-wearable vital-sign detection on the hub, with the pendant's motion as context. Pure.

The detectors run on the wearables' own timestamps; ``tick`` (the hub's clock) only lets a
silent wearable be noticed. The elder's care plan says whether SpO2 scale 2 applies.
"""

from __future__ import annotations

import numpy as np

from carehub.mqtt_contract import ImuFrame, VitalsReading
from edge.vital_signs import VitalsDetector, VitalsEvent, VitalsSample, VitalsSettings


class VitalsWatch:
    def __init__(self, spo2_scale2: bool = False) -> None:
        self._settings = VitalsSettings(spo2_scale2=spo2_scale2)
        self._detectors: dict[str, VitalsDetector] = {}

    def set_care_plan(self, spo2_scale2: bool) -> None:
        if spo2_scale2 != self._settings.spo2_scale2:
            self._settings = VitalsSettings(spo2_scale2=spo2_scale2)
            self._detectors.clear()

    def push(self, device_id: str, reading: VitalsReading) -> list[VitalsEvent]:
        detector = self._detectors.get(device_id)
        if detector is None:
            detector = self._detectors[device_id] = VitalsDetector(self._settings)
        return detector.push(
            VitalsSample(
                ts_ms=reading.ts,
                hr=reading.hr,
                spo2=reading.spo2,
                rr=reading.rr,
                temp=reading.temp,
                sbp=reading.sbp,
                motion=reading.motion,
                quality=reading.quality,
            )
        )

    def push_imu(self, frame: ImuFrame) -> None:
        """The elder is moving: wrist PPG readings around now are not trusted."""
        if not self._detectors or not frame.acc:
            return
        acc = np.asarray(frame.acc, dtype=float)
        dynamic = np.abs(np.linalg.norm(acc, axis=1) - 1.0)
        motion = float(np.sqrt(np.mean(dynamic**2)))
        if np.isfinite(motion):
            for detector in self._detectors.values():
                detector.push_motion(frame.t0, min(motion, 1.0))

    def tick(self, now_ms: int) -> list[tuple[str, VitalsEvent]]:
        return [(d, e) for d, det in self._detectors.items() for e in det.tick(now_ms)]

    def forget(self, device_id: str) -> None:
        self._detectors.pop(device_id, None)
