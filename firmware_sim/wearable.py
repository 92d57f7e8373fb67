"""A wearable: vitals about once a second and a status heartbeat (battery, firmware, RSSI).

What it reports comes from a *source*: a function of the wearable's own time (s since
:meth:`Wearable.start`) returning the reading's fields (``hr``, ``spo2``, ``rr``, ``temp``,
``sbp``, ``motion``, ``quality``; any subset) or ``None`` for "nothing to send". The
seeded elder model of :mod:`firmware_sim.vitals_model` is one (:func:`from_model`); the
scenarios below are others.

``time_scale`` plays the source faster than real time: with ``time_scale=20`` one wall
second is 20 wearable seconds, a reading goes out every ``period_s / 20`` wall seconds, and
its ``ts`` is ``start wall time + wearable time`` — so a detector that works on the
readings' timestamps sees 20 minutes of physiology in one minute.

Example (end-to-end test: an elder deteriorates, then takes the wearable off)::

    model = ElderVitalsModel(7, deterioration=Deterioration("hypoxaemia", 120, ramp_s=60))
    with Wearable("w1", host, port, source=from_model(model), time_scale=20) as w:
        ...
        w.set_source(taken_off(w.source, at_s=w.model_time_s()))
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from carehub.mqtt_contract import RANGES, Channel, DeviceStatus, VitalsReading
from firmware_sim.device import SimDevice

__all__ = [
    "FIRMWARE",
    "VitalsSource",
    "Wearable",
    "from_model",
    "silent",
    "steady_elder",
    "taken_off",
]

FIRMWARE = "sim-wearable/0.1"
VitalsSource = Callable[[float], dict[str, Any] | None]
"""Seconds since start → reading fields (hr, spo2, …) or None for 'nothing measured'."""

AMBIENT_C = 22.0
_FIELDS = ("hr", "spo2", "rr", "temp", "sbp", "motion", "quality")


class _SamplesVitals(Protocol):
    def sample(self, t_s: float) -> dict[str, float | None] | None: ...


def steady_elder(_t_s: float) -> dict[str, Any]:
    """A healthy, resting elder (NEWS2 0) with a good signal."""
    return {"hr": 72.0, "spo2": 97.0, "rr": 16.0, "temp": 36.6, "motion": 0.02, "quality": 0.95}


def from_model(model: _SamplesVitals) -> VitalsSource:
    """A source that plays an :class:`~firmware_sim.vitals_model.ElderVitalsModel`."""
    return model.sample


def silent(_t_s: float) -> None:
    """A wearable that measures nothing (flat battery, out of range): no readings at all."""
    return None


def taken_off(source: VitalsSource, at_s: float, *, reports: bool = True) -> VitalsSource:
    """``source`` until ``at_s`` (wearable time, s), then the wearable lies on a table.

    With ``reports`` it keeps sending: no pulse, quality 0, no motion and a temperature
    cooling from the last one toward 22 °C (τ = 5 min); without, it sends nothing.
    """
    last_temp: list[float] = [36.0]

    def play(t_s: float) -> dict[str, Any] | None:
        if t_s < at_s:
            fields = source(t_s)
            temp = None if fields is None else fields.get("temp")
            if isinstance(temp, int | float) and math.isfinite(temp):
                last_temp[0] = float(temp)
            return fields
        if not reports:
            return None
        decay = math.exp(-(t_s - at_s) / 300.0)
        temp = AMBIENT_C + (last_temp[0] - AMBIENT_C) * decay
        return {"temp": round(temp, 1), "motion": 0.0, "quality": 0.0}

    return play


def _reportable(name: str, value: object) -> float | None:
    """What the firmware puts on the wire for one measurement: the number if the contract's
    range allows it, else null — a sensor's "no reading" (0, NaN) or garbage (255, 1e4) is
    not a measurement, and sending it would get the whole reading refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    x = float(value)
    bounds = RANGES[f"vitals.{name}"]
    if name == "quality" and math.isfinite(x):  # an index: clamp rather than lose it
        return min(max(x, bounds.low), bounds.high)
    return x if math.isfinite(x) and bounds.low <= x <= bounds.high else None


