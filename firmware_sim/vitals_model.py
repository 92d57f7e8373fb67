"""Seeded model of an elder's vital signs as a wrist wearable reports them, one sample per second.

The model has two layers:

* the *true* physiology: circadian heart rate / respiration / temperature with sleep,
  slow random wander, activity bouts, optional sleep-apnoea desaturation dips and an
  optional injected deterioration (hypoxaemia, tachycardia, bradycardia, tachypnoea, fever);
* the *device*: measurement noise and quantisation, dropouts, motion artefacts (PPG heart
  rate locking onto the walking cadence, falsely low SpO2), loose-strap episodes, firmware
  freezes (flat lines), single garbage values, taking the wearable off (temperature decays
  toward ambient, no pulse) and a flat-battery end.

Everything is a pure function of ``seed`` and time: the signal is synthesised in one-hour
blocks (vectorised numpy), the random schedule of events per day, so the streaming API
(:meth:`ElderVitalsModel.sample`, used by the simulated wearable) and the batch API
(:meth:`ElderVitalsModel.simulate`, used to write datasets) return the same numbers.

Units: time in s since the model's start, heart rate bpm, SpO2 %, respiration rate
breaths/min, temperature °C (a core-equivalent estimate, as most wearables report),
``motion`` 0..1 (fraction of full-scale wrist activity), ``quality`` 0..1 (device's
own signal-quality index).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CHANNELS",
    "CRITICAL_KINDS",
    "SCENARIOS",
    "DETERIORATION_KINDS",
    "Deterioration",
    "DeteriorationKind",
    "ElderProfile",
    "ElderVitalsModel",
    "RealHeart",
    "Recording",
    "Shape",
]

DeteriorationKind = Literal[
    "hypoxaemia", "tachycardia", "bradycardia", "tachypnoea", "fever", "sepsis"
]
DETERIORATION_KINDS: tuple[DeteriorationKind, ...] = (
    "hypoxaemia",
    "tachycardia",
    "bradycardia",
    "tachypnoea",
    "fever",
)
"""The kinds the original simulated datasets take in turn (``sepsis`` is asked for by name)."""
CRITICAL_KINDS: frozenset[str] = frozenset(
    {"hypoxaemia", "tachycardia", "bradycardia", "tachypnoea", "sepsis"}
)
"""Kinds that reach a red (3) NEWS2 sub-score (sepsis: a red one or a total ≥ 7).

