"""Between emergencies (issue 24): the elder's day, the daily check-in and the inactivity
rules, decided on the hub. Pure: the hub's clock is passed in, the shell (`gateway.hub`)
persists `DailyWatch.dirty()` state, queues the closed days' summaries and raises the
welfare checks a `tick` returns. Rules and figures: docs/health-review.md.

- Days: data is counted in the running `DayAggregate` of the local day (`CarePlan.time_zone`);
  when the day changes the old one is closed (with an empty, incomplete one for each day
  the hub missed entirely) and its `DailySummary` handed to the shell once.
- Check-in: the first press inside the window is the check-in (`check_in_press`); with
  ``movement_counts`` pendant movement inside it is too; none by ``window_end``: one
  welfare check (`WelfareReason.MISSED_CHECK_IN`).
- Inactivity (``care_plan.inactivity``): daytime stillness much longer than the elder's
  usual for the hour (`INACTIVE_DAYTIME`); a night rise with no return to rest
  (`NIGHT_NO_RETURN`). The usual comes from the last `RHYTHM_DAYS` closed days, or
  conservative defaults while fewer than `MIN_HISTORY_DAYS` are known.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import date, time, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from carehub.api_contract import CarePlan, DailySummary, WelfareReason
from carehub.mqtt_contract import ImuFrame, VitalsReading
from gateway.day_aggregate import (
    DAY_START_H,
    NIGHT_END_H,
    NIGHT_START_H,
    REST_AFTER_MOVE_MS,
    DayAggregate,
    local_day,
    local_hm,
    local_ms,
)

MOVE_G = 0.05
"""A pendant frame whose dynamic acceleration (|a| − 1 g, RMS over the frame) reaches this
(g) is movement; a resting wearer's sensor noise is about 0.01 g."""
HEARD_GAP_MS = 10 * 60_000
"""A pendant unheard this long is not being worn within reach: stillness is not measured
(the `device_offline` fault covers it) and counts again from when it is heard."""
MAX_MISSED_DAYS = 31
"""A day older than this when the next one begins (a clock that was years behind, a hub off
for months) is forgotten, with the days in between, rather than summarised."""
RHYTHM_DAYS = 14
KEEP_DAYS = 35
"""Closed days kept on the hub (the rhythm reads the last `RHYTHM_DAYS`)."""
MIN_HISTORY_DAYS = 7
HISTORY_HEARD_MIN = 16 * 60
"""A day counts for the rhythm when a pendant was heard for at least this many minutes."""

STILL_DEFAULT_MIN = 180
"""Daytime stillness that raises a welfare check without enough history (3 h)."""
STILL_MIN_MIN, STILL_MAX_MIN = 90, 300
"""Learnt threshold = 1.5 × usual + 30 min, kept within these bounds (min)."""
REST_MIN = 30
"""Still this long (min) at night is rest; movement after it is a rise."""
RETURN_STILL_MIN = 15
"""A rise ends in a return to rest after this long (min) without movement."""
RISE_DEFAULT_MIN = 60
"""A night rise not back to rest after this long (min) raises a welfare check (defaults)."""
RISE_MIN_MIN, RISE_MAX_MIN = 45, 120
"""Learnt threshold = 2 × usual longest rise + 15 min, kept within these bounds (min)."""
RISE_DEFAULT_LAST_H = 5
"""Without history, a rise from 05:00 on is the elder's morning, not a night rise."""
USUAL_REST_ACTIVE_MIN = 6.0
"""With history, a rise counts only in a night hour with fewer usual active minutes."""
LATE_PRESS_MS = 15 * 60_000
"""A check-in press heard late (the hub or its broker restarting) still counts, by the
button's own time, up to this long after it was made."""
SAVE_EVERY_MS = 60_000
"""Running aggregates are written at most once a minute (a crash loses at most that)."""
DEFAULT_TIME_ZONE = "Asia/Shanghai"


def frame_motion_g(frame: ImuFrame) -> float:
    """Dynamic acceleration of a pendant frame: RMS of (|a| − 1 g) over its samples (g)."""
    acc = np.asarray(frame.acc, dtype=float)
    dynamic = np.abs(np.linalg.norm(acc, axis=1) - 1.0)
    value = float(np.sqrt(np.mean(dynamic**2))) if len(acc) else 0.0
    return value if math.isfinite(value) else 0.0


