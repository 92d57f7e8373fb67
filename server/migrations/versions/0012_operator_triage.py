"""operator triage: a team's triage policy; an alarm's operator answer time and outcome

``teams.triage`` holds the team's policy from the directory file (``{"mode":
"operator_first", "operator_first_s": 60}``; NULL is ``parallel``). ``alarms.operator_at_ms``
is when an operator first answered or handled the alarm (a triage outcome, an
acknowledgement, an answered call), the time-to-answer KPI; ``alarms.triage_outcome`` the
operator's latest outcome (`server.triage.TriageOutcome`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("triage", sa.JSON(), nullable=True))
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("operator_at_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("triage_outcome", sa.String(24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alarms") as batch:
        batch.drop_column("triage_outcome")
        batch.drop_column("operator_at_ms")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("triage")
