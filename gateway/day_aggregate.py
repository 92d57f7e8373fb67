"""One local day of the elder as running aggregates, and the `DailySummary` made from them.

Pure and bounded: a day is a few minute bitmaps (at most 1 500 bits each), four small
histograms and counters — never a raw stream — so it fits in one JSON row of the hub store
(`gateway.store`, table ``day_aggregates``) whatever the wearable sends. Every definition is in
docs/health-review.md ("The daily summary, on the hub"). Times are epoch ms on the hub's
clock; ``day`` is the local date of `CarePlan.time_zone`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from carehub.api_contract import DailySummary
from carehub.mqtt_contract import VitalsReading

NIGHT_START_H, NIGHT_END_H = 22, 7
"""The summary's night: local 22:00 to 07:00 (the part of it inside the day)."""
DAY_START_H = 7
"""Daytime (inactivity) runs from 07:00 to the night's start."""
REST_MOTION_G = 0.05
"""A wearable reading whose own motion channel is below this (g RMS) is at rest."""
REST_AFTER_MOVE_MS = 120_000
"""…and so is one at least this long after the last movement the hub saw."""
WORN_QUALITY = 0.5
"""A reading with a heart rate and at least this signal quality (or none given) is worn."""
COMPLETE_SLACK_MIN = 2
"""A day is complete when the hub ran all but at most this many of its minutes."""
SPO2_LOW = 90.0


@dataclass(frozen=True)
class Bins:
    """Fixed histogram bins over [low, high] in `step`s: percentiles in bounded memory."""

    low: float
    high: float
    step: float

    def index(self, value: float) -> int | None:
        if not (math.isfinite(value) and self.low <= value <= self.high):
            return None
        return round((value - self.low) / self.step)

    def value(self, index: int) -> float:
        return round(self.low + index * self.step, 3)


HR_BINS = Bins(20, 250, 1)  # beats/min
SPO2_BINS = Bins(50, 100, 1)  # %
RR_BINS = Bins(2, 60, 0.5)  # breaths/min
TEMP_BINS = Bins(30, 43, 0.05)  # °C