def time_zone(name: str) -> tzinfo:
    """The care plan's zone; an unknown name is the default zone, and a hub without a time
    zone database counts in China Standard Time (UTC+8, the default zone's, no DST)."""
    for candidate in (name, DEFAULT_TIME_ZONE):
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return timezone(timedelta(hours=8), "CST")


@dataclass
class Stillness:
    """Movement state that crosses midnight (kept in the store's kv)."""

    last_move_ms: int | None = None
    heard_ms: int | None = None
    heard_since_ms: int | None = None
    rise_at_ms: int | None = None
    rise_last_move_ms: int | None = None
    daytime_raised: bool = False
    night_raised: bool = False

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str | None) -> Stillness:
        return cls(**json.loads(text)) if text else cls()


@dataclass(frozen=True)
class Rhythm:
    """The elder's usual day, learnt from `days` closed days (None: defaults apply)."""

    days: int
    still_min: list[int | None]
    """Usual longest daytime stillness per local hour (min), the second largest of the days."""
    active_min: list[float]
    """Mean active minutes per local hour."""
    rise_min: int | None

    @property
    def learnt(self) -> bool:
        return self.days >= MIN_HISTORY_DAYS

    def still_threshold(self, hour: int) -> int:
        usual = self.still_min[hour] if self.learnt else None
        if usual is None:
            return STILL_DEFAULT_MIN
        return int(min(STILL_MAX_MIN, max(STILL_MIN_MIN, 1.5 * usual + 30)))

    def rise_threshold(self) -> int:
        if not self.learnt or self.rise_min is None:
            return RISE_DEFAULT_MIN
        return int(min(RISE_MAX_MIN, max(RISE_MIN_MIN, 2 * self.rise_min + 15)))

    def rest_hour(self, hour: int) -> bool:
        """Is the elder usually at rest in this night hour (a rise then is a night rise)?"""
        if not (hour >= NIGHT_START_H or hour < NIGHT_END_H):
            return False
        if not self.learnt:
            return hour >= NIGHT_START_H or hour < RISE_DEFAULT_LAST_H
        return self.active_min[hour] < USUAL_REST_ACTIVE_MIN


def learn(history: list[DayAggregate]) -> Rhythm:
    """The rhythm from closed days (newest last); days the pendant was barely heard skip."""
    days = [d for d in history if d.heard.bit_count() >= HISTORY_HEARD_MIN][-RHYTHM_DAYS:]
    if not days:
        return Rhythm(0, [None] * 24, [0.0] * 24, None)

    def second_largest(values: list[int]) -> int:
        ordered = sorted(values, reverse=True)
        return ordered[1] if len(ordered) > 1 else ordered[0]

    still: list[int | None] = [
        second_largest([d.still_max_by_hour[h] for d in days]) for h in range(24)
    ]
    active = [sum(d.active_by_hour[h] for d in days) / len(days) for h in range(24)]
    rises = [d.rise_max_min for d in days if d.rise_max_min is not None]
    return Rhythm(len(days), still, active, second_largest(rises) if rises else None)


@dataclass(frozen=True)
class Welfare:
    """A welfare check to raise: an `AlarmUpload` of kind `welfare`, severity `warning`."""

    reason: WelfareReason
    device_id: str
    details: dict[str, Any]


@dataclass(frozen=True)
class Tick:
    closed: list[tuple[DayAggregate, DailySummary]] = field(default_factory=list)
    """Days to close, oldest first: store the aggregate closed and queue its summary."""
    welfare: list[Welfare] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    """Open days too old to summarise (`MAX_MISSED_DAYS`): delete them from the store."""


