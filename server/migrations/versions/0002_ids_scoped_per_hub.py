"""alarm and report ids scoped per hub

An alarm gets a server-made primary key; the hub's own id moves to ``hub_alarm_id``, unique
per hub, so one hub's ids can neither read nor shadow another hub's alarms. Report ids
(state reports, faults) become unique per hub for the same reason. Existing alarms keep
their id as both.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # add the column in place (alarms is referenced by other tables, so SQLite must not copy it)
    op.add_column(
        "alarms", sa.Column("hub_alarm_id", sa.String(64), nullable=False, server_default="")
    )
    op.execute("UPDATE alarms SET hub_alarm_id = id")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("alarms", "hub_alarm_id", server_default=None)
    op.create_index("uq_alarms_hub_alarm", "alarms", ["hub_id", "hub_alarm_id"], unique=True)

    with op.batch_alter_table("alarm_events") as batch_op:
        batch_op.drop_constraint("uq_alarm_events_report_id", type_="unique")
        batch_op.create_index("uq_alarm_events_hub_report", ["hub_id", "report_id"], unique=True)
    with op.batch_alter_table("faults") as batch_op:
        batch_op.drop_constraint("uq_faults_report_id", type_="unique")
        batch_op.create_index("uq_faults_hub_report", ["hub_id", "report_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("faults") as batch_op:
        batch_op.drop_index("uq_faults_hub_report")
        batch_op.create_unique_constraint("uq_faults_report_id", ["report_id"])
    with op.batch_alter_table("alarm_events") as batch_op:
        batch_op.drop_index("uq_alarm_events_hub_report")
        batch_op.create_unique_constraint("uq_alarm_events_report_id", ["report_id"])
    op.drop_index("uq_alarms_hub_alarm", table_name="alarms")
    op.drop_column("alarms", "hub_alarm_id")
