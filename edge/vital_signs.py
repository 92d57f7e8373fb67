"""Streaming vital-sign anomaly detection for one elder's wearable.

Pipeline (see docs/vital-signs.md):

1. **Per sample** (O(1)): each value is checked for being a number inside the physiological
   range, not a jump from the last accepted value, not taken during motion (wearable's own
   ``motion``, or the pendant's via :meth:`VitalsDetector.push_motion`) and not of low
   ``quality``. Accepted values go into the current 10-s epoch.
2. **Per epoch**: the median of each channel; a channel whose values scatter too much inside
   the epoch (robust spread) or have not changed for minutes (flat line) is not scored.
   NEWS2 sub-scores are computed on the epoch medians.
   **Contact doubt** comes from the values themselves (for wearables without motion or
   quality channels): scattered or jittery PPG, SpO2 missing from most samples, a skin
   cooling below its recent temperature. While in doubt, red PPG values need longer
   persistence — 10 min if physiology backs them (a low SpO2 with pulse or breathing risen;
   a pulse that is not an octave of the recent one), else 30 min; an octave never counts.
3. **Persistence**: a condition counts only if, over its window, enough epochs were valid and
   most of the valid ones were abnormal — so artefacts delay an alarm instead of raising one;
   a red value that has stopped changing waits, and is forgotten once the channel is stale.
   ``critical`` = a red sub-score (3) in pulse, SpO2, respiration or systolic pressure (for
   90 s, or most of 150 s), or a total ≥ 7; ``warning`` = a total ≥ 5, a temperature
   ≥ 39.1 °C, or a change from the elder's own baseline.
4. **Hysteresis**: one alarm per episode (it may escalate once, warning → critical); the
   episode clears only after the values have been back to near normal for ``clear_after_s``.
5. **Wear faults**: no samples, no pulse, temperature near ambient without pulse or frozen
   readings raise ``sensor_not_worn`` (never an alarm); it clears when good data returns.

Time comes only from sample timestamps and :meth:`VitalsDetector.tick` (ms since epoch).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edge.news2 import (
    AGGREGATE_HIGH,
    AGGREGATE_MEDIUM,
    score_pulse,
    score_respiration_rate,
    score_spo2,
    score_systolic_bp,
    score_temperature,
)
from edge.vitals_artefacts import PLAUSIBLE, ChannelScreen, finite_number, screen_channel
from edge.vitals_baseline import HourlyBaseline, median

__all__ = ["VitalsDetector", "VitalsEvent", "VitalsSample", "VitalsSettings"]

Severity = Literal["warning", "critical"]
Reading = dict[str, float | int | None]

_CHANNELS = ("hr", "spo2", "rr", "temp", "sbp")
_PPG = ("hr", "spo2", "rr")
_PULSE = ("hr", "spo2")
_ALL_FIELDS = ("hr", "spo2", "rr", "temp", "sbp", "motion", "quality")
_BASELINE = ("hr", "spo2", "rr", "temp")
_REWIND_MS = 30_000
"""A sample this far (ms) before the newest one means the stream's clock went back: the
detector restarts its timeline (a late sample within it is ignored, as before)."""
_STRAY_AHEAD_MS = 86_400_000
"""A newest sample this far (ms) ahead of the hub's tick was stamped by a broken clock: the
timeline restarts at the tick's time, so a silent wearable is noticed again. (Generous: the
hub's clock guard already keeps samples within a minute of its clock; simulators that play
faster than real time may lead by minutes.)"""


@dataclass(frozen=True)
class VitalsSample:
    """One wearable report; ``None`` = not measured.

    ``ts_ms`` ms since epoch; ``hr`` bpm; ``spo2`` %; ``rr`` breaths/min; ``temp`` °C
    (core-equivalent estimate); ``sbp`` systolic mmHg; ``motion`` 0..1 activity (fraction
    of full scale); ``quality`` 0..1 device signal-quality index.
    """

    ts_ms: int
    hr: float | None = None
    spo2: float | None = None
    rr: float | None = None
    temp: float | None = None
    sbp: float | None = None
    motion: float | None = None
    quality: float | None = None


@dataclass(frozen=True)
class VitalsSettings:
    """Per-elder settings; durations in s, thresholds in the channel's unit."""

    spo2_scale2: bool = False
    """Care plan: hypercapnic respiratory failure, SpO2 target 88–92 % (NEWS2 scale 2)."""
    on_supplemental_oxygen: bool = False
    """Care plan: on oxygen (adds the chart's 2 points; scale 2 then penalises high SpO2)."""
    temp_scored: bool = True
    """False if the device reports raw skin temperature: then temperature only serves wear
    detection and the personal baseline, never a NEWS2 score."""
    epoch_s: float = 10.0
    critical_persistence_s: float = 90.0
    warning_persistence_s: float = 600.0
    baseline_persistence_s: float = 1800.0
    min_valid_fraction: float = 0.75
    """Share of a window's epochs that must hold valid data before it may alarm."""
    min_abnormal_fraction: float = 0.8
    """Share of the valid epochs in the window that must be abnormal."""
    clear_after_s: float = 600.0
    min_quality: float = 0.5
    max_motion: float = 0.3
    motion_hold_s: float = 20.0
    """PPG values (hr, spo2, rr) are ignored while motion > max_motion or quality <
    min_quality, and for this long after (a poor signal recovers gradually)."""
    max_jump_per_s: tuple[float, float, float, float, float] = (30.0, 6.0, 12.0, 1.5, 60.0)
    """Largest believable change per second of hr, spo2, rr, temp, sbp."""
    max_epoch_spread: tuple[float, float, float, float, float] = (10.0, 1.5, 5.0, 0.5, 20.0)
    """Largest believable median absolute deviation inside one epoch, same order."""
    max_spo2_jitter_pct: float = 1.5
    spo2_jitter_factor: float = 2.0
    """SpO2 jitter (mean absolute change between successive samples in an epoch) above
    max(max_spo2_jitter_pct, spo2_jitter_factor × the elder's usual jitter) marks the epoch's
    PPG (hr, spo2, rr) as unsteady: motion or poor contact, not physiology."""
    stale_s: float = 60.0
    """A channel whose value has not changed for this long is not scored (frozen firmware),
    and the red sub-scores it gave during the freeze are forgotten."""
    freeze_suspect_s: float = 30.0
    """A red sub-score whose channel has not changed for this long does not raise the alarm
    yet: it waits until the value moves again (or is forgotten as a freeze at ``stale_s``)."""
    flat_line_s: float = 300.0
    """All reporting channels unchanged this long: ``sensor_not_worn``."""
    no_data_s: float = 120.0
    no_pulse_s: float = 300.0
    off_body_temp_c: float = 30.0
    off_body_no_pulse_s: float = 60.0
    fault_clear_s: float = 60.0
    sbp_hold_s: float = 1800.0
    """A systolic reading (cuffs measure rarely) is carried forward this long."""
    baseline_days: float = 7.0
    baseline_min_hours: int = 12
    baseline_k: float = 4.0
    """Deviation must exceed baseline_k × the baseline's robust SD …"""
    baseline_min_delta: tuple[float, float, float, float] = (25.0, 3.0, 6.0, 1.0)
    """… and at least this much: hr bpm (up or down), spo2 % (down), rr /min (up), temp °C (up)."""
    max_readings: int = 12
    channels: frozenset[str] | None = None
    """The channels the elder's wearable reports (care plan), from hr, spo2, rr, temp, sbp,
    motion, quality; None = whatever arrives. Anything else is ignored, and the checks that
    need a channel (SpO2 coverage, skin cooling) are off without it."""
    doubt_window_s: float = 300.0
    doubt_fraction: float = 0.4
    """While at least this share of the epochs of the last ``doubt_window_s`` showed poor
    contact (see ``_doubt``), or the skin is cooling, red PPG values count only toward the
    slow ``weak_persistence_s`` window."""
    weak_persistence_s: float = 600.0
    """Persistence for red values while contact is in doubt (they may be artefacts), if
    physiology backs them: a low SpO2 with pulse or respiration risen (``corroboration``)
    over the last clear half hour; a pulse that is not half or twice the recent one."""
    doubtful_persistence_s: float = 1800.0
    """Persistence for red values in doubt that nothing backs (a pulse at half or twice the
    recent rate during poor contact is an octave error and never counts)."""
    corroboration: tuple[float, float] = (10.0, 4.0)
    """Rise of pulse (bpm) or respiration (/min) over the median of the last clear 30 min
    that makes a low SpO2 in doubt plausible."""
    recurrent_persistence_s: float | None = None
    """None: 5/3 × ``critical_persistence_s`` (150 s)."""
    recurrent_abnormal_fraction: float = 0.6
    """A red sub-score in this share of the recurrent window's valid epochs is critical too:
    oscillating desaturation and intermittent heart block are red most, not all, of the time."""
    fever_persistence_s: float = 300.0
    """Temperature ≥ 39.1 °C (NEWS2 temperature 2) this long: a warning on its own."""
    min_spo2_coverage: float = 0.5
    """An epoch in which fewer than this share of the samples carried an accepted SpO2 (the
    device reports SpO2) shows poor contact."""
    skin_cooling_c: float = 0.45
    """Temperature this far below the highest 10-min median of the last 3 h: the wearable
    reads a cold hand or an air gap (loose strap), not a core temperature."""


