"""Plausible daily summaries of one home, for `carehub sim summaries` and tests: pure and
seeded (the same seed gives the same days). A home has its own baseline; a deteriorating
home drifts over its last `DRIFT_DAYS` days the way the review's flags look for
(docs/health-review.md): resting heart rate up, more time below 90 % SpO2 at night, fewer
active minutes, more nights up, more near-falls, and the wearable left off more often.

The figures are invented to look like an older adult's ordinary days, not drawn from data:
they exercise the pipeline, they are no clinical reference.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

from carehub.api_contract import DailySummary

DRIFT_DAYS = 21
"""A deteriorating home changes over its last three weeks (the review compares two weeks)."""


@dataclass(frozen=True)
class Baseline:
    """One home's usual day (units as in `DailySummary`)."""

    resting_hr_bpm: float
    night_spo2_median: float
    night_spo2_below_90_min: float
    rr_rest: float
    temp_rest: float
    active_min: float
    night_rises: float  # mean per night
    worn_h: float


@dataclass(frozen=True)
class Drift:
    """How far a deteriorating home has moved by its last day."""

    resting_hr_bpm: float = 12.0  # bpm up
    below_90_min: float = 75.0  # minutes more
    active_factor: float = 0.45  # active minutes fall to this share
    night_rises: float = 2.5  # more per night
    near_fall_p: float = 0.35  # chance of a near-fall on a day
    worn_h: float = 12.0  # hours less worn (left off)


def baseline(rng: random.Random) -> Baseline:
    return Baseline(
        resting_hr_bpm=rng.uniform(58, 74),
        night_spo2_median=rng.uniform(94, 97),
        night_spo2_below_90_min=rng.uniform(0, 8),
        rr_rest=rng.uniform(13, 17),
        temp_rest=rng.uniform(36.3, 36.8),
        active_min=rng.uniform(150, 300),
        night_rises=rng.uniform(0.5, 1.5),
        worn_h=rng.uniform(20, 23.5),
    )


def home_days(
    days: int, last_day: date, seed: int, deteriorating: bool = False, drift: Drift = Drift()
) -> list[DailySummary]:
    """`days` summaries ending with `last_day`, oldest first."""
    rng = random.Random(seed)
    usual = baseline(rng)
    out = []
    for i in range(days):
        day = last_day - timedelta(days=days - 1 - i)
        into = i - (days - DRIFT_DAYS)
        share = max(0.0, (into + 1) / DRIFT_DAYS) if deteriorating else 0.0
        out.append(_day(rng, day, usual, drift, share))
    return out


def _day(
    rng: random.Random, day: date, usual: Baseline, drift: Drift, share: float
) -> DailySummary:
    """One day; `share` (0…1) is how far the drift has gone."""
    worn = _clip(rng.gauss(usual.worn_h - drift.worn_h * share, 1.0), 0, 24)
    if rng.random() < 0.03:  # a day on the charger, or forgotten
        worn = rng.uniform(0, 2)
    wearing = worn >= 2  # too little wear: no vital-sign figures that day
    active = usual.active_min * (1 - (1 - drift.active_factor) * share)
    near_fall_p = 0.02 + (drift.near_fall_p - 0.02) * share
    return DailySummary(
        day=day.isoformat(),
        complete=rng.random() > 0.02,
        worn_h=round(worn, 1),
        resting_hr_bpm=(
            round(rng.gauss(usual.resting_hr_bpm + drift.resting_hr_bpm * share, 1.5), 1)
            if wearing
            else None
        ),
        night_spo2_median=(
            round(_clip(rng.gauss(usual.night_spo2_median - 1.5 * share, 0.5), 80, 100), 1)
            if wearing
            else None
        ),
        night_spo2_below_90_min=(
            round(
                _clip(
                    rng.gauss(usual.night_spo2_below_90_min + drift.below_90_min * share, 4), 0, 540
                ),
                1,
            )
            if wearing
            else None
        ),
        rr_rest=round(_clip(rng.gauss(usual.rr_rest + 2 * share, 0.7), 8, 30), 1)
        if wearing
        else None,
        temp_rest=round(rng.gauss(usual.temp_rest, 0.12), 2) if wearing else None,
        active_min=round(_clip(rng.gauss(active, active * 0.12), 0, 1440)),
        night_rises=_poisson(rng, usual.night_rises + drift.night_rises * share),
        presses=1 if rng.random() < 0.02 else 0,
        check_ins=1 if rng.random() < 0.95 else 0,
        near_falls=1 if rng.random() < near_fall_p else 0,
        falls=0,
        battery_min_pct=round(rng.uniform(25, 95)),
    )


def _clip(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method (small means only)."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
