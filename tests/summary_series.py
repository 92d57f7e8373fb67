"""Hand-made daily summaries for the trend-flag tests: a steady elder, and the same elder
with chosen figures deteriorating over the last two weeks. Pure and deterministic (a small
day-to-day wobble from the day's index, no random numbers), plus `insert_summaries` to put
them in a server database the way the upload route stores them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.api_contract import DailySummary
from server.health_flags import FlagKind
from server.schema import daily_summaries

WOBBLE = (0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5)


def steady_day(day: dt.date, i: int, **changes: Any) -> DailySummary:
    """A well elder's day `i`: worn all day, resting HR ~64 bpm, a few minutes below 90 %
    SpO2 at night, ~180 active minutes, one rise a night, nothing else."""
    w = WOBBLE[i % len(WOBBLE)]
    figures: dict[str, Any] = {
        "day": day.isoformat(),
        "complete": True,
        "worn_h": 22.0,
        "resting_hr_bpm": 64.0 + w,
        "night_spo2_median": 95.0,
        "night_spo2_below_90_min": 5.0 + w,
        "rr_rest": 15.0,
        "temp_rest": 36.6,
        "active_min": 180.0 + 10 * w,
        "night_rises": 1,
        "presses": 0,
        "check_ins": 1,
        "near_falls": 0,
        "falls": 0,
        "battery_min_pct": 80.0,
    }
    figures.update(changes)
    return DailySummary.model_validate(figures)


DETERIORATION: dict[FlagKind, dict[str, Any]] = {
    FlagKind.RESTING_HR_UP: {"resting_hr_bpm": 78.0},
    FlagKind.NIGHT_DESATURATION_UP: {"night_spo2_below_90_min": 55.0},
    FlagKind.ACTIVITY_DOWN: {"active_min": 90.0},
    FlagKind.NIGHT_RISES_UP: {"night_rises": 3},
    FlagKind.WEARABLE_OFF: {"worn_h": 3.0, "resting_hr_bpm": None},
}
"""What a deteriorating elder's recent days look like, per flag (near-falls: see below)."""


def series(
    last: dt.date,
    days: int = 90,
    worse: Iterable[FlagKind] = (),
    worse_days: int = 14,
) -> list[DailySummary]:
    """`days` summaries ending on `last`; the last `worse_days` deteriorate in `worse`."""
    worse = set(worse)
    out = []
    for i in range(days):
        day = last - dt.timedelta(days=days - 1 - i)
        changes: dict[str, Any] = {}
        if i >= days - worse_days:
            for kind in worse - {FlagKind.NEAR_FALLS_UP}:
                changes.update(DETERIORATION[kind])
            if FlagKind.NEAR_FALLS_UP in worse and i % 4 == 0:
                changes["near_falls"] = 1
        out.append(steady_day(day, i, **changes))
    return out


async def insert_summaries(
    engine: AsyncEngine, elder_id: str, hub_id: str, days: Sequence[DailySummary]
) -> None:
    """Store `days` as the upload route does: one row per (elder, day), the figures
    without `day`."""
    async with engine.begin() as conn:
        await conn.execute(
            daily_summaries.insert(),
            [
                {
                    "elder_id": elder_id,
                    "day": d.day,
                    "hub_id": hub_id,
                    "received_at_ms": 0,
                    "figures": d.model_dump(mode="json", exclude={"day"}),
                }
                for d in days
            ],
        )
