"""The hubs' daily summaries (docs/health-review.md): the one writer of `daily_summaries`.

A summary is kept once per (elder, local day): the first upload wins, a repeat (a hub
retrying after an outage) changes nothing. Summaries older than `summary_keep_days` are
deleted by `prune_forever`; the database deletes them with their elder (ON DELETE CASCADE).
The pure parts (`day_problem`, `oldest_kept_day`) decide; `SummaryStore` only reads and
writes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from carehub.api_contract import DailySummary
from carehub.clock import Clock
from server.db import dialect_insert
from server.schema import daily_summaries
from server.store import HubIdentity, ServerStore

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
"""How often the retention job looks for summaries past `summary_keep_days`."""
LATEST_OFFSET = timedelta(hours=14)
"""The furthest local clock ahead of UTC (UTC+14): no centre's day is later than that."""


class DayProblem(enum.StrEnum):
    """Why a summary's `day` is refused (422)."""

    NOT_A_DATE = "not_a_date"
    IN_THE_FUTURE = "in_the_future"


class Recorded(enum.StrEnum):
    """What became of an upload."""

    CREATED = "created"
    REPEAT = "repeat"  # that elder's day is stored already: nothing changed
    EXPIRED = "expired"  # older than the server keeps: not stored


def day_problem(day: str, now_ms: int) -> DayProblem | None:
    """None when `day` (YYYY-MM-DD) is a real date no later than today anywhere on Earth."""
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        return DayProblem.NOT_A_DATE
    latest = (datetime.fromtimestamp(now_ms / 1000, UTC) + LATEST_OFFSET).date()
    return DayProblem.IN_THE_FUTURE if parsed > latest else None


def oldest_kept_day(now_ms: int, keep_days: int, time_zone: str) -> str:
    """The first local day (YYYY-MM-DD) still kept: today in `time_zone` and the
    `keep_days - 1` days before it."""
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(ZoneInfo(time_zone)).date()
    return (today - timedelta(days=keep_days - 1)).isoformat()


def figures_of(summary: DailySummary) -> dict[str, Any]:
    """What is stored for a summary: its figures without the day (the row's key)."""
    return summary.model_dump(mode="json", exclude={"day"})


@dataclass(frozen=True)
class StoredSummary:
    elder_id: str
    day: str
    hub_id: str
    received_at_ms: int
    figures: dict[str, Any]


class SummaryStore:
    """Reads and writes `daily_summaries`, with the server store's write discipline."""

    def __init__(self, store: ServerStore) -> None:
        self._store = store
        self.engine = store.engine

    async def record(
        self, hub: HubIdentity, summary: DailySummary, now_ms: int, oldest_day: str
    ) -> Recorded:
        """Keep the summary as the hub's elder's for its day, unless that day is stored
        already (a repeat: nothing changes) or older than `oldest_day` (not kept)."""
        if summary.day < oldest_day:
            return Recorded.EXPIRED
        insert = (
            dialect_insert(self.engine, daily_summaries)
            .values(
                elder_id=hub.elder_id,
                day=summary.day,
                hub_id=hub.hub_id,
                received_at_ms=now_ms,
                figures=figures_of(summary),
            )
            .on_conflict_do_nothing()
            .returning(daily_summaries.c.day)
        )
        async with self._store._write() as conn:
            created = (await conn.execute(insert)).first() is not None
        return Recorded.CREATED if created else Recorded.REPEAT

    async def delete_before(self, oldest_day: str) -> int:
        """Delete every summary of a day before `oldest_day`; how many went."""
        async with self._store._write() as conn:
            done = await conn.execute(
                daily_summaries.delete().where(daily_summaries.c.day < oldest_day)
            )
        return int(done.rowcount or 0)

    async def for_elder(self, elder_id: str, since_day: str = "") -> list[StoredSummary]:
        """The elder's summaries from `since_day` on, oldest first."""
        query = (
            sa.select(daily_summaries)
            .where(daily_summaries.c.elder_id == elder_id, daily_summaries.c.day >= since_day)
            .order_by(daily_summaries.c.day)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            StoredSummary(r.elder_id, r.day, r.hub_id, r.received_at_ms, dict(r.figures))
            for r in rows
        ]


async def prune_forever(
    summaries: SummaryStore,
    clock: Clock,
    keep_days: int,
    time_zone: str,
    every_s: float = PRUNE_EVERY_S,
) -> None:
    """The retention job of the server runtime: at start and then every `every_s`, delete
    the summaries older than `keep_days` (days counted in the centre's `time_zone`). Every
    server process runs it; a delete that finds nothing costs one indexed scan."""
    while True:
        try:
            gone = await summaries.delete_before(
                oldest_kept_day(clock.now_ms(), keep_days, time_zone)
            )
            if gone:
                log.info("deleted %d daily summaries older than %d days", gone, keep_days)
        except Exception:
            log.exception("daily summary retention failed; retrying")
        await asyncio.sleep(every_s)
