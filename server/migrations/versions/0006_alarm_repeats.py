"""alarm repeats: one open alarm per device and kind

A button pressed again, or a detector firing again, while the device's alarm of that kind
is still open joins that alarm (`server.alarm_repeats`): the alarm counts its repeats and
each repeat is kept in ``alarm_repeats`` under the hub's own id for it, so the hub's
retries stay idempotent and the hub hears the open alarm's state under that id too.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 23:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.String(64)


def upgrade() -> None:
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(
            sa.Column("repeat_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("last_repeat_at_ms", sa.BigInteger(), nullable=True))
        batch.create_index("ix_alarms_open_per_device", ["hub_id", "device_id", "kind", "state"])
    op.create_table(
        "alarm_repeats",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("alarm_id", Id, sa.ForeignKey("alarms.id"), nullable=False),
        sa.Column("hub_id", Id, nullable=False),
        sa.Column("hub_alarm_id", Id, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("event_ts_ms", sa.BigInteger(), nullable=True),
        sa.Column("raised_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("after_event_id", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_alarm_repeats_alarm_id", "alarm_repeats", ["alarm_id"])
    op.create_index(
        "uq_alarm_repeats_hub_alarm", "alarm_repeats", ["hub_id", "hub_alarm_id"], unique=True
    )


def downgrade() -> None:
    op.drop_table("alarm_repeats")
    with op.batch_alter_table("alarms") as batch:
        batch.drop_index("ix_alarms_open_per_device")
        batch.drop_column("last_repeat_at_ms")
        batch.drop_column("repeat_count")
