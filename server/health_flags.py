"""The family doctor's trend flags: transparent rules over one elder's daily summaries
(docs/health-review.md, "Trend flags"). Pure: summaries and thresholds in, flags out, each
with the figures that raised it, so the page, the printed record and the review all show
exactly what the rule saw. A flag is a prompt to look, never a diagnosis.

Every rule compares a *recent* window (the last `recent_days` days up to the newest
summary, both included) with the *baseline* (the `baseline_days` days before it). A day
counts only when its summary is complete (a hub down for part of a day under-counts
movement and events) and, for a figure, when the figure is present; heart rate and SpO2
also need the wearable worn `vitals_min_worn_h`. A window with too few such days raises
nothing: no data is not evidence.
"""

from __future__ import annotations

import datetime as dt
import enum
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from carehub.api_contract import DailySummary
from carehub.settings import TrendThresholds


class FlagKind(enum.StrEnum):
    RESTING_HR_UP = "resting_hr_up"
    NIGHT_DESATURATION_UP = "night_desaturation_up"  # more minutes below 90 % SpO2 (T90)
    ACTIVITY_DOWN = "activity_down"
    NIGHT_RISES_UP = "night_rises_up"
    NEAR_FALLS_UP = "near_falls_up"  # near-falls and falls
    WEARABLE_OFF = "wearable_off"


UNITS = ("bpm", "min", "rises", "events", "days")
"""Every `Flag.unit` (the console says each in the reader's words, ``tunit.<unit>``)."""


class Direction(enum.StrEnum):
    UP = "up"  # raised when recent >= limit
    DOWN = "down"  # raised when recent <= limit


@dataclass(frozen=True)
class Flag:
    """One raised flag and the figures that raised it: `recent` reached `limit`, which the
    rule derived from `baseline` and the thresholds (`limit` is in the unit of `recent`)."""

    kind: FlagKind
    day: str  # the newest summary day the rule looked at (YYYY-MM-DD)
    statistic: str  # how `recent`/`baseline` summarise their days: median | mean | sum | days
    unit: str  # bpm | min | rises | events | days
    baseline: float | None  # None: the rule needs no baseline (the wearable)
    recent: float
    limit: float
    direction: Direction
    baseline_days: int  # days with data in each window
    recent_days: int
    window_days: int  # the recent window's length (the wearable's own window for it)

    def figures(self) -> dict[str, object]:
        """As stored with a review (`health_reviews.figures`) and shown on the record."""
        out = asdict(self)
        out["kind"], out["direction"] = self.kind.value, self.direction.value
        return out

    @property
    def step(self) -> float:
        """How far the limit sits from the baseline: a review stops covering the flag once
        `recent` has moved another step beyond what the doctor saw."""
        return abs(self.limit - (self.baseline or 0.0)) or 1.0


FIGURE = {
    FlagKind.RESTING_HR_UP: "resting_hr_bpm",
    FlagKind.NIGHT_DESATURATION_UP: "night_spo2_below_90_min",
    FlagKind.ACTIVITY_DOWN: "active_min",
    FlagKind.NIGHT_RISES_UP: "night_rises",
    FlagKind.NEAR_FALLS_UP: "near_falls",
    FlagKind.WEARABLE_OFF: "worn_h",
}
"""The `DailySummary` figure each flag is about (what its plot draws)."""


def daily_value(kind: FlagKind, day: DailySummary, t: TrendThresholds) -> float | None:
    """The value of `kind`'s figure on one day as its rule counts it (None: the day does
    not count). The plots draw the same values."""
    if not day.complete:
        return None
    if kind is FlagKind.WEARABLE_OFF:
        return day.worn_h or 0.0  # a complete day without wear data was not worn
    if kind is FlagKind.NEAR_FALLS_UP:
        return float(day.near_falls + day.falls)
    if kind in (FlagKind.RESTING_HR_UP, FlagKind.NIGHT_DESATURATION_UP):
        if day.worn_h is None or day.worn_h < t.vitals_min_worn_h:
            return None
    value = getattr(day, FIGURE[kind])
    return None if value is None else float(value)


