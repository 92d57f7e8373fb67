"""The family doctor's trend flags (server/health_flags.py): each rule on hand-made series,
at its threshold and just short of it, with missing days, incomplete days and a wearable
not worn; and when a review stops covering a flag."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from carehub.api_contract import DailySummary
from carehub.settings import ServerSettings, TrendThresholds
from server.catalogue import keys
from server.console.health_review import plot_of
from server.console.plots import trend_svg
from server.health_flags import (
    UNITS,
    Direction,
    FlagKind,
    Review,
    covering_review,
    trend_flags,
)
from tests.summary_series import series, steady_day

LAST = dt.date(2026, 12, 5)
T = TrendThresholds()


def kinds(days: list) -> list[FlagKind]:  # type: ignore[type-arg]
    return [f.kind for f in trend_flags(days, T)]


def with_recent(days: list, **changes: object) -> list:  # type: ignore[type-arg]
    """`days` with the last 14 replaced by steady days carrying `changes`."""
    head = days[:-14]
    tail = [
        steady_day(dt.date.fromisoformat(d.day), i, **changes)
        for i, d in enumerate(days[-14:], start=len(head))
    ]
    return head + tail


def test_a_steady_elder_raises_nothing() -> None:
    assert kinds(series(LAST)) == []


@pytest.mark.parametrize("kind", list(FlagKind))
def test_each_deterioration_raises_its_own_flag_with_its_figures(kind: FlagKind) -> None:
    flags = trend_flags(series(LAST, worse=[kind]), T)
    assert [f.kind for f in flags] == [kind]
    flag = flags[0]
    assert flag.day == LAST.isoformat()
    reached = (
        flag.recent >= flag.limit if flag.direction is Direction.UP else flag.recent <= flag.limit
    )
    assert reached
    stored = flag.figures()
    assert stored["kind"] == kind.value and stored["limit"] == flag.limit


def test_resting_hr_rise_at_the_threshold_raises_and_just_short_does_not() -> None:
    base = series(LAST)
    # baseline median: 64 bpm (the wobble is symmetric)
    flag = trend_flags(with_recent(base, resting_hr_bpm=74.0), T)
    assert [f.kind for f in flag] == [FlagKind.RESTING_HR_UP]
    assert (flag[0].baseline, flag[0].recent, flag[0].limit) == (64.0, 74.0, 74.0)
    assert (flag[0].baseline_days, flag[0].recent_days) == (56, 14)
    assert kinds(with_recent(base, resting_hr_bpm=73.9)) == []
    assert kinds(with_recent(base, resting_hr_bpm=73.9)) == []
    lower = TrendThresholds(resting_hr_rise_bpm=8)  # configurable
    assert [f.kind for f in trend_flags(with_recent(base, resting_hr_bpm=72.0), lower)] == [
        FlagKind.RESTING_HR_UP
    ]


def test_heart_rate_from_days_barely_worn_does_not_count() -> None:
    """A wearable worn 2 h a day gives a resting HR from a sliver of the day: the rule
    does not use it (and then has too few days to judge)."""
    days = with_recent(series(LAST), resting_hr_bpm=80.0, worn_h=2.0)
    assert FlagKind.RESTING_HR_UP not in kinds(days)
    assert FlagKind.WEARABLE_OFF in kinds(days)


def test_missing_days_leave_too_little_to_judge_or_still_enough() -> None:
    worse = series(LAST, worse=[FlagKind.RESTING_HR_UP])
    eight_of_fourteen = [d for i, d in enumerate(worse) if not (76 <= i < 82)]
    assert kinds(eight_of_fourteen) == [FlagKind.RESTING_HR_UP]
    six_of_fourteen = [d for i, d in enumerate(worse) if not (76 <= i < 84)]
    assert kinds(six_of_fourteen) == []  # fewer than min_recent_days
    no_baseline = worse[-20:]  # 6 baseline days only
    assert kinds(no_baseline) == []
    assert kinds([]) == []


def test_incomplete_days_are_not_read_as_a_quiet_elder() -> None:
    """A hub down for half of each day under-counts movement: that is not a decline."""
    days = with_recent(series(LAST), active_min=60.0, complete=False)
    assert kinds(days) == []
    assert kinds(with_recent(series(LAST), active_min=60.0)) == [FlagKind.ACTIVITY_DOWN]


def test_night_desaturation_needs_a_rise_and_a_floor() -> None:
    base = series(LAST)  # baseline T90 median 5 min
    assert kinds(with_recent(base, night_spo2_below_90_min=25.0)) == []  # +20 but under 30
    assert kinds(with_recent(base, night_spo2_below_90_min=30.0)) == [
        FlagKind.NIGHT_DESATURATION_UP
    ]
    high = [
        steady_day(dt.date.fromisoformat(d.day), i, night_spo2_below_90_min=40.0)
        for i, d in enumerate(base)
    ]
    assert kinds(with_recent(high, night_spo2_below_90_min=50.0)) == []  # +10 over a high baseline


def test_activity_falling_by_the_share() -> None:
    base = series(LAST)  # baseline median 180 min
    assert kinds(with_recent(base, active_min=126.0)) == [FlagKind.ACTIVITY_DOWN]  # 70 %
    assert kinds(with_recent(base, active_min=127.0)) == []


def test_more_nights_up_needs_a_rise_and_a_floor() -> None:
    base = series(LAST)  # one rise a night
    assert kinds(with_recent(base, night_rises=2)) == [FlagKind.NIGHT_RISES_UP]
    none_before = [
        steady_day(dt.date.fromisoformat(d.day), i, night_rises=0) for i, d in enumerate(base)
    ]
    assert kinds(with_recent(none_before, night_rises=1)) == []  # +1, but under 2 a night


def test_near_falls_need_a_floor_and_twice_the_baseline() -> None:
    base = series(LAST)
    one = base[:-1] + [steady_day(LAST, 89, near_falls=1)]
    assert kinds(one) == []
    two = base[:-2] + [steady_day(LAST - dt.timedelta(days=1), 88, falls=1)] + one[-1:]
    flags = trend_flags(two, T)
    assert [f.kind for f in flags] == [FlagKind.NEAR_FALLS_UP]
    assert (flags[0].recent, flags[0].baseline, flags[0].limit) == (2.0, 0.0, 2.0)
    # an elder who often stumbles: 2 in the last 14 days is their usual, not a change
    often = [
        steady_day(dt.date.fromisoformat(d.day), i, near_falls=1 if i % 7 == 0 else 0)
        for i, d in enumerate(base[:-14])
    ] + two[-14:]
    assert kinds(often) == []


def test_wearable_left_off_counts_days_with_a_summary() -> None:
    base = series(LAST)
    off = base[:-3] + [
        steady_day(dt.date.fromisoformat(d.day), 87 + i, worn_h=None, resting_hr_bpm=None)
        for i, d in enumerate(base[-3:])
    ]
    flags = trend_flags(off, T)
    assert [f.kind for f in flags] == [FlagKind.WEARABLE_OFF]
    assert (flags[0].recent, flags[0].limit, flags[0].baseline) == (3.0, 3.0, None)
    two_off = base[:-2] + off[-2:]
    assert kinds(two_off) == []
    # days the hub sent nothing (an outage) are not days the wearable was left off
    assert kinds(base[:-7]) == []


def _review(kind: FlagKind, day: str, recent: float, at_ms: int = 1) -> Review:
    return Review(kind, day, recent, "doc", at_ms, "seen")


def test_a_review_covers_its_flag_until_new_evidence() -> None:
    days = series(LAST, worse=[FlagKind.RESTING_HR_UP])
    [flag] = trend_flags(days, T)
    seen = _review(FlagKind.RESTING_HR_UP, flag.day, flag.recent)
    assert covering_review(flag, [seen]) == seen
    assert covering_review(flag, [_review(FlagKind.ACTIVITY_DOWN, flag.day, 0.0)]) is None
    # a week on, still as high: still covered
    later = series(LAST + dt.timedelta(days=7), worse=[FlagKind.RESTING_HR_UP], worse_days=21)
    [flag_later] = trend_flags(later, T)
    assert covering_review(flag_later, [seen]) == seen
    # worse by another step (another 10 bpm): new evidence
    worse = with_recent(days, resting_hr_bpm=flag.recent + flag.step)
    [flag_worse] = trend_flags(worse, T)
    assert covering_review(flag_worse, [seen]) is None
    # a whole recent window later, the window holds only unseen days: new evidence
    much_later = series(LAST + dt.timedelta(days=14), worse=[FlagKind.RESTING_HR_UP], worse_days=28)
    [flag_much_later] = trend_flags(much_later, T)
    assert covering_review(flag_much_later, [seen]) is None


def test_a_review_of_falling_activity_is_not_covered_once_activity_falls_further() -> None:
    days = series(LAST, worse=[FlagKind.ACTIVITY_DOWN])
    [flag] = trend_flags(days, T)
    seen = _review(FlagKind.ACTIVITY_DOWN, flag.day, flag.recent)
    assert covering_review(flag, [seen]) == seen
    [lower] = trend_flags(with_recent(days, active_min=flag.recent - flag.step), T)
    assert covering_review(lower, [seen]) is None


def test_the_trend_plot_draws_days_gaps_baseline_limit_and_the_recent_window() -> None:
    labels = [f"2026-11-{d:02d}" for d in range(1, 11)]
    values: list[float | None] = [60, 61, None, 62, 60, 61, 75, 76, 77, 78]
    svg = str(trend_svg(labels, values, "bpm", 61.0, 71.0, "2026-11-07"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="day"') == 9  # one dot a day with a value
    assert svg.count("<polyline") == 2  # the missing day breaks the line
    assert 'class="baseline"' in svg and 'class="limit"' in svg and 'class="recent"' in svg
    assert "2026-11-10: 78 bpm" in svg
    assert str(trend_svg(labels, [None] * 10, "bpm")) == ""
    assert "<script" not in str(trend_svg(["<script>"], [1.0], "<b>"))


def test_thresholds_come_from_the_environment_and_unknown_ones_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAREHUB_REVIEW_THRESHOLDS", '{"resting_hr_rise_bpm": 8}')
    assert ServerSettings().review_thresholds.resting_hr_rise_bpm == 8
    assert ServerSettings().review_thresholds.recent_days == 14
    monkeypatch.setenv("CAREHUB_REVIEW_THRESHOLDS", '{"resting_hr_rise": 8}')
    with pytest.raises(ValidationError, match="resting_hr_rise"):
        ServerSettings()


def test_every_unit_a_flag_uses_has_words_in_both_languages() -> None:
    used = {f.unit for kind in FlagKind for f in trend_flags(series(LAST, worse=[kind]), T)}
    assert used == set(UNITS)
    for language in ("en", "zh"):
        assert all(f"tunit.{u}" in keys(language) for u in UNITS)
        assert all(f"flag.{k.value}" in keys(language) for k in FlagKind)


_maybe = st.none() | st.floats(0, 24)
_day = st.fixed_dictionaries(
    {
        "complete": st.booleans(),
        "worn_h": _maybe,
        "resting_hr_bpm": st.none() | st.floats(30, 150),
        "night_spo2_below_90_min": st.none() | st.floats(0, 540),
        "active_min": st.none() | st.floats(0, 600),
        "night_rises": st.none() | st.integers(0, 8),
        "near_falls": st.integers(0, 3),
        "falls": st.integers(0, 1),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 120), _day), max_size=90))
def test_any_series_gives_flags_whose_figures_reached_their_limits(
    days: list[tuple[int, dict[str, object]]],
) -> None:
    """Whatever the summaries (gaps, repeats, incomplete days, nothing worn), the rules
    raise only flags whose recent value reached their limit on enough days, and each plot
    renders."""
    by_day = {(LAST - dt.timedelta(days=back)).isoformat(): figures for back, figures in days}
    summaries = [DailySummary.model_validate({"day": d, **f}) for d, f in by_day.items()]
    for flag in trend_flags(summaries, T):
        up = flag.direction is Direction.UP
        assert flag.recent >= flag.limit if up else flag.recent <= flag.limit
        assert flag.recent_days >= (1 if flag.kind is FlagKind.WEARABLE_OFF else T.min_recent_days)
        assert str(plot_of(flag, summaries, T)).startswith("<svg")