class Wearable(SimDevice):
    """A simulated wrist wearable publishing :class:`VitalsReading` every ``period_s``.

    ``period_s`` is in wearable time (s); ``time_scale`` wearable seconds pass per wall
    second. Use as a context manager, like every :class:`SimDevice`.
    """

    def __init__(
        self,
        *args: Any,
        source: VitalsSource = steady_elder,
        period_s: float = 1.0,
        status_every_s: float = 30.0,
        battery: float = 90.0,
        time_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not period_s > 0 or not time_scale > 0:
            raise ValueError("period_s and time_scale must be > 0")
        self._source = source
        self._source_lock = threading.Lock()
        self.period_s = period_s
        self.status_every_s = status_every_s
        self.battery = battery
        self.time_scale = time_scale
        self.readings_sent = 0
        self._t0_wall_ms: int | None = None
        self._t0_mono: float | None = None
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"{self.device_id}-vitals"
        )

    @property
    def source(self) -> VitalsSource:
        """The current source (replace it with :meth:`set_source`)."""
        with self._source_lock:
            return self._source

    @source.setter
    def source(self, source: VitalsSource) -> None:
        self.set_source(source)

    def set_source(self, source: VitalsSource) -> None:
        """Switch scenario while running; the new source gets the same wearable time."""
        with self._source_lock:
            self._source = source

    def model_time_s(self) -> float:
        """Wearable time now (s since :meth:`start`; 0 before)."""
        if self._t0_mono is None:
            return 0.0
        return (time.monotonic() - self._t0_mono) * self.time_scale

    def ts_ms(self, model_t_s: float) -> int:
        """The ``ts`` (epoch ms) stamped on a reading taken at wearable time ``model_t_s``.
        Wearable time 0 is the wall clock at ``start``, or at the first reading before it (one
        origin: readings a second apart in wearable time are 1000 ms apart)."""
        if self._t0_wall_ms is None:
            self._t0_wall_ms = time.time_ns() // 1_000_000
        return self._t0_wall_ms + round(model_t_s * 1000.0)

    def start(self) -> Wearable:
        self._t0_wall_ms = time.time_ns() // 1_000_000
        self._t0_mono = time.monotonic()
        super().start()
        self._thread.start()
        return self

    def send_status(self) -> None:
        self.publish(
            Channel.STATUS,
            DeviceStatus(
                v=1,
                seq=self.next_seq(),
                ts=self.ts_ms(self.model_time_s()),
                battery=self.battery,
                firmware=FIRMWARE,
                rssi=-60.0,
            ),
        )

    def reading(self, model_t_s: float) -> VitalsReading | None:
        """The reading the wearable would publish at wearable time ``model_t_s``, if any."""
        fields = self.source(model_t_s)
        if fields is None:
            return None
        values = {k: _reportable(k, fields.get(k)) for k in _FIELDS}
        return VitalsReading(v=1, seq=self.next_seq(), ts=self.ts_ms(model_t_s), **values)

    def _run(self) -> None:
        assert self._t0_mono is not None
        wall_period = self.period_s / self.time_scale
        status_every = self.status_every_s / self.time_scale
        k = 0
        next_status = self._t0_mono
        while True:
            k += 1
            wake = self._t0_mono + k * wall_period
            if self._stop.wait(max(wake - time.monotonic(), 0.0)):
                return
            model_t = k * self.period_s
            if self.connected.is_set():
                reading = self.reading(model_t)
                if reading is not None:
                    self.publish(Channel.VITALS, reading)
                    self.readings_sent += 1
            now = time.monotonic()
            if now >= next_status and self.connected.is_set():
                self.send_status()
                next_status = now + status_every