def _days_back(newest: dt.date, start: int, length: int) -> set[str]:
    """ISO dates `start` … `start + length - 1` days before `newest`."""
    return {(newest - dt.timedelta(days=start + i)).isoformat() for i in range(length)}


@dataclass(frozen=True)
class _Windows:
    newest: str
    recent: list[float]
    baseline: list[float]


def _windows(
    kind: FlagKind, days: Sequence[DailySummary], t: TrendThresholds, recent_days: int
) -> _Windows | None:
    if not days:
        return None
    newest = max(d.day for d in days)
    last = dt.date.fromisoformat(newest)
    in_recent = _days_back(last, 0, recent_days)
    in_baseline = _days_back(last, recent_days, t.baseline_days)
    recent, baseline = [], []
    for d in sorted(days, key=lambda d: d.day):
        value = daily_value(kind, d, t)
        if value is None:
            continue
        if d.day in in_recent:
            recent.append(value)
        elif d.day in in_baseline:
            baseline.append(value)
    return _Windows(newest, recent, baseline)


Rule = Callable[[Sequence[DailySummary], TrendThresholds], "Flag | None"]


def _compared(
    kind: FlagKind,
    days: Sequence[DailySummary],
    t: TrendThresholds,
    statistic: str,
    unit: str,
    direction: Direction,
    limit_of: Callable[[float], float],
) -> Flag | None:
    """The common shape: enough days in both windows, summarise each, raise when the
    recent value reaches the limit the baseline gives."""
    w = _windows(kind, days, t, t.recent_days)
    if w is None or len(w.recent) < t.min_recent_days or len(w.baseline) < t.min_baseline_days:
        return None
    summarise = statistics.median if statistic == "median" else statistics.fmean
    # rounded before comparing, so the figures shown are exactly those compared
    baseline, recent = round(summarise(w.baseline), 2), round(summarise(w.recent), 2)
    limit = round(limit_of(baseline), 2)
    reached = recent >= limit if direction is Direction.UP else recent <= limit
    if not reached:
        return None
    return Flag(
        kind,
        w.newest,
        statistic,
        unit,
        baseline,
        recent,
        limit,
        direction,
        len(w.baseline),
        len(w.recent),
        t.recent_days,
    )


def resting_hr_up(days: Sequence[DailySummary], t: TrendThresholds) -> Flag | None:
    """Median resting heart rate of the recent window at least `resting_hr_rise_bpm` above
    the baseline's."""
    return _compared(
        FlagKind.RESTING_HR_UP,
        days,
        t,
        "median",
        "bpm",
        Direction.UP,
        lambda b: b + t.resting_hr_rise_bpm,
    )


def night_desaturation_up(days: Sequence[DailySummary], t: TrendThresholds) -> Flag | None:
    """Median night minutes below 90 % SpO2 (T90) up by `t90_rise_min` and at least
    `t90_floor_min` (a rise from 1 to 16 minutes is not yet a concern)."""
    return _compared(
        FlagKind.NIGHT_DESATURATION_UP,
        days,
        t,
        "median",
        "min",
        Direction.UP,
        lambda b: max(b + t.t90_rise_min, t.t90_floor_min),
    )


def activity_down(days: Sequence[DailySummary], t: TrendThresholds) -> Flag | None:
    """Median active minutes down by `active_drop_share` of the baseline's."""
    return _compared(
        FlagKind.ACTIVITY_DOWN,
        days,
        t,
        "median",
        "min",
        Direction.DOWN,
        lambda b: b * (1 - t.active_drop_share),
    )