@dataclass(frozen=True)
class VitalsEvent:
    """An alarm or wear fault starting or ending; ``readings`` are recent epoch medians."""

    kind: Literal["alarm", "alarm_cleared", "fault", "fault_cleared"]
    ts_ms: int
    severity: Severity | None
    fault: Literal["sensor_not_worn"] | None
    reason: str
    scores: dict[str, int]
    readings: list[Reading]


class _Window:
    """Counts over the last ``span_ms`` of epochs: valid epochs and abnormal ones (O(1))."""

    __slots__ = ("span_ms", "items", "n_valid", "n_bad")

    def __init__(self, span_s: float) -> None:
        self.span_ms = int(span_s * 1000)
        self.items: deque[tuple[int, bool, bool]] = deque()
        self.n_valid = 0
        self.n_bad = 0

    def add(self, ts: int, valid: bool, bad: bool) -> None:
        items = self.items
        items.append((ts, valid, bad))
        self.n_valid += valid
        self.n_bad += bad
        oldest = ts - self.span_ms
        while items[0][0] <= oldest:
            _, v, b = items.popleft()
            self.n_valid -= v
            self.n_bad -= b

    def holds(self, expected: float, min_valid: float, min_bad: float) -> bool:
        """At least ``min_valid`` × ``expected`` valid epochs, and abnormal ones at least
        ``min_bad`` × the larger of the valid and the minimum valid count (so that missing
        epochs cannot stretch a short abnormal stretch into a persistent one)."""
        n = self.n_valid
        need = min_valid * expected
        return self.n_bad > 0 and n >= need and self.n_bad >= min_bad * max(n, need)

    def clear(self) -> None:
        self.items.clear()
        self.n_valid = self.n_bad = 0


