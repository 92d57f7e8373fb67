"""Simulated days of an elder for the issue 24 tests: what a wearable and a pendant would send,
minute by minute, on a fake clock (one frame and one reading a minute stand for the stream)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from carehub.mqtt_contract import ImuFrame, VitalsReading

TZ = ZoneInfo("Asia/Shanghai")
STILL = [[0.0, 1.0, 0.0]] * 50
"""A frame of an upright, resting wearer (1 g on Y): no movement."""
MOVING = [[0.0, 1.0, 0.0], [0.3, 1.3, 0.1]] * 25
"""A frame of a walking wearer (about 0.3 g of dynamic acceleration)."""


def at(day: date, hh: int, mm: int = 0) -> int:
    """Epoch ms of local `hh:mm` on `day` in `TZ`."""
    return int(datetime.combine(day, time(hh, mm), tzinfo=TZ).timestamp() * 1000)


def frame(ms: int, moving: bool) -> ImuFrame:
    return ImuFrame(v=1, seq=ms // 1000, t0=ms, hz=50.0, acc=MOVING if moving else STILL)


@dataclass
class Day:
    """What happens in the simulated day, by local minute of day (0..1439)."""

    moving: Callable[[int], bool]
    worn: Callable[[int], bool] = lambda m: True
    spo2: Callable[[int], float] = lambda m: 95.0
    events: dict[int, list[str]] = field(default_factory=dict)
    """Minute → extra things happening then (the test decides what they mean)."""


def normal_moving(m: int) -> bool:
    """Up at 07:00, busy till 08:00, then ten minutes of moving about each hour till 22:00; a
    night rise from 03:00 to 03:09, back to bed after."""
    if 180 <= m < 190:
        return True
    if 420 <= m < 480:
        return True
    return 480 <= m < 1320 and m % 60 < 10


def reading(ms: int, minute: int, d: Day, moving: bool) -> VitalsReading:
    if not d.worn(minute):
        return VitalsReading(v=1, seq=ms // 1000, ts=ms, hr=None, temp=24.0, quality=0.1)
    hr = 90.0 if moving else 60.0 + (minute % 5) - 2  # at rest: 58..62 bpm
    return VitalsReading(
        v=1,
        seq=ms // 1000,
        ts=ms,
        hr=hr,
        spo2=d.spo2(minute),
        rr=14.0,
        temp=36.5,
        motion=0.3 if moving else 0.01,
        quality=0.9,
    )