def percentile(counts: dict[str, int], q: float, bins: Bins) -> float | None:
    """The nearest-rank `q`-quantile (0..1) of a histogram; None when empty."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for key in sorted(counts, key=int):
        seen += counts[key]
        if seen >= rank:
            return bins.value(int(key))
    raise AssertionError("unreachable: the ranks add up to the total")


def _add(counts: dict[str, int], bins: Bins, value: float | None) -> None:
    i = None if value is None else bins.index(value)
    if i is not None:
        counts[str(i)] = counts.get(str(i), 0) + 1


def local_day(ms: int, tz: tzinfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()


def local_ms(day: date, at: time, tz: tzinfo) -> int:
    """Epoch ms of the wall-clock `at` on `day` in `tz`."""
    return int(datetime.combine(day, at, tzinfo=tz).timestamp() * 1000)


def local_hm(ms: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M")


@dataclass
class DayAggregate:
    """The running aggregates of one local day (JSON: `dumps`/`loads`)."""

    day: str
    start_ms: int
    minutes: int
    night: int
    """Bitmap of the day's minutes that are night (local 00:00-07:00 and 22:00-24:00)."""
    hours: list[int]
    """Local hour of each whole hour since midnight (DST days have 23 or 25)."""
    up: int = 0  # minutes the hub was running
    heard: int = 0  # minutes a pendant was heard
    worn: int = 0  # minutes the wearable was worn
    active: int = 0  # minutes with movement (pendant or activity sensors)
    vitals_seen: bool = False
    sensors_seen: bool = False
    hr_rest: dict[str, int] = field(default_factory=dict)
    spo2_night: dict[str, int] = field(default_factory=dict)
    spo2_night_below: int = 0
    rr_rest: dict[str, int] = field(default_factory=dict)
    temp_rest: dict[str, int] = field(default_factory=dict)
    night_rises: int = 0
    presses: int = 0
    check_ins: int = 0
    check_in_at: str | None = None
    """Local ``HH:MM`` of the check-in (the usual time, beside a missed one's)."""
    check_in_asked: bool = False
    """The hub ran inside today's check-in window with the care plan asking for one."""
    check_in_event: list[Any] | None = None
    """``[device_id, seq]`` of the press that was the check-in (its retries hear the same)."""
    near_falls: int = 0
    falls: int = 0
    battery_min_pct: float | None = None
    welfare: list[str] = field(default_factory=list)
    """Welfare checks raised today, by reason (one missed check-in a day)."""
    active_by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    """Active minutes per local hour of day: the elder's rhythm."""
    still_max_by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    """Longest daytime stillness (min) in progress during each local hour."""
    rise_max_min: int | None = None
    """Longest night rise (min) that ended in a return to rest."""

    @classmethod
    def new(cls, day: date, tz: tzinfo) -> DayAggregate:
        start = local_ms(day, time(0), tz)
        end = local_ms(day + timedelta(days=1), time(0), tz)
        minutes = (end - start) // 60_000
        night, hours = 0, []
        for m in range(minutes):
            hour = datetime.fromtimestamp((start + m * 60_000) / 1000, tz).hour
            if m % 60 == 0:
                hours.append(hour)
            if hour >= NIGHT_START_H or hour < NIGHT_END_H:
                night |= 1 << m
        return cls(day.isoformat(), start, minutes, night, hours)

    # ------------------------------------------------------------ positions

    def minute(self, ms: int) -> int | None:
        """The minute of the day `ms` falls in, or None outside the day."""
        m = (ms - self.start_ms) // 60_000
        return m if 0 <= m < self.minutes else None

    def hour_of(self, ms: int) -> int | None:
        m = self.minute(ms)
        return None if m is None else self.hours[min(m // 60, len(self.hours) - 1)]

    def is_night(self, ms: int) -> bool:
        m = self.minute(ms)
        return m is not None and bool(self.night >> m & 1)

    def _bit(self, name: str, ms: int) -> bool:
        """Set minute `ms` in bitmap `name`; True when it was not set yet."""
        m = self.minute(ms)
        if m is None:
            return False
        bits = getattr(self, name)
        if bits >> m & 1:
            return False
        setattr(self, name, bits | 1 << m)
        return True

    # ------------------------------------------------------------ what the hub sees

    def hub_up(self, now_ms: int) -> None:
        self._bit("up", now_ms)

    def pendant_heard(self, now_ms: int) -> None:
        self._bit("heard", now_ms)

    def movement(self, now_ms: int, sensor: bool = False) -> None:
        self.sensors_seen = self.sensors_seen or sensor
        if self._bit("active", now_ms):
            hour = self.hour_of(now_ms)
            assert hour is not None
            self.active_by_hour[hour] += 1

    def vitals(self, now_ms: int, reading: VitalsReading, at_rest: bool) -> None:
        """One wearable reading (at the hub's `now_ms`); `at_rest`: no movement seen lately."""
        self.vitals_seen = True
        hr = reading.hr
        quality_ok = reading.quality is None or reading.quality >= WORN_QUALITY
        if hr is None or not quality_ok:
            return
        self._bit("worn", now_ms)
        rest = at_rest and (reading.motion is None or reading.motion < REST_MOTION_G)
        if rest:
            _add(self.hr_rest, HR_BINS, hr)
            _add(self.rr_rest, RR_BINS, reading.rr)
            _add(self.temp_rest, TEMP_BINS, reading.temp)
        if reading.spo2 is not None and self.is_night(now_ms):
            _add(self.spo2_night, SPO2_BINS, reading.spo2)
            self.spo2_night_below += reading.spo2 < SPO2_LOW

    def battery(self, pct: float) -> None:
        if math.isfinite(pct):
            low = self.battery_min_pct
            self.battery_min_pct = pct if low is None else min(low, pct)

    def stillness(self, start_ms: int, end_ms: int) -> None:
        """A daytime stillness from `start_ms` to `end_ms`: the longest per local hour."""
        length = (end_ms - start_ms) // 60_000
        first, last = self.minute(start_ms), self.minute(end_ms - 1)
        if length <= 0 or first is None or last is None:
            return
        for h in range(first // 60, last // 60 + 1):
            hour = self.hours[min(h, len(self.hours) - 1)]
            if DAY_START_H <= hour < NIGHT_START_H:
                self.still_max_by_hour[hour] = max(self.still_max_by_hour[hour], length)

    def night_rise_ended(self, minutes: int) -> None:
        self.rise_max_min = max(self.rise_max_min or 0, minutes)

    # ------------------------------------------------------------ the summary

    def summary(self) -> DailySummary:
        """The day's `DailySummary` (docs/health-review.md defines each field)."""
        night_worn = (self.worn & self.night).bit_count()
        below = None
        n_night = sum(self.spo2_night.values())
        if n_night:
            below = round(min(night_worn * self.spo2_night_below / n_night, 1440.0), 1)
        moving_seen = self.heard != 0 or self.sensors_seen
        return DailySummary(
            day=self.day,
            complete=self.up.bit_count() >= self.minutes - COMPLETE_SLACK_MIN,
            worn_h=round(self.worn.bit_count() / 60, 2) if self.vitals_seen else None,
            resting_hr_bpm=percentile(self.hr_rest, 0.10, HR_BINS),
            night_spo2_median=percentile(self.spo2_night, 0.5, SPO2_BINS),
            night_spo2_below_90_min=below,
            rr_rest=percentile(self.rr_rest, 0.5, RR_BINS),
            temp_rest=percentile(self.temp_rest, 0.5, TEMP_BINS),
            active_min=float(self.active.bit_count()) if moving_seen else None,
            night_rises=self.night_rises if self.heard & self.night else None,
            presses=self.presses,
            check_ins=self.check_ins,
            near_falls=self.near_falls,
            falls=self.falls,
            battery_min_pct=self.battery_min_pct,
        )

    # ------------------------------------------------------------ storage

    def dumps(self) -> str:
        data = dataclasses.asdict(self)
        for name in _BITMAPS:
            data[name] = format(data[name], "x")
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> DayAggregate:
        data = json.loads(text)
        for name in _BITMAPS:
            data[name] = int(data[name], 16)
        return cls(**data)


_BITMAPS = ("night", "up", "heard", "worn", "active")
