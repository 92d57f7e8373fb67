"""who at the console has an alarm (`alarms.claimed_by`, `claimed_at_ms`); the newest
report of each fault found by index

Two dispatchers on one shift must not both phone the same elder while another alarm waits:
an operator claims an alarm, and every console shows who has it. The claim is a column so
that taking it is one conditional UPDATE (atomic on SQLite and PostgreSQL alike); each
claim, take-over and release is also an `alarm_events` row for the timeline.

The health board shows a fault while the newest report of its (hub, device, fault) says
active; `faults` keeps every report, so `ix_faults_latest` finds that newest row without
reading the whole table (the fault writer asks the same question for each batch).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alarms", sa.Column("claimed_by", sa.String(80), nullable=True))
    op.add_column("alarms", sa.Column("claimed_at_ms", sa.BigInteger, nullable=True))
    op.create_index("ix_faults_latest", "faults", ["hub_id", "device_id", "fault", "id"])


def downgrade() -> None:
    op.drop_index("ix_faults_latest", table_name="faults")
    with op.batch_alter_table("alarms") as batch:
        batch.drop_column("claimed_at_ms")
        batch.drop_column("claimed_by")
