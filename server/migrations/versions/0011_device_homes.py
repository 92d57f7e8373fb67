"""a device belongs to one household; an alarm from a device not paired with its hub is
stored, flagged

A hub used to be able to pair any device id nobody had paired, including a device of
another home whose hub had been moved (its pairings were deleted), and an alarm from a
device not paired with the uploading hub was refused (422) and lost. Now every device id
has one household (``device_homes``, filled from today's pairings), which only an installer
or admin can release, and an alarm from a device the hub's household does not own is
stored for the hub's household with ``alarms.device_flag`` saying why
(``device_unknown``, ``device_foreign``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.String(64)


def upgrade() -> None:
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("device_flag", sa.String(16), nullable=True))
    op.create_table(
        "device_homes",
        sa.Column("device_id", Id, nullable=False),
        sa.Column("household_id", Id, sa.ForeignKey("households.id"), nullable=False),
        sa.Column("claimed_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_homes")),
    )
    op.create_index("ix_device_homes_household_id", "device_homes", ["household_id"])
    op.execute(
        "INSERT INTO device_homes (device_id, household_id, claimed_at_ms)"
        " SELECT devices.id, hubs.household_id, COALESCE(hubs.enrolled_at_ms, 0)"
        " FROM devices JOIN hubs ON hubs.id = devices.hub_id"
        " WHERE hubs.household_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_device_homes_household_id", table_name="device_homes")
    op.drop_table("device_homes")
    with op.batch_alter_table("alarms") as batch:
        batch.drop_column("device_flag")
