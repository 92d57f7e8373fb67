"""The family doctor's review of a team (docs/health-review.md, "The review page"): each
elder's trend flags (`server.health_flags`) with the figures and a 90-day plot, the
reviews that cover them, and the follow-up record. This module is the only writer of
`health_reviews`; it reads the hubs' `daily_summaries` and never changes them.

Order: elders with an open flag (no review covers it) first, then those whose flags are all
reviewed, then the rest; by name within each."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.api_contract import DailySummary
from carehub.settings import TrendThresholds
from server.console.accounts import Account
from server.console.plots import trend_svg
from server.health_flags import (
    FIGURE,
    Flag,
    FlagKind,
    Review,
    covering_review,
    daily_value,
    trend_flags,
)
from server.schema import daily_summaries, elders, health_reviews, teams

log = logging.getLogger(__name__)

PLOT_DAYS = 90
"""The plots show the last 90 days up to the elder's newest summary."""
MAX_NOTE = 1000
HISTORY_ROWS = 200


@dataclass(frozen=True)
class FlagView:
    flag: Flag
    figure: str  # the `DailySummary` field plotted
    review: Review | None  # the review that covers it; None: open
    plot: Markup


@dataclass(frozen=True)
class ElderReview:
    id: str
    name: str
    short_address: str
    team_id: str
    newest_day: str | None  # None: no summary yet
    flags: list[FlagView] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return any(f.review is None for f in self.flags)

    @property
    def rank(self) -> int:
        """0: an open flag; 1: flags, all reviewed; 2: no flag."""
        return 0 if self.open else 1 if self.flags else 2


def review_order(found: Sequence[ElderReview]) -> list[ElderReview]:
    return sorted(found, key=lambda e: (e.rank, -len(e.flags), e.name, e.id))


def summaries_of(rows: Sequence[Any]) -> list[DailySummary]:
    """Stored rows (day, figures) as summaries; a row that no longer validates (a figure
    the contract dropped) is left out and logged, never shown half-read."""
    out = []
    for row in rows:
        try:
            out.append(DailySummary.model_validate({**row.figures, "day": row.day}))
        except ValidationError:
            log.warning("review: summary of %s on %s does not validate", row.elder_id, row.day)
    return out


def plot_of(
    flag: Flag,
    days: Sequence[DailySummary],
    t: TrendThresholds,
    unit_words: Mapping[str, str] | None = None,
) -> Markup:
    """The flag's figure over the `PLOT_DAYS` days up to its day, as the rule counts it
    (`unit_words`: the reader's word for each `Flag.unit`)."""
    last = dt.date.fromisoformat(flag.day)
    labels = [(last - dt.timedelta(days=PLOT_DAYS - 1 - i)).isoformat() for i in range(PLOT_DAYS)]
    by_day = {d.day: d for d in days}
    values = [
        daily_value(flag.kind, by_day[label], t) if label in by_day else None for label in labels
    ]
    recent_from = (last - dt.timedelta(days=flag.window_days - 1)).isoformat()
    unit = (unit_words or {}).get(flag.unit, flag.unit)
    return trend_svg(labels, values, unit, flag.baseline, flag.limit, recent_from)


def elder_review(
    elder: Any,
    days: Sequence[DailySummary],
    reviews: Sequence[Review],
    t: TrendThresholds,
    unit_words: Mapping[str, str] | None = None,
) -> ElderReview:
    """One elder's flags, each with the review covering it (if any) and its plot."""
    views = [
        FlagView(
            flag,
            FIGURE[flag.kind],
            covering_review(flag, reviews),
            plot_of(flag, days, t, unit_words),
        )
        for flag in trend_flags(days, t)
    ]
    newest = max((d.day for d in days), default=None)
    return ElderReview(elder.id, elder.name, elder.short_address, elder.team_id, newest, views)


