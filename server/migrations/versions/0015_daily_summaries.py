"""between emergencies: the hubs' daily summaries and the family doctor's reviews of the
trend flags raised from them (docs/health-review.md)

A summary is one row per elder and local day, its figures as JSON (aggregates only; the
contract `DailySummary` defines them, so a new figure needs no migration). A review records
who looked at a flag, when, and what they noted; it is the follow-up record a team prints.
Both go with their elder (ON DELETE CASCADE). The elder's care plan gains the daily check-in
(`CheckInPlan` as JSON, null: none) and the inactivity switch.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("elders", sa.Column("check_in", sa.JSON(), nullable=True))
    op.add_column(
        "elders", sa.Column("inactivity", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.create_table(
        "daily_summaries",
        sa.Column(
            "elder_id",
            sa.String(64),
            sa.ForeignKey("elders.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("hub_id", sa.String(64), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
        sa.Column("figures", sa.JSON, nullable=False),
    )
    op.create_index("ix_daily_summaries_received_at_ms", "daily_summaries", ["received_at_ms"])
    op.create_index("ix_daily_summaries_day", "daily_summaries", ["day"])
    op.create_table(
        "health_reviews",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column(
            "elder_id",
            sa.String(64),
            sa.ForeignKey("elders.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("flag", sa.String(32), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("figures", sa.JSON, nullable=False),
        sa.Column("reviewed_by", sa.String(80), nullable=False),
        sa.Column("reviewed_at_ms", sa.BigInteger, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_health_reviews_elder_id", "health_reviews", ["elder_id"])


def downgrade() -> None:
    op.drop_index("ix_health_reviews_elder_id", table_name="health_reviews")
    op.drop_table("health_reviews")
    op.drop_index("ix_daily_summaries_day", table_name="daily_summaries")
    op.drop_index("ix_daily_summaries_received_at_ms", table_name="daily_summaries")
    op.drop_table("daily_summaries")
    with op.batch_alter_table("elders") as batch:
        batch.drop_column("inactivity")
        batch.drop_column("check_in")