class DailyWatch:
    """The day's aggregates, the check-in and the inactivity rules for the hub's elder."""

    def __init__(self) -> None:
        self.plan = CarePlan()
        self.tz = time_zone(self.plan.time_zone)
        self.today: DayAggregate | None = None
        self.closing: list[DayAggregate] = []
        """Days over, not yet handed to the shell by `tick`."""
        self.still = Stillness()
        self.history: list[DayAggregate] = []
        self.rhythm = learn([])
        self.last_day: str | None = None
        """The newest day the store knows (open or closed): missed days start after it."""
        self._saved_ms: int | None = None
        self._dirty = False

    # ------------------------------------------------------------ state

    def restore(
        self,
        open_days: list[DayAggregate],
        still: Stillness,
        history: list[DayAggregate],
        last_day: str | None,
    ) -> None:
        """The state of the last run: days not yet closed, movement state, closed days."""
        self.closing = open_days[:-1]
        self.today = open_days[-1] if open_days else None
        self.still = still
        self.history = history[-RHYTHM_DAYS:]
        self.rhythm = learn(self.history)
        self.last_day = last_day

    def set_care_plan(self, plan: CarePlan) -> None:
        """A new care plan (a new time zone takes effect with the next day)."""
        self.plan = plan
        self.tz = time_zone(plan.time_zone)

    def dirty(self, now_ms: int, force: bool = False) -> bool:
        """Whether the running state should be written now (then it counts as written)."""
        due = self._saved_ms is None or now_ms - self._saved_ms >= SAVE_EVERY_MS
        if self._dirty and (force or due):
            self._dirty, self._saved_ms = False, now_ms
            return True
        return False

    def open_days(self) -> list[DayAggregate]:
        return [*self.closing, *([self.today] if self.today else [])]

    def _day(self, now_ms: int) -> DayAggregate:
        """Today's aggregate; a day that is over moves to `closing` with the days missed."""
        day = local_day(now_ms, self.tz)
        if self.today is not None and self.today.day == day.isoformat():
            return self.today
        if self.today is not None and self.today.day > day.isoformat():
            return self.today  # the clock went back over midnight: stay on the newer day
        last = date.fromisoformat(self.last_day) if self.last_day else None
        if self.today is not None:
            last = date.fromisoformat(self.today.day)
        if self.today is not None:
            self.closing.append(self.today)  # `tick` forgets it if it is too old
        if last is not None and last >= day - timedelta(days=MAX_MISSED_DAYS):
            d = last + timedelta(days=1)
            while d < day:
                self.closing.append(DayAggregate.new(d, self.tz))
                d += timedelta(days=1)
        self.today = DayAggregate.new(day, self.tz)
        self.last_day = self.today.day
        self._dirty = True
        return self.today

    # ------------------------------------------------------------ what the hub sees

    def frame(self, now_ms: int, frame: ImuFrame) -> None:
        """A live pendant frame: the pendant is heard; movement if it moved."""
        day = self._day(now_ms)
        s = self.still
        if s.heard_ms is None or now_ms - s.heard_ms > HEARD_GAP_MS:
            s.heard_since_ms = now_ms
        s.heard_ms = now_ms
        day.pendant_heard(now_ms)
        if frame_motion_g(frame) >= MOVE_G:
            self._movement(day, now_ms, pendant=True)
        self._dirty = True

    def activity(self, now_ms: int) -> None:
        """An activity sensor saw someone move (motion, presence, a door)."""
        self._movement(self._day(now_ms), now_ms, pendant=False)
        self._dirty = True

    def _movement(self, day: DayAggregate, now_ms: int, pendant: bool) -> None:
        s = self.still
        since = self._still_since(day, now_ms)
        if since is not None:
            day.stillness(since, now_ms)
        previous = s.last_move_ms if s.last_move_ms is not None else s.heard_since_ms
        if (
            s.rise_at_ms is None
            and previous is not None
            and now_ms - previous >= REST_MIN * 60_000
            and day.is_night(now_ms)
        ):
            s.rise_at_ms, s.night_raised = now_ms, False
            day.night_rises += 1
        if s.rise_at_ms is not None:
            s.rise_last_move_ms = now_ms
        s.last_move_ms, s.daytime_raised = now_ms, False
        day.movement(now_ms, sensor=not pendant)
        if pendant and self.plan.check_in and self.plan.check_in.movement_counts:
            if self._in_window(day, now_ms) and day.check_ins == 0:
                day.check_ins, day.check_in_at = 1, local_hm(now_ms, self.tz)

    def vitals(self, now_ms: int, reading: VitalsReading) -> None:
        last = self.still.last_move_ms
        at_rest = last is None or now_ms - last >= REST_AFTER_MOVE_MS
        self._day(now_ms).vitals(now_ms, reading, at_rest)
        self._dirty = True

    def battery(self, now_ms: int, pct: float) -> None:
        self._day(now_ms).battery(pct)
        self._dirty = True

    def press(self, now_ms: int) -> None:
        """A press that called for help (raised or joined an alarm)."""
        self._day(now_ms).presses += 1
        self._dirty = True

    def fall(self, now_ms: int) -> None:
        self._day(now_ms).falls += 1
        self._dirty = True

    def near_falls(self, now_ms: int, count: int) -> None:
        if count:
            self._day(now_ms).near_falls += count
            self._dirty = True

    # ------------------------------------------------------------ the check-in

    def _window(self, day: DayAggregate) -> tuple[int, int] | None:
        plan = self.plan.check_in
        if plan is None:
            return None
        d = date.fromisoformat(day.day)
        start = local_ms(d, time.fromisoformat(plan.window_start), self.tz)
        end = local_ms(d, time.fromisoformat(plan.window_end), self.tz)
        return (start, end) if end > start else None

    def _in_window(self, day: DayAggregate, now_ms: int) -> bool:
        window = self._window(day)
        return window is not None and window[0] <= now_ms < window[1]

    def check_in_press(
        self, device_id: str, seq: int, now_ms: int, pressed_ms: int | None = None
    ) -> bool:
        """Is this press the day's check-in? The first press inside the window is (and
        stays so for its retries: same device and ``seq``); any other press is not.

        `pressed_ms` (the button's own time of the press) counts when it lies in the window
        and at most `LATE_PRESS_MS` before the hub heard it: a check-in pressed at 09:58
        while the hub restarted is not a call for help at 10:03. A button whose clock is
        wrong is judged by the hub's clock alone."""
        day = self._day(now_ms)
        if day.check_in_event == [device_id, seq]:
            return True
        late = pressed_ms is not None and 0 <= now_ms - pressed_ms <= LATE_PRESS_MS
        in_window = self._in_window(day, now_ms) or (
            late and pressed_ms is not None and self._in_window(day, pressed_ms)
        )
        if day.check_ins or not in_window:
            return False
        day.check_ins, day.check_in_event = 1, [device_id, seq]
        day.check_in_at = local_hm(now_ms, self.tz)
        self._dirty = True
        return True

    def was_check_in(self, device_id: str, seq: int) -> bool:
        return any(d.check_in_event == [device_id, seq] for d in self.open_days())

    # ------------------------------------------------------------ the tick

    def tick(self, now_ms: int, devices: list[tuple[str, str]]) -> Tick:
        """Once a pass (every few seconds): the hub is up this minute; days to close; the
        welfare checks due now. `devices`: the home's (device id, kind), for whom to name."""
        day = self._day(now_ms)
        day.hub_up(now_ms)
        self._dirty = True
        oldest = (date.fromisoformat(day.day) - timedelta(days=MAX_MISSED_DAYS)).isoformat()
        closed = [(d, self._close(d)) for d in self.closing if d.day >= oldest]
        forgotten = [d.day for d in self.closing if d.day < oldest]
        self.closing = []
        if self._in_window(day, now_ms):
            day.check_in_asked = True
        welfare: list[Welfare] = []
        if devices:
            welfare += self._missed_check_in(day, now_ms, devices)
            if self.plan.inactivity:
                welfare += self._inactivity(day, now_ms, devices)
        return Tick(closed, welfare, forgotten)

    def _close(self, day: DayAggregate) -> DailySummary:
        night = local_ms(date.fromisoformat(day.day), time(NIGHT_START_H), self.tz)
        heard = self.still.heard_ms
        if heard is not None and day.minute(heard) is not None:  # the day's last stillness
            end = min(night, heard)
            since = self._still_since(day, end)
            if since is not None:
                day.stillness(since, end)
        self.history = [*self.history, day][-RHYTHM_DAYS:]
        self.rhythm = learn(self.history)
        return day.summary()

    def _missed_check_in(
        self, day: DayAggregate, now_ms: int, devices: list[tuple[str, str]]
    ) -> list[Welfare]:
        window = self._window(day)
        reason = WelfareReason.MISSED_CHECK_IN
        if window is None or now_ms < window[1] or day.check_ins or reason in day.welfare:
            return []
        if not day.check_in_asked:  # installed, or the plan set, after the window: not today
            return []
        day.welfare.append(reason)
        plan = self.plan.check_in
        assert plan is not None
        recent = self.history[-7:]
        times = sorted(d.check_in_at for d in recent if d.check_in_at)
        last = self.still.last_move_ms
        window_text = f"{plan.window_start}-{plan.window_end}"
        details = {  # the same names side by side: the console pairs usual with today
            "welfare": reason.value,
            "usual": {
                "check_in_at": times[(len(times) - 1) // 2] if times else None,  # median
                "checked_in_days": sum(1 for d in recent if d.check_ins),
                "days": len(recent),
                "window": window_text,
            },
            "today": {
                "check_in_at": None,
                "checked_in_days": 0,
                "days": 1,
                "window": window_text,
                "last_movement": local_hm(last, self.tz) if last is not None else None,
                "presses": day.presses,
            },
        }
        return [Welfare(reason, _named(devices, "button"), details)]

    def _still_since(self, day: DayAggregate, now_ms: int) -> int | None:
        """Since when the elder is still in today's daytime, as far as the hub can tell."""
        s = self.still
        if s.heard_since_ms is None:
            return None
        day_start = local_ms(date.fromisoformat(day.day), time(DAY_START_H), self.tz)
        since = max(s.last_move_ms or 0, s.heard_since_ms, day_start)
        return since if since < now_ms else None

    def _inactivity(
        self, day: DayAggregate, now_ms: int, devices: list[tuple[str, str]]
    ) -> list[Welfare]:
        s = self.still
        heard = s.heard_ms is not None and now_ms - s.heard_ms <= HEARD_GAP_MS
        if not heard:
            return []
        out: list[Welfare] = []
        hour = day.hour_of(now_ms)
        assert hour is not None
        rhythm = self.rhythm
        pendant = _named(devices, "pendant")
        since = self._still_since(day, now_ms)
        daytime = DAY_START_H <= hour < NIGHT_START_H
        if daytime and since is not None and not s.daytime_raised:
            still_min = (now_ms - since) // 60_000
            threshold = rhythm.still_threshold(hour)
            if still_min >= threshold:
                s.daytime_raised = True
                day.welfare.append(WelfareReason.INACTIVE_DAYTIME)
                to_now = sum(day.active_by_hour[h] for h in _hours_to(day, now_ms))
                usual_to_now = sum(rhythm.active_min[h] for h in _hours_to(day, now_ms))
                details = {
                    "welfare": WelfareReason.INACTIVE_DAYTIME.value,
                    "usual": {
                        "still_min": rhythm.still_min[hour] if rhythm.learnt else None,
                        "threshold_min": threshold,
                        "active_min_to_now": round(usual_to_now, 1) if rhythm.learnt else None,
                        "days": rhythm.days,
                    },
                    "today": {
                        "still_min": still_min,
                        "still_since": local_hm(since, self.tz),
                        "active_min_to_now": to_now,
                    },
                }
                out.append(Welfare(WelfareReason.INACTIVE_DAYTIME, pendant, details))
        out += self._night_rise(day, now_ms, pendant)
        return out

    def _night_rise(self, day: DayAggregate, now_ms: int, pendant: str) -> list[Welfare]:
        s = self.still
        if s.rise_at_ms is None or s.rise_last_move_ms is None:
            return []
        if not day.is_night(now_ms):  # the night is over: the elder is up for the day
            s.rise_at_ms = s.rise_last_move_ms = None
            return []
        if now_ms - s.rise_last_move_ms >= RETURN_STILL_MIN * 60_000:  # back to rest
            day.night_rise_ended((s.rise_last_move_ms - s.rise_at_ms) // 60_000)
            s.rise_at_ms = s.rise_last_move_ms = None
            return []
        rhythm = self.rhythm
        risen_min = (now_ms - s.rise_at_ms) // 60_000
        threshold = rhythm.rise_threshold()
        rise_hour = _hour(s.rise_at_ms, self.tz)
        if s.night_raised or risen_min < threshold or not rhythm.rest_hour(rise_hour):
            return []
        s.night_raised = True
        day.welfare.append(WelfareReason.NIGHT_NO_RETURN)
        details = {
            "welfare": WelfareReason.NIGHT_NO_RETURN.value,
            "usual": {
                "rise_min": rhythm.rise_min if rhythm.learnt else None,
                "threshold_min": threshold,
                "days": rhythm.days,
            },
            "today": {
                "rise_min": risen_min,
                "risen_at": local_hm(s.rise_at_ms, self.tz),
                "last_movement": local_hm(s.rise_last_move_ms, self.tz),
            },
        }
        return [Welfare(WelfareReason.NIGHT_NO_RETURN, pendant, details)]


def _hour(ms: int, tz: tzinfo) -> int:
    return int(local_hm(ms, tz)[:2])


def _hours_to(day: DayAggregate, now_ms: int) -> range:
    hour = day.hour_of(now_ms)
    return range(0, (hour or 0) + 1)


def _named(devices: list[tuple[str, str]], kind: str) -> str:
    """The device a welfare check names: the home's first of `kind`, else its first."""
    return next((d for d, k in devices if k == kind), devices[0][0])
