"""Issue 24 on the hub, the pure core (`gateway.daily_watch`, `gateway.day_aggregate`) on a
fake clock: a simulated day gives the expected summary; the check-in; the inactivity rules."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from carehub.api_contract import CarePlan, CheckInPlan, DailySummary, WelfareReason
from gateway.daily_watch import (
    RISE_DEFAULT_MIN,
    STILL_DEFAULT_MIN,
    STILL_MAX_MIN,
    DailyWatch,
    Tick,
    time_zone,
)
from gateway.day_aggregate import DayAggregate, local_day
from tests.daily_sim import TZ, Day, at, frame, normal_moving, reading

DEVICES = [("btn-1", "button"), ("pend-1", "pendant"), ("wear-1", "wearable")]
DAY = date(2026, 3, 10)


def live(
    watch: DailyWatch, day: date, d: Day, start_min: int = 0, end_min: int = 1440
) -> list[Tick]:
    """Feed `watch` minute by minute; returns the ticks that closed a day or raised welfare."""
    out = []
    for m in range(start_min, end_min):
        now = at(day, 0) + m * 60_000
        moving = d.moving(m)
        watch.frame(now, frame(now, moving))
        watch.vitals(now + 1000, reading(now, m, d, moving))
        for event in d.events.get(m, []):
            if event == "press":
                watch.press(now)
            elif event == "fall":
                watch.fall(now)
            elif event == "near_fall":
                watch.near_falls(now, 1)
            elif event.startswith("battery"):
                watch.battery(now, float(event.split()[1]))
        tick = watch.tick(now + 30_000, DEVICES)
        if tick.closed or tick.welfare or tick.forgotten:
            out.append(tick)
    return out


def summary_of(watch: DailyWatch, day: date) -> DailySummary:
    ticks = live(watch, day + timedelta(days=1), Day(moving=lambda m: False), 0, 1)
    ((closed, summary),) = ticks[0].closed
    assert closed.day == day.isoformat()
    return summary


def test_a_simulated_day_gives_the_expected_summary() -> None:
    watch = DailyWatch()
    watch.set_care_plan(CarePlan(time_zone="Asia/Shanghai"))
    day = Day(
        moving=normal_moving,
        worn=lambda m: not 720 <= m < 840,  # off from 12:00 to 14:00
        spo2=lambda m: 88.0 if 120 <= m < 150 else 95.0,  # 30 minutes below 90 % at 02:00
        events={
            600: ["battery 80"],
            900: ["press", "battery 75"],
            960: ["near_fall", "near_fall"],
            1000: ["fall"],
        },
    )
    assert not any(t.welfare for t in live(watch, DAY, day))  # a normal day raises nothing
    s = summary_of(watch, DAY)
    assert (
        s.model_dump()
        == DailySummary(
            day="2026-03-10",
            complete=True,
            worn_h=22.0,
            resting_hr_bpm=58.0,  # 10th percentile of 58..62 at rest
            night_spo2_median=95.0,
            night_spo2_below_90_min=30.0,
            rr_rest=14.0,
            temp_rest=36.5,
            active_min=10 + 60 + 14 * 10,
            night_rises=1,
            presses=1,
            check_ins=0,
            near_falls=2,
            falls=1,
            battery_min_pct=75.0,
        ).model_dump()
    )


def test_a_day_is_bounded_whatever_the_streams() -> None:
    watch = DailyWatch()
    live(watch, DAY, Day(moving=normal_moving))
    assert watch.today is not None
    assert len(watch.today.dumps()) < 6000  # aggregates, not streams
    again = DayAggregate.loads(watch.today.dumps())
    assert again == watch.today


def test_missed_days_are_summarised_incomplete_once() -> None:
    watch = DailyWatch()
    live(watch, DAY, Day(moving=normal_moving), 600, 700)  # the hub started at 10:00
    ticks = live(watch, DAY + timedelta(days=3), Day(moving=lambda m: False), 0, 2)
    days = [(a.day, s.complete, s.active_min) for t in ticks for a, s in t.closed]
    assert days == [
        ("2026-03-10", False, 20.0),  # 10:00-11:40: ten minutes at 10 and at 11
        ("2026-03-11", False, None),
        ("2026-03-12", False, None),
    ]


def test_a_day_counted_on_a_clock_years_behind_is_forgotten_not_summarised() -> None:
    watch = DailyWatch()
    live(watch, date(2020, 1, 1), Day(moving=normal_moving), 0, 5)  # booted without the time
    ticks = live(watch, DAY, Day(moving=normal_moving), 600, 602)  # then NTP set the clock
    assert [a.day for t in ticks for a, _ in t.closed] == []
    assert [day for t in ticks for day in t.forgotten] == ["2020-01-01"]
    assert watch.today is not None and watch.today.day == DAY.isoformat()


# ------------------------------------------------------------ check-in


def check_in_watch(movement_counts: bool = False) -> DailyWatch:
    watch = DailyWatch()
    plan = CheckInPlan(window_start="07:00", window_end="10:00", movement_counts=movement_counts)
    watch.set_care_plan(CarePlan(check_in=plan))
    return watch


def test_the_first_press_in_the_window_is_the_check_in_and_any_later_press_is_not() -> None:
    watch = check_in_watch()
    assert not watch.check_in_press("btn-1", 1, at(DAY, 6, 59))  # before the window
    assert watch.check_in_press("btn-1", 2, at(DAY, 8))
    assert watch.check_in_press("btn-1", 2, at(DAY, 8, 1))  # its retry: the same answer
    assert watch.was_check_in("btn-1", 2)
    assert not watch.check_in_press("btn-1", 3, at(DAY, 8, 1))  # a second press: help
    assert not watch.check_in_press("btn-2", 1, at(DAY, 9))
    assert watch.tick(at(DAY, 10, 1), DEVICES).welfare == []
    assert not watch.check_in_press("btn-1", 4, at(DAY + timedelta(days=1), 10))  # after end


def test_a_check_in_heard_late_counts_by_the_buttons_time_if_plausible() -> None:
    watch = check_in_watch()
    assert not watch.check_in_press("btn-1", 1, at(DAY, 10, 5), at(DAY, 6))  # clock wrong
    assert not watch.check_in_press("btn-1", 2, at(DAY, 10, 20), at(DAY, 9, 58))  # too late
    assert not watch.check_in_press("btn-1", 3, at(DAY, 10, 5), at(DAY, 10, 6))  # future
    assert watch.check_in_press("btn-1", 4, at(DAY, 10, 5), at(DAY, 9, 58))  # hub was down


def test_a_missed_check_in_shows_the_usual_time_beside_today() -> None:
    watch = check_in_watch()
    for n, hm in enumerate(["08:10", "08:30", "07:50", "09:40", "08:20", "08:00", "08:15"]):
        day = DAY + timedelta(days=n)
        assert watch.check_in_press("btn-1", n, at(day, int(hm[:2]), int(hm[3:])))
        watch.tick(at(day + timedelta(days=1), 0), DEVICES)  # the day closes
    assert watch.tick(at(DAY + timedelta(days=7), 9), DEVICES).welfare == []
    (welfare,) = watch.tick(at(DAY + timedelta(days=7), 10), DEVICES).welfare
    usual, today = welfare.details["usual"], welfare.details["today"]
    assert (usual["check_in_at"], usual["checked_in_days"], usual["days"]) == ("08:15", 7, 7)
    assert (today["check_in_at"], today["checked_in_days"], today["days"]) == (None, 0, 1)


def test_a_check_in_window_the_hub_never_saw_raises_nothing() -> None:
    watch = check_in_watch()  # installed (or the plan set) at 15:00, the window long over
    assert watch.tick(at(DAY, 15), DEVICES).welfare == []
    assert watch.tick(at(DAY, 15, 1), DEVICES).welfare == []
    assert watch.tick(at(DAY + timedelta(days=1), 9), DEVICES).welfare == []  # tomorrow's
    assert len(watch.tick(at(DAY + timedelta(days=1), 10), DEVICES).welfare) == 1  # is asked


def test_no_check_in_raises_one_welfare_check_at_the_window_end() -> None:
    watch = check_in_watch()
    assert watch.tick(at(DAY, 9, 59), DEVICES).welfare == []
    (welfare,) = watch.tick(at(DAY, 10), DEVICES).welfare
    assert welfare.reason is WelfareReason.MISSED_CHECK_IN and welfare.device_id == "btn-1"
    assert welfare.details["welfare"] == "missed_check_in"
    assert welfare.details["usual"]["window"] == "07:00-10:00"
    assert welfare.details["today"]["check_in_at"] is None
    assert watch.tick(at(DAY, 10, 5), DEVICES).welfare == []  # one a day
    assert watch.tick(at(DAY, 23), DEVICES).welfare == []


def test_pendant_movement_in_the_window_checks_in_when_the_plan_says_so() -> None:
    for counts in (True, False):
        watch = check_in_watch(movement_counts=counts)
        live(watch, DAY, Day(moving=normal_moving), 420, 421)  # moving at 07:00
        reasons = [w.reason for w in watch.tick(at(DAY, 10), DEVICES).welfare]
        assert reasons == ([] if counts else [WelfareReason.MISSED_CHECK_IN])


# ------------------------------------------------------------ inactivity


def still_from_10(m: int) -> bool:
    """A normal morning, busy until 10:00, then no movement at all (the pendant still heard)."""
    return (normal_moving(m) or 590 <= m < 600) and m < 600


def test_no_movement_from_10_raises_a_welfare_check_within_the_default_time() -> None:
    watch = DailyWatch()
    ticks = live(watch, DAY, Day(moving=still_from_10))
    (welfare,) = [w for t in ticks for w in t.welfare]
    assert welfare.reason is WelfareReason.INACTIVE_DAYTIME and welfare.device_id == "pend-1"
    today = welfare.details["today"]
    assert today["still_since"] == "09:59"  # the last movement
    assert today["still_min"] == STILL_DEFAULT_MIN  # raised within a minute of the threshold
    assert welfare.details["usual"]["still_min"] is None  # no history yet: defaults


def test_with_a_learnt_rhythm_stillness_from_10_is_noticed_sooner() -> None:
    watch = DailyWatch()
    for n in range(8):
        normal = live(watch, DAY + timedelta(days=n), Day(moving=normal_moving))
        assert not any(t.welfare for t in normal)  # normal days raise nothing
    ticks = live(watch, DAY + timedelta(days=8), Day(moving=still_from_10))
    (welfare,) = [w for t in ticks for w in t.welfare]
    usual, today = welfare.details["usual"], welfare.details["today"]
    assert usual["days"] == 8 and usual["still_min"] == 51  # from hh:09 to the next hour
    assert usual["threshold_min"] == 106 < STILL_DEFAULT_MIN  # 1.5 × 51 + 30
    assert today["still_min"] == 106 and today["still_since"] == "09:59"
    assert today["active_min_to_now"] < usual["active_min_to_now"]


def test_a_night_rise_with_no_return_raises_one_welfare_check() -> None:
    watch = DailyWatch()

    def restless(m: int) -> bool:  # up at 02:00, moving every few minutes, never back to rest
        return normal_moving(m) or (120 <= m < 420 and m % 5 == 0)

    ticks = live(watch, DAY, Day(moving=restless))
    (welfare,) = [w for t in ticks for w in t.welfare]
    assert welfare.reason is WelfareReason.NIGHT_NO_RETURN
    assert welfare.details["today"]["risen_at"] == "02:00"
    assert welfare.details["today"]["rise_min"] == RISE_DEFAULT_MIN
    assert welfare.details["usual"]["threshold_min"] == RISE_DEFAULT_MIN


def test_a_morning_rise_before_07_is_the_day_not_a_night_without_return() -> None:
    def early(m: int) -> bool:  # the night's rise at 03:00, then up for the day at 06:00
        return normal_moving(m) or 360 <= m < 450

    watch = DailyWatch()
    assert not any(t.welfare for t in live(watch, DAY, Day(moving=early)))
    summary_day = watch.today
    assert summary_day is not None
    assert summary_day.night_rises == 2  # 03:00 and 06:00, both between 22:00 and 07:00
    assert summary_day.rise_max_min == 9  # only the rise that ended in rest: not the day
    assert watch.still.rise_at_ms is None


def test_a_pendant_left_unheard_is_never_taken_for_stillness() -> None:
    watch = DailyWatch()
    live(watch, DAY, Day(moving=normal_moving), 0, 600)
    for m in range(600, 1440):  # nothing heard from 10:00: no welfare check
        assert watch.tick(at(DAY, 0) + m * 60_000, DEVICES).welfare == []
    assert STILL_MAX_MIN < 600 - 10


def test_an_unknown_time_zone_counts_in_the_default_one() -> None:
    for name in ("Asia", "", "Nope/Zone", "../etc"):
        assert str(time_zone(name)) == "Asia/Shanghai"


def test_days_follow_the_care_plan_time_zone() -> None:
    watch = DailyWatch()
    watch.set_care_plan(CarePlan(time_zone="Europe/London"))
    assert local_day(at(DAY, 7), watch.tz) == DAY - timedelta(days=1)  # 23:00 in London
    assert local_day(at(DAY, 9), TZ) == DAY


def test_the_docs_define_every_summary_field_and_welfare_reason() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "health-review.md").read_text()
    for name in DailySummary.model_fields:
        assert f"| `{name}` |" in doc, name
    for reason in WelfareReason:
        assert f"| `{reason.value}` |" in doc, reason
    assert "## What the elder does" in doc