def night_rises_up(days: Sequence[DailySummary], t: TrendThresholds) -> Flag | None:
    """Mean rises per night up by `night_rises_rise` and at least `night_rises_floor`."""
    return _compared(
        FlagKind.NIGHT_RISES_UP,
        days,
        t,
        "mean",
        "rises",
        Direction.UP,
        lambda b: max(b + t.night_rises_rise, t.night_rises_floor),
    )


def near_falls_up(days: Sequence[DailySummary], t: TrendThresholds) -> Flag | None:
    """Near-falls and falls in the recent window: at least `near_falls_floor`, and at least
    `near_falls_ratio` times the baseline's count scaled to as many days. Counted over the
    days with a complete summary (the baseline's rate × the recent days counted)."""
    w = _windows(FlagKind.NEAR_FALLS_UP, days, t, t.recent_days)
    if w is None or len(w.recent) < t.min_recent_days or len(w.baseline) < t.min_baseline_days:
        return None
    recent = sum(w.recent)
    baseline = round(sum(w.baseline) * len(w.recent) / len(w.baseline), 2)
    limit = round(max(float(t.near_falls_floor), baseline * t.near_falls_ratio), 2)
    if recent < limit:
        return None
    return Flag(
        FlagKind.NEAR_FALLS_UP,
        w.newest,
        "sum",
        "events",
        baseline,
        recent,
        limit,
        Direction.UP,
        len(w.baseline),
        len(w.recent),
        t.recent_days,
    )


def wearable_off(days: Sequence[DailySummary], t: TrendThresholds) -> Flag | None:
    """At least `worn_low_days` of the last `worn_window_days` (complete days with a
    summary) with the wearable worn under `worn_low_h`. No baseline: a wearable left off
    hides the other flags, whatever it did before."""
    w = _windows(FlagKind.WEARABLE_OFF, days, t, t.worn_window_days)
    if w is None:
        return None
    low = sum(1 for worn in w.recent if worn < t.worn_low_h)
    if low < t.worn_low_days:
        return None
    return Flag(
        FlagKind.WEARABLE_OFF,
        w.newest,
        "days",
        "days",
        None,
        float(low),
        float(t.worn_low_days),
        Direction.UP,
        0,
        len(w.recent),
        t.worn_window_days,
    )


RULES: dict[FlagKind, Rule] = {
    FlagKind.RESTING_HR_UP: resting_hr_up,
    FlagKind.NIGHT_DESATURATION_UP: night_desaturation_up,
    FlagKind.ACTIVITY_DOWN: activity_down,
    FlagKind.NIGHT_RISES_UP: night_rises_up,
    FlagKind.NEAR_FALLS_UP: near_falls_up,
    FlagKind.WEARABLE_OFF: wearable_off,
}


def trend_flags(days: Sequence[DailySummary], t: TrendThresholds) -> list[Flag]:
    """Every flag the elder's summaries raise, in `FlagKind` order."""
    return [flag for rule in RULES.values() if (flag := rule(days, t)) is not None]


@dataclass(frozen=True)
class Review:
    """A doctor's review of a flag as stored (`health_reviews`)."""

    flag: FlagKind
    day: str
    recent: float
    reviewed_by: str
    reviewed_at_ms: int
    note: str


def covering_review(flag: Flag, reviews: Sequence[Review]) -> Review | None:
    """The newest review that still covers `flag`: of the same kind, made on a day no
    more than one recent window before the flag's day (after that the window holds only
    days the doctor has not seen), and the flag no worse by another step (`Flag.step`)
    than it was then. None: the flag is open (new evidence) and sorts first."""
    newest = dt.date.fromisoformat(flag.day)
    for review in sorted(reviews, key=lambda r: r.reviewed_at_ms, reverse=True):
        if review.flag is not flag.kind:
            continue
        age_days = (newest - dt.date.fromisoformat(review.day)).days
        if not 0 <= age_days < flag.window_days:
            continue
        moved = flag.recent - review.recent
        worse = moved if flag.direction is Direction.UP else -moved
        if worse >= flag.step:
            continue
        return review
    return None
