"""care plan: oxygen and the wearable's channel set, per elder

The hub's vital-signs detector scores NEWS2 with the oxygen points for an elder on home
oxygen, and reasons from the values alone on a wearable that reports no motion or signal
quality; both come to the hub in `HubConfig.care_plan` from here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (SQLite has it): a batch copy of `elders` would drop a table that
    # hubs, alarms and households reference
    op.add_column(
        "elders", sa.Column("on_oxygen", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("elders", sa.Column("wearable_channels", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("elders") as batch:
        batch.drop_column("wearable_channels")
        batch.drop_column("on_oxygen")