Fever is tuned to the warning level (temp ≥ 39.1 °C).
"""
Shape = Literal[
    "ramp",
    "fast_ramp",
    "slow_ramp",
    "abrupt",
    "oscillating",
    "staircase",
    "intermittent",
    "irregular",
    "rigors",
]
"""How a deterioration unfolds: ``ramp`` (the kind's usual pace), ``fast_ramp`` (1–5 min),
``slow_ramp`` (15–40 min), ``abrupt`` (seconds), ``oscillating`` (periodic dips deepening to
the target), ``staircase`` (3–5 steps), ``intermittent`` (runs of 2:1 heart block between
conducted beats), ``irregular`` (breathing rate swinging widely around a high mean),
``rigors`` (fever rising in steps, each after a bout of shivering)."""
SCENARIOS: tuple[tuple[DeteriorationKind, Shape], ...] = (
    ("hypoxaemia", "fast_ramp"),
    ("hypoxaemia", "slow_ramp"),
    ("hypoxaemia", "oscillating"),
    ("hypoxaemia", "staircase"),
    ("tachycardia", "abrupt"),
    ("tachycardia", "slow_ramp"),
    ("bradycardia", "fast_ramp"),
    ("bradycardia", "intermittent"),
    ("tachypnoea", "slow_ramp"),
    ("tachypnoea", "irregular"),
    ("sepsis", "slow_ramp"),
    ("fever", "slow_ramp"),
    ("fever", "rigors"),
)
"""Every (kind, shape) the real-heart-rate evaluation injects."""

CHANNELS = ("hr", "spo2", "rr", "temp")
BLOCK_S = 3600
DAY_S = 86400
KNOT_S = 300.0
AMBIENT_C = 22.0

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class ElderProfile:
    """An elder's normal physiology and how often their wearable misbehaves (rates per day/hour)."""

    hr_day_bpm: float = 74.0
    hr_night_bpm: float = 61.0
    spo2_pct: float = 96.5
    rr_day_per_min: float = 16.0
    rr_night_per_min: float = 14.0
    temp_c: float = 36.6
    sleep_start_h: float = 22.5
    sleep_end_h: float = 6.5
    spo2_scale2: bool = False
    """Chronic hypercapnic respiratory failure: baseline SpO2 88–92 %, care plan uses scale 2."""
    apnoea_dips_per_sleep_h: float = 0.0
    activity_bouts_per_day: float = 5.0
    arm_movements_per_h: float = 2.0
    dropouts_per_day: float = 24.0
    loose_strap_per_day: float = 0.4
    take_offs_per_day: float = 0.6
    freezes_per_day: float = 0.15
    spikes_per_h: float = 0.5
    offbody_reports_zeros: bool = False
    """Some devices send 0 instead of nothing when no pulse is found."""
    cold_hands_per_day: float = 0.0
    """Poor-perfusion episodes (10–90 min): SpO2 falsely low and scattered, many gaps."""
    octave_share: float = 0.0
    """Share of loose-strap and cold-hand episodes in which the heart rate locks onto half or
    twice the true rate for 1–10 min (besides the single-sample flips every loose strap has)."""

    @classmethod
    def random(cls, rng: np.random.Generator) -> ElderProfile:
        """A plausible elder (65–95 years) drawn from ``rng``."""
        hr_day = float(rng.uniform(64, 84))
        rr_day = float(rng.uniform(14, 19))
        scale2 = bool(rng.random() < 0.1)
        return cls(
            hr_day_bpm=hr_day,
            hr_night_bpm=hr_day - float(rng.uniform(7, 16)),
            spo2_pct=float(rng.uniform(89.0, 92.0) if scale2 else rng.uniform(94.5, 98.0)),
            rr_day_per_min=rr_day,
            rr_night_per_min=rr_day - float(rng.uniform(1, 3)),
            temp_c=float(rng.uniform(36.2, 37.0)),
            sleep_start_h=float(rng.uniform(21.0, 23.5)),
            sleep_end_h=float(rng.uniform(5.5, 8.0)),
            spo2_scale2=scale2,
            apnoea_dips_per_sleep_h=float(rng.uniform(4, 20)) if rng.random() < 0.25 else 0.0,
            activity_bouts_per_day=float(rng.uniform(2, 8)),
            arm_movements_per_h=float(rng.uniform(1, 4)),
            dropouts_per_day=float(rng.uniform(10, 40)),
            loose_strap_per_day=float(rng.uniform(0.1, 0.8)),
            take_offs_per_day=float(rng.uniform(0.2, 1.2)),
            freezes_per_day=float(rng.uniform(0.0, 0.3)),
            spikes_per_h=float(rng.uniform(0.1, 1.0)),
            offbody_reports_zeros=bool(rng.random() < 0.3),
        )


@dataclass(frozen=True)
class Deterioration:
    """A deterioration starting at ``onset_s`` and reaching ``target`` after ``ramp_s``.

    ``target`` is the final value of the main signal (SpO2 %, HR bpm, RR /min, temp °C);
    ``None`` draws one from the model's seed. A short ``ramp_s`` (e.g. 60 s) compresses the
    onset for end-to-end tests.
    """

    kind: DeteriorationKind
    onset_s: float
    ramp_s: float | None = None
    target: float | None = None
    shape: Shape = "ramp"


@dataclass(frozen=True)
class Recording:
    """A simulated recording at 1 Hz; NaN = not reported; rows with ``present`` False are absent."""

    t_s: F64
    present: NDArray[np.bool_]
    hr: F64
    spo2: F64
    rr: F64
    temp: F64
    motion: F64
    quality: F64
    true_hr: F64
    true_spo2: F64
    true_rr: F64
    true_temp: F64


@dataclass(frozen=True)
class _Events:
    """Intervals (start_s, end_s, parameter) of one kind of event in one day."""

    start: F64
    end: F64
    param: F64


_EVENT_KINDS = (
    "activity",
    "arm",
    "dropout",
    "loose",
    "takeoff",
    "freeze",
    "spike",
    "apnoea",
    "cold",
    "octave",
)


def _centred_median(x: F64, width: int) -> F64:
    """Centred running median over ``width`` samples (NaN ignored; edges padded)."""
    half = width // 2
    pad = np.concatenate([np.full(half, x[0]), x, np.full(half, x[-1])])
    win = np.lib.stride_tricks.sliding_window_view(pad, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window gives NaN
        return np.asarray(np.nanmedian(win, axis=1), dtype=float)


def _smoothstep(x: F64) -> F64:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _moving_mean(x: F64, width: int) -> F64:
    """Centred moving mean of ``x`` (no NaN) over ``width`` samples, edges shortened."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(x.size)
    lo = np.clip(i - width // 2, 0, x.size)
    hi = np.clip(i + width // 2 + 1, 0, x.size)
    return np.asarray((c[hi] - c[lo]) / (hi - lo), dtype=float)


class RealHeart:
    """A recorded heart rate (bpm, one value a second, NaN = no beat detected) and what the
    model derives from it: activity 0..1 (the rate above the elder's resting rate of the
    hour), sleep (the lowest-rate half-hours of the day) and the local hour at t = 0 (the
    middle of the longest sleep falls at 03:00). The recording's own variability, ectopy and
    gaps are kept as they are."""

    def __init__(self, hr_bpm: F64) -> None:
        hr = np.asarray(hr_bpm, dtype=float)
        n = hr.size
        if n < 3600:
            raise ValueError("a real heart rate needs at least an hour of samples")
        self.hr = hr
        ok = np.isfinite(hr)
        idx = np.maximum.accumulate(np.where(ok, np.arange(n), 0))
        filled = np.where(ok, hr, hr[idx])
        filled[~np.isfinite(filled)] = float(np.nanmedian(hr))
        smooth = _moving_mean(filled, 61)
        self.trend = _moving_mean(filled, 301)
        """The rate's 5-min moving mean: deteriorations move it, keeping the beat-to-beat
        variability around it."""
        # resting rate: lowest 5-min median within the surrounding hour
        block = 300
        nb = -(-n // block)
        pad = np.concatenate([filled, np.full(nb * block - n, filled[-1])])
        med5 = np.median(pad.reshape(nb, block), axis=1)
        rest_b = np.array([med5[max(0, b - 6) : b + 7].min() for b in range(nb)])
        rest = np.interp(np.arange(n), np.arange(nb) * block + block / 2, rest_b)
        self.activity = np.clip((smooth - rest - 10.0) / 30.0, 0.0, 1.0)
        # sleep: half-hours whose median is in the lowest 30 % of the day's
        half = 1800
        nh = -(-n // half)
        padh = np.concatenate([filled, np.full(nh * half - n, filled[-1])])
        medh = np.median(padh.reshape(nh, half), axis=1)
        asleep_h = (medh <= np.quantile(medh, 0.3)).astype(float)
        asleep_h = np.convolve(asleep_h, np.ones(3) / 3, mode="same") >= 0.5  # fill lone gaps
        self.awake = 1.0 - np.interp(np.arange(n), np.arange(nh) * half + half / 2, asleep_h)
        runs = np.flatnonzero(np.diff(np.concatenate([[0], asleep_h.astype(int), [0]])))
        starts, ends = runs[::2], runs[1::2]
        if starts.size:
            k = int(np.argmax(ends - starts))
            mid_s = (starts[k] + ends[k]) / 2 * half
        else:
            mid_s = float(np.argmin(smooth))
        self.start_hour = float((3.0 - mid_s / 3600.0) % 24.0)

    @property
    def duration_s(self) -> int:
        return int(self.hr.size)

    def piece(self, start_s: int, length_s: int) -> RealHeart:
        """``length_s`` seconds from ``start_s``, with activity and sleep as read from the
        whole recording (an hour's resting rate needs the hour around it)."""
        out = object.__new__(RealHeart)
        sl = slice(int(start_s), int(start_s) + int(length_s))
        out.hr, out.activity, out.awake = self.hr[sl], self.activity[sl], self.awake[sl]
        out.trend = self.trend[sl]
        out.start_hour = (self.start_hour + start_s / 3600.0) % 24.0
        return out

    def window(self, t: F64, arr: F64, fill: float) -> F64:
        """``arr`` at integer seconds ``t`` (``fill`` outside the recording)."""
        i = t.astype(int)
        inside = (i >= 0) & (i < arr.size)
        out = np.full(t.size, fill)
        out[inside] = arr[i[inside]]
        return out


class ElderVitalsModel:
    """One elder wearing one wearable; deterministic for a given seed and arguments.

    ``start_hour`` is the local time of day at t = 0 s. ``take_off_at_s`` removes the
    wearable for good at that time; ``battery_dies_at_s`` ends reporting after a 15-min
    degradation; ``artefacts=False`` gives clean (noise-only) measurements. ``real_hr``
    (bpm per second from t = 0, NaN = no beat) replaces the modelled heart rate, activity and
    sleep by those of a recording (and ``start_hour`` by the one it implies); the wearable
    sends nothing where the recording has no beat or has ended.
    """

    def __init__(
        self,
        seed: int,
        profile: ElderProfile | None = None,
        *,
        start_hour: float = 8.0,
        deterioration: Deterioration | None = None,
        take_off_at_s: float | None = None,
        battery_dies_at_s: float | None = None,
        artefacts: bool = True,
        real_hr: F64 | RealHeart | None = None,
    ) -> None:
        self.seed = int(seed)
        self.profile = profile or ElderProfile.random(np.random.default_rng([self.seed, 0]))
        self.real = (
            real_hr if isinstance(real_hr, RealHeart) or real_hr is None else RealHeart(real_hr)
        )
        self.start_hour = float(start_hour) if self.real is None else self.real.start_hour
        self.deterioration = self._resolve(deterioration)
        self.take_off_at_s = take_off_at_s
        self.battery_dies_at_s = battery_dies_at_s
        self.artefacts = artefacts
        self._block = lru_cache(maxsize=4)(self._make_block)
        self._day_events = lru_cache(maxsize=8)(self._make_day_events)
        self._knots = lru_cache(maxsize=8)(self._make_knots)

    # ----- public API ------------------------------------------------------------------

    def sample(self, t_s: float) -> dict[str, float | None] | None:
        """The wearable's report at ``t_s`` (s since start, floored to the second), or None if
        it sends nothing then. Keys: ``hr``, ``spo2``, ``rr``, ``temp``, ``motion``, ``quality``."""
        i = int(math.floor(t_s))
        if i < 0:
            raise ValueError("t_s must be >= 0")
        b = self._block(i // BLOCK_S)
        j = i % BLOCK_S
        if not b.present[j]:
            return None
        out: dict[str, float | None] = {}
        for name in (*CHANNELS, "motion", "quality"):
            v = float(getattr(b, name)[j])
            out[name] = None if math.isnan(v) else v
        return out

    def iter_samples(
        self, start_s: float = 0.0, end_s: float | None = None
    ) -> Iterator[tuple[float, dict[str, float | None]]]:
        """(t_s, sample) for every reported second in [start_s, end_s); endless if no end."""
        i = int(math.ceil(start_s))
        while end_s is None or i < end_s:
            s = self.sample(i)
            if s is not None:
                yield float(i), s
            i += 1

    def simulate(self, duration_s: float, start_s: float = 0.0) -> Recording:
        """All seconds of [start_s, start_s + duration_s) as arrays (vectorised)."""
        i0, i1 = int(math.ceil(start_s)), int(math.ceil(start_s + duration_s))
        parts = []
        for k in range(i0 // BLOCK_S, (i1 - 1) // BLOCK_S + 1):
            b = self._block(k)
            lo, hi = max(i0 - k * BLOCK_S, 0), min(i1 - k * BLOCK_S, BLOCK_S)
            parts.append({f: getattr(b, f)[lo:hi] for f in Recording.__dataclass_fields__})
        return Recording(
            **{f: np.concatenate([p[f] for p in parts]) for f in Recording.__dataclass_fields__}
        )

    def level_reached_s(self, duration_s: float) -> float | None:
        """First time (s) the *true* signal reaches the NEWS2 level the deterioration is tuned
        for (red sub-score; sepsis: red or a total ≥ 7; fever: temp ≥ 39.1 °C), or None.

        The true signal is read as a nurse charts it: its centred 2-min median, a settled
        value rather than the trough of one dip (for a ramp the two are the same)."""
        d = self.deterioration
        if d is None:
            return None
        start = max(0.0, d.onset_s - 60.0)
        rec = self.simulate(max(0.0, duration_s - start), start_s=start)
        med = {c: _centred_median(getattr(rec, f"true_{c}"), 121) for c in CHANNELS}
        spo2_red = 83.5 if self.profile.spo2_scale2 else 91.5
        if d.kind == "hypoxaemia":
            hit = med["spo2"] < spo2_red
        elif d.kind == "tachycardia":
            hit = med["hr"] >= 130.5
        elif d.kind == "bradycardia":
            hit = med["hr"] < 40.5
        elif d.kind == "tachypnoea":
            hit = med["rr"] >= 24.5
        elif d.kind == "sepsis":
            red = (med["hr"] >= 130.5) | (med["rr"] >= 24.5) | (med["spo2"] < spo2_red)
            total = (
                np.select([med["hr"] >= 130.5, med["hr"] >= 110.5, med["hr"] >= 90.5], [3, 2, 1])
                + np.select([med["rr"] >= 24.5, med["rr"] >= 20.5], [3, 2])
                + np.select([med["temp"] >= 39.05, med["temp"] >= 38.05], [2, 1])
                + np.select([med["spo2"] < 91.5, med["spo2"] < 93.5, med["spo2"] < 95.5], [3, 2, 1])
            )
            hit = red | (total >= 7)
        else:
            hit = med["temp"] >= 39.05
        idx = np.flatnonzero(hit & (rec.t_s >= d.onset_s))
        return float(rec.t_s[idx[0]]) if idx.size else None

    # ----- schedule --------------------------------------------------------------------

    def _resolve(self, d: Deterioration | None) -> Deterioration | None:
        if d is None:
            return None
        rng = np.random.default_rng([self.seed, 9])
        ramp_ranges = {
            "hypoxaemia": (300, 1800),
            "tachycardia": (30, 600),
            "bradycardia": (30, 600),
            "tachypnoea": (600, 2400),
            "fever": (1800, 7200),
            "sepsis": (900, 3600),
        }
        scale2 = self.profile.spo2_scale2
        targets = {
            "hypoxaemia": (76.0, 82.0) if scale2 else (83.0, 89.0),
            "tachycardia": (136.0, 165.0),
            "bradycardia": (30.0, 38.0),
            "tachypnoea": (27.0, 34.0),
            "fever": (39.3, 40.2),
            "sepsis": (26.0, 31.0),  # respiration; pulse and temperature follow
        }
        shape_ramps = {
            "fast_ramp": (60, 300),
            "slow_ramp": (900, 2400),
            "abrupt": (2, 10),
            "oscillating": (900, 2400),
            "staircase": (900, 2400),
            "intermittent": (1800, 3600),
            "irregular": (600, 1800),
            "rigors": (1800, 5400),
        }
        lo, hi = shape_ramps.get(d.shape, ramp_ranges[d.kind])
        ramp = d.ramp_s if d.ramp_s is not None else float(rng.uniform(lo, hi))
        target = d.target if d.target is not None else float(rng.uniform(*targets[d.kind]))
        return replace(d, ramp_s=max(float(ramp), 1.0), target=target)

    def _make_knots(self, chunk: int) -> F64:
        """Slow wander (unit variance) of 4 signals at 5-min knots for one day: shape (4, 289)."""
        rng = np.random.default_rng([self.seed, 2, chunk])
        n = int(DAY_S / KNOT_S) + 1
        return rng.standard_normal((4, n))

    def _wander(self, t: F64) -> F64:
        """Linearly interpolated wander at times ``t`` (s): shape (4, len(t))."""
        day = int(t[0] // DAY_S)
        knots = np.concatenate([self._knots(day)[:, :-1], self._knots(day + 1)], axis=1)
        x = (t - day * DAY_S) / KNOT_S
        i = np.floor(x).astype(int)
        f = x - i
        return knots[:, i] * (1 - f) + knots[:, i + 1] * f

    def _make_day_events(self, day: int) -> dict[str, _Events]:
        p = self.profile
        rng = np.random.default_rng([self.seed, 3, day])

        def draw(rate: float, dur: tuple[float, float], log: bool = False) -> _Events:
            n = int(rng.poisson(max(rate, 0.0)))
            start = day * DAY_S + rng.uniform(0, DAY_S, n)
            lo, hi = dur
            d = np.exp(rng.uniform(np.log(lo), np.log(hi), n)) if log else rng.uniform(lo, hi, n)
            return _Events(start, start + d, rng.random(n))

        sleep_h = (p.sleep_end_h - p.sleep_start_h) % 24
        ev = {
            "activity": draw(p.activity_bouts_per_day, (300, 1800)),
            "arm": draw(p.arm_movements_per_h * 24, (10, 60)),
            "dropout": draw(p.dropouts_per_day, (3, 120), log=True),
            "loose": draw(p.loose_strap_per_day, (600, 7200), log=True),
            "takeoff": draw(p.take_offs_per_day, (900, 3600)),
            "freeze": draw(p.freezes_per_day, (300, 1200)),
            "spike": draw(p.spikes_per_h * 24, (1, 1.5)),
            "apnoea": draw(p.apnoea_dips_per_sleep_h * sleep_h, (15, 40)),
        }
        # activity, arm movements and taking the wearable off happen awake; apnoea asleep
        for name, want_awake in (("activity", 1), ("arm", 1), ("takeoff", 1), ("apnoea", 0)):
            e = ev[name]
            keep = (self._awake(e.start) > 0.5) == bool(want_awake)
            ev[name] = _Events(e.start[keep], e.end[keep], e.param[keep])
        e = ev["apnoea"]  # an apnoea ends in an arousal: dips never overlap, >= 30 s apart
        order = np.argsort(e.start)
        start, end, par = e.start[order], e.end[order], e.param[order]
        keep = np.ones(start.size, bool)
        free_from = -np.inf
        for i in range(start.size):
            keep[i] = start[i] >= free_from
            if keep[i]:
                free_from = end[i] + 30.0
        ev["apnoea"] = _Events(start[keep], end[keep], par[keep])
        # poor perfusion ("cold hands") and octave locks: a separate random stream, so the
        # models of earlier seeds keep their numbers
        rng2 = np.random.default_rng([self.seed, 5, day])
        n = int(rng2.poisson(max(p.cold_hands_per_day, 0.0)))
        start = day * DAY_S + rng2.uniform(0, DAY_S, n)
        dur = np.exp(rng2.uniform(np.log(600), np.log(5400), n))
        ev["cold"] = _Events(start, start + dur, rng2.random(n))
        d = self.deterioration
        if d is not None:  # an ill elder rests; keep the device on while deteriorating
            for name in ("activity", "loose", "takeoff", "freeze", "cold"):
                e = ev[name]
                keep = e.end < d.onset_s - 600
                ev[name] = _Events(e.start[keep], e.end[keep], e.param[keep])
        octs: list[tuple[float, float, float]] = []
        for name in ("loose", "cold"):
            e = ev[name]
            for s0, e0 in zip(e.start, e.end, strict=True):
                if rng2.random() < p.octave_share:
                    length = min(float(rng2.uniform(60, 600)), e0 - s0)
                    at = s0 + float(rng2.uniform(0, max(e0 - s0 - length, 0.0)))
                    octs.append((at, at + length, float(rng2.random())))
        o = np.array(octs, dtype=float).reshape(-1, 3)
        ev["octave"] = _Events(o[:, 0], o[:, 1], o[:, 2])
        return ev

    def _events(self, kind: str, t0: float, t1: float) -> _Events:
        parts = [
            self._day_events(d)[kind]
            for d in range(int(t0 // DAY_S) - 1, int(t1 // DAY_S) + 1)
            if d >= 0
        ]
        start = np.concatenate([e.start for e in parts])
        end = np.concatenate([e.end for e in parts])
        param = np.concatenate([e.param for e in parts])
        keep = (end > t0) & (start < t1)
        return _Events(start[keep], end[keep], param[keep])

    def _awake(self, t: F64) -> F64:
        """1 awake, 0 asleep, linear 30-min transitions."""
        if self.real is not None:
            return self.real.window(np.asarray(t, dtype=float), self.real.awake, 1.0)
        p = self.profile
        h = (self.start_hour + np.asarray(t, dtype=float) / 3600.0) % 24.0
        since_sleep = (h - p.sleep_start_h) % 24.0
        sleep_len = (p.sleep_end_h - p.sleep_start_h) % 24.0
        into = np.clip(since_sleep / 0.5, 0, 1)
        out_of = np.clip((since_sleep - sleep_len) / 0.5, 0, 1)
        asleep = np.where(since_sleep < sleep_len + 0.5, into * (1 - out_of), 0.0)
        return np.asarray(1.0 - asleep, dtype=float)

    # ----- synthesis -------------------------------------------------------------------

    def _make_block(self, k: int) -> Recording:
        p = self.profile
        t = (k * BLOCK_S + np.arange(BLOCK_S)).astype(float)
        n = t.size
        t0, t1 = float(t[0]), float(t[-1] + 1)
        rng = np.random.default_rng([self.seed, 1, k])
        awake = self._awake(t)
        hour = (self.start_hour + t / 3600.0) % 24.0
        w = self._wander(t)

        def mask(kind: str) -> tuple[NDArray[np.bool_], F64, F64]:
            """Where events of ``kind`` are active, their parameter and their start time (s)."""
            e = self._events(kind, t0, t1)
            m = np.zeros(n, bool)
            par = np.zeros(n)
            since = np.zeros(n)
            for s, en, pa in zip(e.start, e.end, e.param, strict=True):
                lo, hi = int(max(math.floor(s - t0), 0)), int(min(math.ceil(en - t0), n))
                m[lo:hi] = True
                par[lo:hi] = pa
                since[lo:hi] = s
            return m, par, since

        # activity level 0..1 with 60-s ramps
        act = np.zeros(n)
        ev = self._events("activity", t0, t1)
        for s, en, pa in zip(ev.start, ev.end, ev.param, strict=True):
            level = 0.4 + 0.6 * pa
            act = np.maximum(act, level * np.clip(np.minimum(t - s, en - t) / 60.0, 0, 1))
        arm, _, _ = mask("arm")
        apnoea, apnoea_depth, _ = mask("apnoea")

        # true physiology
        real = self.real
        d = self.deterioration
        if real is not None:  # a recorded heart: its activity and its rate
            act = real.window(t, real.activity, 0.0)
            if d is not None:  # an ill elder rests
                act = np.where(t >= d.onset_s - 600, 0.0, act)
            hr = real.window(t, real.hr, np.nan)
        else:
            hr = p.hr_night_bpm + (p.hr_day_bpm - p.hr_night_bpm) * awake + 3.0 * w[0]
            hr = hr + 30.0 * act
        rr = p.rr_night_per_min + (p.rr_day_per_min - p.rr_night_per_min) * awake
        rr = rr + 0.8 * w[1] + 5.0 * act
        spo2 = p.spo2_pct - 0.8 * (1 - awake) + 0.5 * w[2] - 0.5 * act
        spo2 = spo2 - apnoea * (3.0 + 6.0 * apnoea_depth)
        temp = p.temp_c + 0.3 * np.cos((hour - 18.0) / 24.0 * 2 * np.pi) + 0.08 * w[3]

        shiver = np.zeros(n)
        if d is not None:
            hr, spo2, rr, temp, shiver = self._deteriorate(d, t, w, hr, spo2, rr, temp)
        spo2 = np.minimum(spo2, 99.5)
        true = (hr.copy(), spo2.copy(), rr.copy(), temp.copy())

        # device: noise, motion, quality
        m_hr = hr + rng.normal(0, 1.5, n)
        m_spo2 = spo2 + rng.normal(0, 0.8, n)
        m_rr = rr + rng.normal(0, 1.0, n)
        m_temp = temp + rng.normal(0, 0.05, n)
        motion = 0.05 * awake + 0.6 * act + 0.6 * arm + shiver + rng.normal(0, 0.03, n)
        motion = np.clip(motion, 0, 1)
        quality = np.clip(0.95 - 0.5 * motion + rng.normal(0, 0.03, n), 0, 1)
        present = np.ones(n, bool)
        m_rr[rng.random(n) < 0.1] = np.nan

        if self.artefacts:
            # PPG during motion (artefact size grows with motion): walks sometimes lock HR
            # onto the cadence, SpO2 reads low and scattered or not at all
            lock = np.zeros(n, bool)
            cadence = np.zeros(n)
            for s, en, pa in zip(ev.start, ev.end, ev.param, strict=True):
                if pa < 0.35:
                    lo, hi = int(max(s - t0, 0)), int(min(en - t0, n))
                    lock[lo:hi] = True
                    cadence[lo:hi] = 100.0 + 70.0 * pa
            lock &= motion > 0.3
            m_hr = m_hr + rng.normal(0, 1, n) * 12.0 * motion
            m_hr = np.where(lock, cadence + rng.normal(0, 4.0, n), m_hr)
            m_spo2 = m_spo2 - motion * (rng.uniform(0, 12, n) + rng.normal(0, 4, n))
            m_spo2[rng.random(n) < 0.7 * motion] = np.nan
            m_rr = m_rr + rng.normal(0, 1, n) * 8.0 * motion

            loose, loose_par, _ = mask("loose")
            m_spo2 = np.where(loose, m_spo2 - 2 - 5 * loose_par + rng.normal(0, 2.5, n), m_spo2)
            m_hr = np.where(loose, m_hr + rng.normal(0, 8.0, n), m_hr)
            flip = loose & (rng.random(n) < 0.05)
            m_hr[flip] *= rng.choice([0.5, 2.0], int(flip.sum()))
            m_temp = np.where(loose, m_temp - 1 - 2 * loose_par, m_temp)
            quality = np.where(loose, quality * (0.7 - 0.5 * loose_par), quality)
            present &= ~(loose & (rng.random(n) < 0.3))

            if p.cold_hands_per_day > 0 or p.octave_share > 0:
                rng2 = np.random.default_rng([self.seed, 6, k])
                cold, cold_par, _ = mask("cold")
                drop_spo2 = 3.0 + 6.0 * cold_par + rng2.normal(0, 1.2 + 1.5 * cold_par, n)
                m_spo2 = np.where(cold, m_spo2 - drop_spo2, m_spo2)
                m_hr = np.where(cold, m_hr + rng2.normal(0, 4.0, n), m_hr)
                m_temp = np.where(cold, m_temp - 0.5 - 1.5 * cold_par, m_temp)
                quality = np.where(cold, quality * (0.6 - 0.3 * cold_par), quality)
                present &= ~(cold & (rng2.random(n) < 0.4))
                octave, octave_par, _ = mask("octave")
                m_hr = np.where(octave, m_hr * np.where(octave_par < 0.6, 0.5, 2.0), m_hr)

            off, _, off_start = mask("takeoff")
            self._off_body(off, t - off_start, m_hr, m_spo2, m_rr, m_temp, quality)

            freeze, _, _ = mask("freeze")
            idx = np.maximum.accumulate(np.where(freeze, 0, np.arange(n)))
            for arr in (m_hr, m_spo2, m_rr, m_temp):
                arr[freeze] = arr[idx[freeze]]

            spike, spike_par, _ = mask("spike")
            garbage = np.array([0.0, 255.0, 127.0, -1.0, 1e4, 300.0])
            which = (spike_par * 4).astype(int)
            values = garbage[(spike_par * 97).astype(int) % garbage.size]
            for c, arr in enumerate((m_hr, m_spo2, m_rr, m_temp)):
                sel = spike & (which == c)
                arr[sel] = values[sel]

            drop, _, _ = mask("dropout")
            present &= ~drop

        if real is not None:
            present &= np.isfinite(true[0])  # no beat recorded, or past the recording's end

        if self.take_off_at_s is not None:
            off = t >= self.take_off_at_s
            self._off_body(off, t - self.take_off_at_s, m_hr, m_spo2, m_rr, m_temp, quality)
        if self.battery_dies_at_s is not None:
            to_end = self.battery_dies_at_s - t
            fading = (to_end > 0) & (to_end < 900)
            fade = np.clip(1 - to_end / 900.0, 0, 1) * fading
            m_spo2 = m_spo2 - 8 * fade**2 + rng.normal(0, 3.0, n) * fade
            m_hr = m_hr + rng.normal(0, 10.0, n) * fade
            quality = quality * (1 - 0.8 * fade)
            present &= ~(rng.random(n) < 0.8 * fade)
            last = (to_end > 0) & (to_end <= 60)
            for arr in (m_hr, m_spo2, m_rr):
                arr[last] = 0.0
            present &= to_end > 0

        m_hr, m_spo2, m_rr = np.round(m_hr), np.round(np.minimum(m_spo2, 100.0)), np.round(m_rr)
        m_temp = np.round(m_temp, 1)
        motion, quality = np.round(motion, 2), np.round(quality, 2)
        return Recording(t, present, m_hr, m_spo2, m_rr, m_temp, motion, quality, *true)

    def _deteriorate(
        self, d: Deterioration, t: F64, w: F64, hr: F64, spo2: F64, rr: F64, temp: F64
    ) -> tuple[F64, F64, F64, F64, F64]:
        """The true signals with deterioration ``d`` applied (the main signal moves to the
        target in the deterioration's shape, companions by a plausible amount), and the
        shivering of rigors (added to motion)."""
        assert d.ramp_s is not None and d.target is not None
        p = self.profile
        x = (t - d.onset_s) / d.ramp_s
        r = _smoothstep(x)
        shiver = np.zeros(t.size)
        rng = np.random.default_rng([self.seed, 9, 2])  # the same for every block
        real = self.real is not None
        if real:  # the recording's 5-min trend: deteriorations move it
            assert self.real is not None
            trend = self.real.window(t, self.real.trend, p.hr_day_bpm)
        steps = int(rng.integers(3, 6))
        stair = sum(_smoothstep((x - j / steps) * d.ramp_s / 30.0) for j in range(steps)) / steps

        def to_hr(target: float, r: F64) -> F64:
            if real:  # the trend moves to the target, the recording's variability stays
                # around it (scaled down with the rate when slowing)
                up = hr + r * (target - trend)
                down = hr * (1 - r + r * target / trend)
                return np.where(target > trend, up, down)
            return (1 - r) * hr + r * (target + 3.0 * w[0])

        if d.kind == "hypoxaemia":
            rs = stair if d.shape == "staircase" else r
            spo2 = (1 - rs) * spo2 + rs * (d.target + 0.5 * w[2])
            if d.shape == "oscillating":
                period = float(rng.uniform(60, 180))
                amp = float(rng.uniform(2.0, 4.0))
                spo2 = spo2 + amp * r * np.sin(2 * np.pi * (t - d.onset_s) / period)
            rr, hr = rr + 6.0 * rs, hr + 15.0 * rs
        elif d.kind == "tachycardia":
            hr = to_hr(d.target, r)
        elif d.kind == "bradycardia" and d.shape == "intermittent":
            # runs of 2:1 block (rate halved, at most the target) between conducted runs,
            # the blocked runs growing longer until the block persists at the ramp's end
            blocked = np.zeros(t.size, bool)
            at = d.onset_s
            while at < d.onset_s + d.ramp_s:
                grow = 1.0 + 2.0 * (at - d.onset_s) / d.ramp_s
                b = float(rng.uniform(30, 120)) * grow
                blocked |= (t >= at) & (t < at + b)
                at += b + float(rng.uniform(10, 60))
            blocked |= t >= at
            hr = np.where(blocked, np.minimum(0.5 * hr, d.target + 2.0 * w[0]), hr)
        elif d.kind == "bradycardia":
            hr = to_hr(d.target, r)
        elif d.kind == "tachypnoea":
            rr = (1 - r) * rr + r * (d.target + 0.8 * w[1])
            if d.shape == "irregular":  # breathing swings around the high mean every 10-20 s
                knots = rng.normal(0, 4.0, int(24 * 3600 / 15) + 2)
                xi = np.clip((t - d.onset_s) / 15.0, 0, knots.size - 2)
                i = xi.astype(int)
                f = xi - i
                rr = rr + r * (knots[i] * (1 - f) + knots[i + 1] * f)
            hr, spo2 = hr + 10.0 * r, spo2 - 2.0 * r
        elif d.kind == "sepsis":
            hr_target = float(rng.uniform(112, 135))
            hr = to_hr(hr_target, r) if real else (1 - r) * hr + r * (hr_target + 3.0 * w[0])
            rr = (1 - r) * rr + r * (d.target + 0.8 * w[1])
            temp = temp + r * float(rng.uniform(1.9, 3.0))
            spo2 = spo2 - 3.0 * r
        else:  # fever
            rs = r
            if d.shape == "rigors":  # each step of temperature follows a bout of shivering
                rs = stair
                for j in range(steps):
                    s0 = d.onset_s + j / steps * d.ramp_s - float(rng.uniform(180, 480))
                    bout = (t >= s0) & (t < d.onset_s + j / steps * d.ramp_s)
                    shiver = np.where(bout, float(rng.uniform(0.35, 0.6)), shiver)
                hr = hr + 15.0 * (shiver > 0)
                rr = rr + 4.0 * (shiver > 0)
            dt = rs * (d.target - p.temp_c)
            temp, hr, rr = temp + dt, hr + 10.0 * dt, rr + 2.0 * dt
        return hr, spo2, rr, temp, shiver

    def _off_body(
        self,
        off: NDArray[np.bool_],
        off_for_s: F64,
        hr: F64,
        spo2: F64,
        rr: F64,
        temp: F64,
        quality: F64,
    ) -> None:
        """Wearable off the wrist (``off_for_s`` s so far): no pulse, temperature decays
        toward ambient (τ = 5 min). Edits the arrays in place."""
        if not off.any():
            return
        decay = np.exp(-np.clip(off_for_s, 0, None) / 300.0)
        temp[off] = (AMBIENT_C + (temp - AMBIENT_C) * decay)[off]
        fill = 0.0 if self.profile.offbody_reports_zeros else np.nan
        for arr in (hr, spo2, rr):
            arr[off] = fill
        quality[off] = 0.0