class VitalsDetector:
    """Streaming detector for one elder; feed samples in time order (older ones are ignored,
    unless more than 30 s older: then the clock went back and the timeline restarts)."""

    def __init__(self, settings: VitalsSettings | None = None) -> None:
        s = settings or VitalsSettings()
        self.settings = s
        self._epoch_ms = int(s.epoch_s * 1000)
        self._motion_hold_ms = int(s.motion_hold_s * 1000)
        self._flat_ms = int(s.flat_line_s * 1000)
        self._stale_ms = int(s.stale_s * 1000)
        self._suspect_ms = int(s.freeze_suspect_s * 1000)
        self._spread = dict(zip(_CHANNELS, s.max_epoch_spread, strict=True))
        self._fault: str | None = None
        self._level: Severity | None = None
        self._red = {c: _Window(s.critical_persistence_s) for c in ("hr", "spo2", "rr", "sbp")}
        self._recurrent_s = s.recurrent_persistence_s or s.critical_persistence_s * 5 / 3
        self._red_recurrent = {c: _Window(self._recurrent_s) for c in _PPG}
        self._red_weak = {c: _Window(s.weak_persistence_s) for c in _PPG}
        self._red_doubtful = {c: _Window(s.doubtful_persistence_s) for c in _PPG}
        self._high_weak = _Window(s.weak_persistence_s)
        self._fever = _Window(s.fever_persistence_s)
        self._doubts = _Window(s.doubt_window_s)
        self._high = _Window(s.critical_persistence_s)
        self._medium = _Window(s.warning_persistence_s)
        self._dev = {c: _Window(s.baseline_persistence_s) for c in _BASELINE}
        self.restarts = 0
        """How many times the stream's clock went back and the timeline started afresh."""
        self._start_timeline()
        self._baseline = {
            c: HourlyBaseline(
                days=s.baseline_days,
                min_hours=s.baseline_min_hours,
                min_epochs_per_hour=int(0.5 * 3600 / s.epoch_s),
            )
            for c in _BASELINE
        }
        self._jitter = HourlyBaseline(days=s.baseline_days, min_hours=6, min_epochs_per_hour=60)
        self._ppg_unsteady = False
        self._readings: deque[Reading] = deque(maxlen=s.max_readings)
        self._last_scores: dict[str, int] = {"total": 0}

    def _start_timeline(self) -> None:
        """Forget everything timed on the stream's clock (screens, epoch, persistence windows,
        timers). Kept: the episode and wear-fault state the hub was told about (so neither is
        raised twice nor left open) and the personal baselines (learned over days, per hour
        of day; an epoch is only learned once closed, so a stray timestamp never reaches it)."""
        s = self.settings
        self._ch = {
            c: ChannelScreen(*PLAUSIBLE[c], s.max_jump_per_s[i]) for i, c in enumerate(_CHANNELS)
        }
        self._last_ts: int | None = None
        self._first_ts: int | None = None
        self._epoch: int | None = None
        self._n_samples = 0
        self._motion_until = -1
        self._last_pulse_ts: int | None = None
        self._good_since: int | None = None
        self._sbp: tuple[int, float] | None = None
        self._recovered_since: int | None = None
        self._cool = False
        self._clear: deque[tuple[int, float | None, float | None]] = deque()
        self._spo2_seen_ts: int | None = None
        self._temp_bucket: tuple[int, list[float]] | None = None
        self._temp_10min: deque[tuple[int, float]] = deque()
        for w in self._all_windows():
            w.clear()

    def _all_windows(self) -> tuple[_Window, ...]:
        return (
            *self._red.values(),
            *self._red_recurrent.values(),
            *self._red_weak.values(),
            *self._red_doubtful.values(),
            self._high_weak,
            self._fever,
            self._doubts,
            self._high,
            self._medium,
            *self._dev.values(),
        )

    def _restart(self) -> None:
        self.restarts += 1
        self._start_timeline()

    # ----- public API --------------------------------------------------------------------

    def push(self, sample: VitalsSample) -> list[VitalsEvent]:
        """Add one sample; returns the alarms/faults it starts or ends (usually none)."""
        ts_raw = getattr(sample, "ts_ms", None)
        if type(ts_raw) is not int:
            ts_f = finite_number(ts_raw)
            if ts_f is None:
                return []
            ts_raw = int(ts_f)
        ts: int = ts_raw
        if self._last_ts is not None and ts <= self._last_ts:
            if ts >= self._last_ts - _REWIND_MS:
                return []  # a late or repeated sample
            self._restart()  # the stream's clock went back: follow it rather than go deaf
        events: list[VitalsEvent] = []
        epoch = ts // self._epoch_ms
        if epoch != self._epoch:
            if self._epoch is not None:
                events = self._close_epoch((self._epoch + 1) * self._epoch_ms)
            self._epoch = epoch
        if self._first_ts is None:
            self._first_ts = ts
        self._last_ts = ts
        self._n_samples += 1
        s = self.settings
        if s.channels is not None:  # the care plan's channel set: ignore anything else
            sample = VitalsSample(
                ts,
                **{c: getattr(sample, c, None) for c in _ALL_FIELDS if c in s.channels},
            )
        motion = getattr(sample, "motion", None)
        if motion is not None:
            m = finite_number(motion)
            if m is not None and m > s.max_motion:
                self._motion_until = ts + self._motion_hold_ms
        quality = getattr(sample, "quality", None)
        if quality is not None:
            q = finite_number(quality)
            if q is not None and q < s.min_quality:
                self._motion_until = ts + self._motion_hold_ms
        if self._motion_until > ts + self._motion_hold_ms + _REWIND_MS:
            self._motion_until = -1  # motion stamped far ahead of this stream: not about now
        ppg_ok = ts > self._motion_until
        ch = self._ch
        for name in ("hr", "spo2", "rr"):
            x = getattr(sample, name, None)
            if x is not None:
                ch[name].offer(x, ts, ppg_ok)
        x = getattr(sample, "temp", None)
        if x is not None:
            ch["temp"].offer(x, ts, True)
        x = getattr(sample, "sbp", None)
        if x is not None:
            v = ch["sbp"].offer(x, ts, False)
            if v is not None:
                self._sbp = (ts, v)
        return events

    def push_many(
        self,
        ts_ms: ArrayLike,
        *,
        hr: ArrayLike | None = None,
        spo2: ArrayLike | None = None,
        rr: ArrayLike | None = None,
        temp: ArrayLike | None = None,
        sbp: ArrayLike | None = None,
        motion: ArrayLike | None = None,
        quality: ArrayLike | None = None,
        tick_on_gaps: bool = True,
    ) -> list[VitalsEvent]:
        """Vectorised equivalent of :meth:`push` over arrays (NaN = not measured), for offline
        evaluation. With ``tick_on_gaps`` it also calls :meth:`tick` ``no_data_s`` after the
        last sample before each longer gap, as the hub's periodic tick would."""
        ts = np.asarray(ts_ms, dtype=np.int64).ravel()
        n = ts.size
        if n == 0:
            return []

        def col(a: ArrayLike | None) -> NDArray[np.float64]:
            return np.full(n, np.nan) if a is None else np.asarray(a, dtype=np.float64).ravel()

        given = {
            "hr": hr,
            "spo2": spo2,
            "rr": rr,
            "temp": temp,
            "sbp": sbp,
            "motion": motion,
            "quality": quality,
        }
        if self.settings.channels is not None:  # the care plan's channel set
            given = {c: a if c in self.settings.channels else None for c, a in given.items()}
        raw = {c: col(given[c]) for c in _CHANNELS}
        mot, qual = col(given["motion"]), col(given["quality"])
        floor = np.int64(self._last_ts) if self._last_ts is not None else np.iinfo(np.int64).min
        before = np.concatenate([[floor], np.maximum.accumulate(ts)[:-1]])
        keep = ts > np.maximum(before, floor)
        if not keep.all():
            ts, mot, qual = ts[keep], mot[keep], qual[keep]
            raw = {c: a[keep] for c, a in raw.items()}
            n = ts.size
            if n == 0:
                return []
        s = self.settings
        with np.errstate(invalid="ignore"):
            spoilt = (mot > s.max_motion) | (qual < s.min_quality)
            until = np.where(spoilt, ts + self._motion_hold_ms, self._motion_until)
            until = np.maximum.accumulate(until)
            ppg_ok = ts > until
        epoch = ts // self._epoch_ms
        first = np.flatnonzero(np.concatenate([[True], epoch[1:] != epoch[:-1]]))
        last = np.concatenate([first[1:] - 1, [n - 1]])
        epochs = epoch[first]
        ends = (epochs + 1) * self._epoch_ms

        screened = {c: screen_channel(ts, raw[c], self._ch[c]) for c in _CHANNELS}
        # per channel, as lists (fast to index in the epoch loop): the accepted values, where
        # each epoch's accepted and possible samples start, and the screen state per sample
        acc: dict[str, tuple[list[float], list[int], list[int]]] = {}
        state: dict[str, tuple[list[float], list[int], list[int]]] = {}
        for c in _CHANNELS:
            sc = screened[c]
            use = ~sc.jump if c in ("temp", "sbp") else ~sc.jump & ppg_ok[sc.index]
            acc_idx = sc.index[use]
            acc_b = np.append(np.searchsorted(acc_idx, first), acc_idx.size)
            seen_b = np.append(np.searchsorted(sc.index, first), sc.index.size)
            acc[c] = (raw[c][acc_idx].tolist(), acc_b.tolist(), seen_b.tolist())
            state[c] = (sc.value.tolist(), sc.ts_ms.tolist(), sc.same_since.tolist())
        sbp_sc = screened["sbp"]
        sbp_ok = ~sbp_sc.jump
        sbp_t, sbp_v = sbp_sc.ts_ms[sbp_ok], sbp_sc.value[sbp_ok]
        sbp_j = (np.searchsorted(sbp_t, ts[last], side="right") - 1).tolist()
        sbp_tl, sbp_vl = sbp_t.tolist(), sbp_v.tolist()
        ts_l, first_l, last_l = ts.tolist(), first.tolist(), last.tolist()
        epochs_l, ends_l, until_l = epochs.tolist(), ends.tolist(), until.tolist()

        events: list[VitalsEvent] = []
        carry = self._epoch is not None and epochs_l[0] == self._epoch
        if self._epoch is not None and not carry:
            if tick_on_gaps:
                events += self._tick_gap(ts_l[0])
            events += self._close_epoch((self._epoch + 1) * self._epoch_ms)
        if self._first_ts is None:
            self._first_ts = ts_l[0]
        n_ep = len(epochs_l)
        for k in range(n_ep):
            cont = k == 0 and carry
            for c in _CHANNELS:
                ch = self._ch[c]
                values, acc_at, seen_at = acc[c]
                vals = values[acc_at[k] : acc_at[k + 1]]
                if cont:
                    ch.values.extend(vals)
                else:
                    ch.values = vals
                hi = seen_at[k + 1]
                ch.seen = (ch.seen and cont) or hi > seen_at[k]
                if hi > 0:  # the screen's state after the last possible sample so far
                    sv, st, ss = state[c]
                    ch.prev, ch.prev_ts, ch.same_since = sv[hi - 1], st[hi - 1], ss[hi - 1]
            j = sbp_j[k]
            if j >= 0:
                self._sbp = (sbp_tl[j], sbp_vl[j])
            self._n_samples = (self._n_samples if cont else 0) + last_l[k] - first_l[k] + 1
            self._last_ts = ts_l[last_l[k]]
            self._epoch = epochs_l[k]
            self._motion_until = max(self._motion_until, until_l[last_l[k]])
            if k + 1 < n_ep:
                if tick_on_gaps:
                    events += self._tick_gap(ts_l[first_l[k + 1]])
                events += self._close_epoch(ends_l[k])
        return events

    def _tick_gap(self, next_ts: int) -> list[VitalsEvent]:
        """The tick the hub would have made between the last sample and ``next_ts``."""
        last = self._last_ts
        no_data_ms = int(self.settings.no_data_s * 1000)
        if last is None or next_ts - last <= no_data_ms:
            return []
        return self.tick(last + no_data_ms)

    def push_motion(self, ts_ms: int, motion: float) -> None:
        """Activity from the pendant's IMU (0..1, fraction of full-scale movement, e.g. the
        1-s RMS of acceleration minus gravity / 1 g): motion spoils the wrist PPG."""
        ts = finite_number(ts_ms)
        m = finite_number(motion)
        if ts is not None and m is not None and m > self.settings.max_motion:
            self._motion_until = max(self._motion_until, int(ts) + self._motion_hold_ms)

    def tick(self, now_ms: int) -> list[VitalsEvent]:
        """Called every few s by the hub: a wearable that stopped reporting is a wear fault."""
        now = finite_number(now_ms)
        if now is None or self._fault is not None:
            return []
        last = self._last_ts
        if last is not None and last - now > _STRAY_AHEAD_MS:  # a stray future sample
            self._restart()
            self._last_ts = self._first_ts = last = int(now)
        if last is None or now - last < self.settings.no_data_s * 1000:
            return []
        self._good_since = None
        return [self._set_fault(int(now), f"no samples for {self.settings.no_data_s:.0f} s")]

    # ----- epoch processing --------------------------------------------------------------

    def _close_epoch(self, end_ms: int) -> list[VitalsEvent]:
        values: dict[str, float | None] = {}
        flat_ms, stale_ms = self._flat_ms, self._stale_ms
        n_reporting = n_flat = 0
        pulse = False
        scattered = False
        n_spo2 = 0
        for name in ("hr", "spo2", "rr", "temp"):
            ch = self._ch[name]
            vals = ch.values
            ch.values = []
            if name == "spo2":
                n_spo2 = len(vals)
                if ch.seen:
                    self._spo2_seen_ts = end_ms
            reporting, flat = ch.flat_at(end_ms, flat_ms)
            n_reporting += reporting
            n_flat += flat
            if ch.seen and not flat and name in _PULSE:
                pulse = True
            ch.seen = False
            stale = ch.flat_at(end_ms, stale_ms)[1]
            if stale and name in self._red:  # the frozen value was never a measurement
                self._red[name].clear()
                self._red_recurrent[name].clear()
                self._red_weak[name].clear()
                self._red_doubtful[name].clear()
            if not vals or stale:
                values[name] = None
                continue
            m = median(vals)
            if len(vals) >= 3 and median([abs(v - m) for v in vals]) > self._spread[name]:
                values[name] = None
                scattered = scattered or name in _PULSE
            else:
                values[name] = m
            if name == "spo2" and len(vals) >= 4:
                jitter = sum(abs(b - a) for a, b in zip(vals, vals[1:], strict=False)) / (
                    len(vals) - 1
                )
                usual = self._jitter.estimate
                limit = self.settings.max_spo2_jitter_pct
                if usual is not None:
                    limit = max(limit, self.settings.spo2_jitter_factor * usual.center)
                if jitter > limit:  # unsteady SpO2: motion or poor contact spoils all PPG
                    values["hr"] = values["spo2"] = None
                    self._ppg_unsteady = True
                self._jitter.add(end_ms // 3_600_000, jitter)
        unsteady = self._ppg_unsteady
        if unsteady:
            values["rr"] = None
            self._ppg_unsteady = False
        sbp = self._sbp
        hold_ms = self.settings.sbp_hold_s * 1000
        values["sbp"] = sbp[1] if sbp is not None and end_ms - sbp[0] <= hold_ms else None
        n_samples, self._n_samples = self._n_samples, 0
        cool = self._skin_cooling(end_ms, values["temp"])
        doubt = self._doubt(end_ms, n_samples, n_spo2, scattered or unsteady)
        self._doubts.add(end_ms, True, doubt)
        self._cool = cool
        if pulse:
            self._last_pulse_ts = end_ms
        self._readings.append({"ts_ms": end_ms, **values})
        all_flat = n_reporting > 0 and n_flat == n_reporting
        events = self._update_fault(end_ms, values, n_samples, all_flat)
        if self._fault is None:
            events += self._score(end_ms, values)
        else:
            for b in self._baseline.values():
                b.exclude_current_hour()
        return events

    def _backed(self, c: str, v: dict[str, float | None], end_ms: int) -> bool:
        """Does physiology back a red value taken while contact is in doubt? Compared with
        the clear epochs of the last 30 min: a low SpO2 needs pulse or respiration risen
        (hypoxaemia rarely leaves both alone); a pulse must not be half or twice the recent
        one (the PPG locking onto an octave)."""
        past = [x for x in self._clear if x[0] <= end_ms - 60_000]
        hrs = [x[1] for x in past if x[1] is not None]
        hr_ref = median(hrs) if len(hrs) >= 6 else None
        hr = v["hr"]
        if c == "hr":
            if hr is None or hr_ref is None:
                return True
            ratio = hr / hr_ref
            return not (0.4 <= ratio <= 0.6 or 1.7 <= ratio <= 2.3)
        if c == "spo2":
            rrs = [x[2] for x in past if x[2] is not None]
            rr_ref = median(rrs) if len(rrs) >= 6 else None
            rr = v["rr"]
            d_hr, d_rr = self.settings.corroboration
            return (hr is not None and hr_ref is not None and hr - hr_ref >= d_hr) or (
                rr is not None and rr_ref is not None and rr - rr_ref >= d_rr
            )
        return True

    def _skin_cooling(self, end_ms: int, temp: float | None) -> bool:
        """Temperature well below the highest 10-min median of the last 3 h (kept here)."""
        s = self.settings
        if s.channels is not None and "temp" not in s.channels:
            return False
        bucket = end_ms // 600_000
        tb = self._temp_bucket
        if tb is None or tb[0] != bucket:
            if tb is not None and len(tb[1]) >= 20:
                self._temp_10min.append((tb[0], median(tb[1])))
            tb = self._temp_bucket = (bucket, [])
        while self._temp_10min and self._temp_10min[0][0] < bucket - 18:
            self._temp_10min.popleft()
        if temp is None:
            return False
        tb[1].append(temp)
        if len(self._temp_10min) < 3:
            return False
        return temp < max(m for _, m in self._temp_10min) - s.skin_cooling_c

    def _doubt(self, end_ms: int, n_samples: int, n_spo2: int, scattered: bool) -> bool:
        """Do this epoch's values themselves show poor contact? Scattered or jittery PPG, or
        SpO2 missing from most samples of a device that reports it: the signs of a loose
        strap, a cold hand or movement, with or without a quality channel."""
        s = self.settings
        if scattered:
            return True
        seen = self._spo2_seen_ts
        reports_spo2 = (s.channels is None or "spo2" in s.channels) and (
            seen is not None and end_ms - seen <= 600_000
        )
        return reports_spo2 and n_samples >= 5 and n_spo2 < s.min_spo2_coverage * n_samples

    def _update_fault(
        self, end_ms: int, values: dict[str, float | None], n_samples: int, all_flat: bool
    ) -> list[VitalsEvent]:
        s = self.settings
        pulse_ts = self._last_pulse_ts if self._last_pulse_ts is not None else self._first_ts
        since_pulse = end_ms - (pulse_ts if pulse_ts is not None else end_ms)
        temp = values["temp"]
        reason: str | None = None
        if all_flat:
            reason = f"readings unchanged for {s.flat_line_s:.0f} s"
        elif (
            temp is not None
            and temp < s.off_body_temp_c
            and since_pulse >= s.off_body_no_pulse_s * 1000
        ):
            reason = "temperature near ambient and no pulse"
        elif since_pulse >= s.no_pulse_s * 1000:
            reason = f"no pulse readings for {s.no_pulse_s:.0f} s"
        if reason is not None:
            self._good_since = None
            return [self._set_fault(end_ms, reason)] if self._fault is None else []
        if self._fault is None:
            return []
        if n_samples == 0 or (values["hr"] is None and values["spo2"] is None):
            self._good_since = None
            return []
        if self._good_since is None:
            self._good_since = end_ms - self._epoch_ms
        if end_ms - self._good_since < s.fault_clear_s * 1000:
            return []
        self._fault = None
        self._good_since = None
        return [
            self._event("fault_cleared", end_ms, None, "sensor_not_worn", "good readings again")
        ]

    def _set_fault(self, ts: int, reason: str) -> VitalsEvent:
        self._fault = reason
        for w in self._all_windows():
            w.clear()
        return self._event("fault", ts, None, "sensor_not_worn", reason)

    def _score(self, end_ms: int, v: dict[str, float | None]) -> list[VitalsEvent]:
        s = self.settings
        hr, spo2, rr, temp, sbp = v["hr"], v["spo2"], v["rr"], v["temp"], v["sbp"]
        sc: dict[str, int] = {}
        if hr is not None:
            sc["hr"] = score_pulse(hr)
        if spo2 is not None:
            sc["spo2"] = score_spo2(spo2, scale2=s.spo2_scale2, on_oxygen=s.on_supplemental_oxygen)
        if rr is not None:
            sc["rr"] = score_respiration_rate(rr)
        if temp is not None and s.temp_scored and not self._cool:
            sc["temp"] = score_temperature(temp)  # (a cooling skin is no hypothermia)
        if sbp is not None:
            sc["sbp"] = score_systolic_bp(sbp)
        if s.on_supplemental_oxygen:
            sc["o2"] = 2
        total = sum(sc.values())
        sc["total"] = total
        self._last_scores = sc
        scorable = hr is not None or spo2 is not None or rr is not None
        # while the values show poor contact, red PPG values may be artefacts: they count
        # toward the slow windows only (valid but not abnormal in the fast ones)
        dw = self._doubts
        weak = self._cool or dw.n_bad >= s.doubt_fraction * s.doubt_window_s / s.epoch_s

        clear = self._clear
        while clear and clear[0][0] < end_ms - 1_800_000:
            clear.popleft()
        for c, w in self._red.items():
            is_red = sc.get(c) == 3
            if c in _PPG:
                backed = not (weak and is_red) or self._backed(c, v, end_ms)
                octave = c == "hr" and not backed
                self._red_doubtful[c].add(end_ms, c in sc, is_red and not octave)
                self._red_weak[c].add(end_ms, c in sc, is_red and backed)
                is_red = is_red and not weak
                self._red_recurrent[c].add(end_ms, c in sc, is_red)
            w.add(end_ms, c in sc, is_red)
        if not weak and (hr is not None or rr is not None):
            clear.append((end_ms, hr, rr))
        high = scorable and total >= AGGREGATE_HIGH
        self._high_weak.add(end_ms, scorable, high)
        self._high.add(end_ms, scorable, high and not weak)
        self._medium.add(end_ms, scorable, scorable and total >= AGGREGATE_MEDIUM and not weak)
        fever = temp is not None and not self._cool and score_temperature(temp) == 2
        self._fever.add(end_ms, temp is not None, fever)

        deviations: list[str] = []
        hour = end_ms // 3_600_000
        for i, c in enumerate(_BASELINE):
            x = v[c]
            if c == "temp" and self._cool:
                x = None
            base = self._baseline[c]
            base.add(hour, x)
            est = base.estimate
            dev = False
            if x is not None and est is not None:
                limit = max(s.baseline_k * est.spread, s.baseline_min_delta[i])
                d = x - est.center
                dev = abs(d) >= limit if c == "hr" else (-d if c == "spo2" else d) >= limit
            self._dev[c].add(end_ms, x is not None, dev and not (weak and c in _PPG))

        epochs = s.critical_persistence_s / s.epoch_s
        fv, fb = s.min_valid_fraction, s.min_abnormal_fraction
        level: Severity | None = None
        reason = ""

        def fresh(c: str) -> bool:  # a cuff's systolic reading is carried forward: flat
            return c == "sbp" or not self._ch[c].flat_at(end_ms, self._suspect_ms)[1]

        def holding(ws: dict[str, _Window], span_s: float, bad: float) -> list[str]:
            return [c for c, w in ws.items() if w.holds(span_s / s.epoch_s, fv, bad) and fresh(c)]

        red = holding(self._red, s.critical_persistence_s, fb)
        recurrent = (
            []
            if red
            else holding(self._red_recurrent, self._recurrent_s, s.recurrent_abnormal_fraction)
        )
        weak_red = [] if red or recurrent else holding(self._red_weak, s.weak_persistence_s, fb)
        doubtful = (
            []
            if red or recurrent or weak_red
            else holding(self._red_doubtful, s.doubtful_persistence_s, fb)
        )
        if red:
            level, reason = (
                "critical",
                f"red NEWS2 sub-score ({', '.join(red)}) for {s.critical_persistence_s:.0f} s",
            )
        elif recurrent:
            level, reason = (
                "critical",
                f"red NEWS2 sub-score ({', '.join(recurrent)}) most of {self._recurrent_s:.0f} s",
            )
        elif self._high.holds(epochs, fv, fb):
            level, reason = (
                "critical",
                f"NEWS2 total >= {AGGREGATE_HIGH} for {s.critical_persistence_s:.0f} s",
            )
        elif weak_red or self._high_weak.holds(s.weak_persistence_s / s.epoch_s, fv, fb):
            what = (
                f"red NEWS2 sub-score ({', '.join(weak_red)})"
                if weak_red
                else (f"NEWS2 total >= {AGGREGATE_HIGH}")
            )
            level, reason = (
                "critical",
                f"{what} for {s.weak_persistence_s:.0f} s (signal in doubt)",
            )
        elif doubtful:
            level, reason = (
                "critical",
                f"red NEWS2 sub-score ({', '.join(doubtful)}) for"
                f" {s.doubtful_persistence_s:.0f} s (signal in doubt, nothing backs it)",
            )
        elif self._medium.holds(s.warning_persistence_s / s.epoch_s, fv, fb):
            level, reason = (
                "warning",
                f"NEWS2 total >= {AGGREGATE_MEDIUM} for {s.warning_persistence_s:.0f} s",
            )
        elif self._fever.holds(s.fever_persistence_s / s.epoch_s, fv, fb):
            level, reason = (
                "warning",
                f"temperature >= 39.1 °C for {s.fever_persistence_s:.0f} s",
            )
        else:
            n = s.baseline_persistence_s / s.epoch_s
            deviations = [c for c, w in self._dev.items() if w.holds(n, 0.5, 0.8)]
            if deviations:
                level = "warning"
                reason = (
                    f"change from personal baseline ({', '.join(deviations)})"
                    f" for {s.baseline_persistence_s / 60:.0f} min"
                )

        if self._level is not None:
            for b in self._baseline.values():
                b.exclude_current_hour()
        if level is not None and (
            self._level is None or (level == "critical" and self._level == "warning")
        ):
            self._level = level
            self._recovered_since = None
            return [self._event("alarm", end_ms, level, None, reason)]
        if self._level is None or not scorable:
            return []
        # hysteresis: raised at a red sub-score / total >= 5, cleared only below both bands
        dev_now = any(w.items and w.items[-1][2] for w in self._dev.values())
        worst = max((x for k, x in sc.items() if k not in ("total", "o2")), default=0)
        recovered = level is None and not dev_now and worst <= 2 and total <= AGGREGATE_MEDIUM - 2
        if not recovered:
            self._recovered_since = None
            return []
        if self._recovered_since is None:
            self._recovered_since = end_ms - self._epoch_ms
        if end_ms - self._recovered_since < s.clear_after_s * 1000:
            return []
        severity = self._level
        self._level = None
        self._recovered_since = None
        return [
            self._event(
                "alarm_cleared",
                end_ms,
                severity,
                None,
                f"back to near normal for {s.clear_after_s:.0f} s",
            )
        ]

    def _event(
        self,
        kind: Literal["alarm", "alarm_cleared", "fault", "fault_cleared"],
        ts: int,
        severity: Severity | None,
        fault: Literal["sensor_not_worn"] | None,
        reason: str,
    ) -> VitalsEvent:
        return VitalsEvent(
            kind=kind,
            ts_ms=ts,
            severity=severity,
            fault=fault,
            reason=reason,
            scores=dict(self._last_scores),
            readings=[dict(r) for r in self._readings],
        )

    # ----- introspection (for the hub's status page and tests) ---------------------------

    @property
    def alarm_level(self) -> Severity | None:
        """Severity of the episode in progress, or None."""
        return self._level

    @property
    def fault(self) -> str | None:
        """Reason of the active wear fault, or None."""
        return self._fault