def _review(row: Any) -> Review | None:
    try:
        kind = FlagKind(row.flag)
    except ValueError:
        return None  # a flag kind since retired: its record stays in the history
    recent = row.figures.get("recent") if isinstance(row.figures, Mapping) else None
    return Review(
        kind,
        row.day,
        float(recent) if isinstance(recent, int | float) else 0.0,
        row.reviewed_by,
        row.reviewed_at_ms,
        row.note,
    )


@dataclass(frozen=True)
class HistoryEntry:
    """A stored review, as the follow-up record lists it."""

    flag: str
    day: str
    figures: dict[str, Any]
    reviewed_by: str
    reviewed_at_ms: int
    note: str


class HealthReviews:
    """Reads summaries and reviews for the page; records a doctor's review."""

    def __init__(
        self,
        engine: AsyncEngine,
        thresholds: TrendThresholds,
        unit_words: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.t = thresholds
        self.unit_words = unit_words

    def _since(self, today: dt.date) -> str:
        """The oldest day any view needs: the plots' and the rules' windows, with slack."""
        span = max(PLOT_DAYS, self.t.recent_days + self.t.baseline_days) + 31
        return (today - dt.timedelta(days=span)).isoformat()

    async def teams(self) -> list[tuple[str, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(teams.c.id, teams.c.name).order_by(teams.c.id))
            return [(r.id, r.name) for r in rows]

    async def team(self, team_id: str, today: dt.date) -> list[ElderReview]:
        """Every elder of `team_id`, in `review_order`."""
        scope = elders.c.team_id == team_id
        return review_order(await self._reviews(scope, today))

    async def elder(self, elder_id: str, today: dt.date) -> ElderReview | None:
        found = await self._reviews(elders.c.id == elder_id, today)
        return found[0] if found else None

    async def _reviews(self, scope: Any, today: dt.date) -> list[ElderReview]:
        cols = (elders.c.id, elders.c.name, elders.c.short_address, elders.c.team_id)
        async with self.engine.connect() as conn:
            people = (await conn.execute(sa.select(*cols).where(scope))).all()
            ids = [p.id for p in people]
            rows = (
                await conn.execute(
                    sa.select(daily_summaries)
                    .where(
                        daily_summaries.c.elder_id.in_(ids),
                        daily_summaries.c.day >= self._since(today),
                    )
                    .order_by(daily_summaries.c.day)
                )
            ).all()
            done = (
                await conn.execute(
                    sa.select(health_reviews).where(health_reviews.c.elder_id.in_(ids))
                )
            ).all()
        days: dict[str, list[Any]] = {i: [] for i in ids}
        for row in rows:
            days[row.elder_id].append(row)
        seen: dict[str, list[Review]] = {i: [] for i in ids}
        for row in done:
            if (review := _review(row)) is not None:
                seen[row.elder_id].append(review)
        return [
            elder_review(p, summaries_of(days[p.id]), seen[p.id], self.t, self.unit_words)
            for p in people
        ]

    async def history(self, elder_id: str) -> list[HistoryEntry]:
        """The elder's reviews, newest first (the follow-up record)."""
        r = health_reviews
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(r)
                .where(r.c.elder_id == elder_id)
                .order_by(r.c.reviewed_at_ms.desc(), r.c.id.desc())
                .limit(HISTORY_ROWS)
            )
            return [
                HistoryEntry(
                    x.flag, x.day, dict(x.figures), x.reviewed_by, x.reviewed_at_ms, x.note
                )
                for x in rows
            ]

    async def record(
        self, elder_id: str, flag: Flag, account: Account, note: str, now_ms: int
    ) -> None:
        """Record that `account` reviewed `flag` (with the figures as they were shown)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                health_reviews.insert().values(
                    elder_id=elder_id,
                    flag=flag.kind.value,
                    day=flag.day,
                    figures=flag.figures(),
                    reviewed_by=account.username,
                    reviewed_at_ms=now_ms,
                    note=note,
                )
            )
