"""A wearable: vitals about once a second and a status heartbeat (battery, firmware, RSSI)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from carehub.mqtt_contract import Channel, DeviceStatus, VitalsReading
from firmware_sim.device import SimDevice

FIRMWARE = "sim-wearable/0.1"
VitalsSource = Callable[[float], dict[str, Any] | None]
"""Seconds since start → reading fields (hr, spo2, …) or None for 'nothing measured'."""


def steady_elder(_t_s: float) -> dict[str, Any]:
    return {"hr": 72.0, "spo2": 97.0, "rr": 16.0, "temp": 36.6, "motion": 0.02, "quality": 0.95}


class Wearable(SimDevice):
    def __init__(
        self,
        *args: Any,
        source: VitalsSource = steady_elder,
        period_s: float = 1.0,
        status_every_s: float = 30.0,
        battery: float = 90.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
        self.period_s = period_s
        self.status_every_s = status_every_s
        self.battery = battery
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"{self.device_id}-vitals"
        )

    def start(self) -> Wearable:
        super().start()
        self._thread.start()
        return self

    def send_status(self) -> None:
        self.publish(
            Channel.STATUS,
            DeviceStatus(
                v=1,
                seq=self.next_seq(),
                ts=time.time_ns() // 1_000_000,
                battery=self.battery,
                firmware=FIRMWARE,
                rssi=-60.0,
            ),
        )

    def _run(self) -> None:
        start = time.monotonic()
        next_status = start
        while not self._stop.wait(self.period_s):
            now = time.monotonic()
            fields = self.source(now - start)
            if fields is not None and self.connected.is_set():
                self.publish(
                    Channel.VITALS,
                    VitalsReading(
                        v=1, seq=self.next_seq(), ts=time.time_ns() // 1_000_000, **fields
                    ),
                )
            if now >= next_status and self.connected.is_set():
                self.send_status()
                next_status = now + self.status_every_s
