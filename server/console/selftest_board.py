"""The health board's self-test section: homes not proven to work end to end, because their
last installer self-test failed or they never had one (kept apart from `health_board`, which
lists live faults)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.schema import elders, households, hubs, selftests


@dataclass(frozen=True)
class HomeToTest:
    subject: str  # the household id
    where: str  # its first elder's short address (no medical data)
    since_ms: int | None  # when the failed self-test finished; None: never tested
    detail: str = ""  # the failed checks, or "never self-tested"
    failed: bool = False


async def homes_to_selftest(engine: AsyncEngine, team_id: str | None = None) -> list[HomeToTest]:
    """Homes with a hub whose last self-test failed (oldest failure first), then those that
    never had one (by id); only `team_id`'s households when it is given."""
    latest = (
        sa.select(selftests.c.household_id, sa.func.max(selftests.c.id).label("id"))
        .group_by(selftests.c.household_id)
        .subquery()
    )
    first_elder = (
        sa.select(elders.c.household_id, sa.func.min(elders.c.short_address).label("where"))
        .group_by(elders.c.household_id)
        .subquery()
    )
    with_hub = sa.select(hubs.c.household_id).where(hubs.c.household_id.is_not(None))
    query = (
        sa.select(
            households.c.id,
            first_elder.c.where,
            selftests.c.passed,
            selftests.c.finished_at_ms,
            selftests.c.checks,
        )
        .outerjoin(latest, latest.c.household_id == households.c.id)
        .outerjoin(selftests, selftests.c.id == latest.c.id)
        .outerjoin(first_elder, first_elder.c.household_id == households.c.id)
        .where(households.c.id.in_(with_hub))
    )
    if team_id is not None:
        query = query.where(households.c.team_id == team_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    out = [
        HomeToTest(
            subject=r.id,
            where=r.where or "",
            since_ms=r.finished_at_ms,
            detail=(
                ", ".join(c["name"] for c in r.checks if not c.get("passed"))
                if r.passed is not None
                else ""
            ),
            failed=r.passed is False,
        )
        for r in rows
        if r.passed is not True  # listed until its latest self-test passed
    ]
    return sorted(out, key=lambda h: (not h.failed, h.since_ms or 0, h.subject))
