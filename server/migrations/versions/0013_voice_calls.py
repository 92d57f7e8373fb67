"""voice calls between a home's speakerphone and the console (docs/voice.md)

One row per call: who offered, who answered, the SDPs exchanged (signalling only: no audio
passes through the server) and how it ended. Triage and the audit read it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "voice_calls",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("hub_id", sa.String(64), nullable=False),
        sa.Column("alarm_id", sa.String(64), nullable=False),
        sa.Column("hub_alarm_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("end_reason", sa.String(24), nullable=True),
        sa.Column("started_by", sa.String(80), nullable=True),
        sa.Column("answered_by", sa.String(80), nullable=True),
        sa.Column("offer_sdp", sa.Text, nullable=False),
        sa.Column("answer_sdp", sa.Text, nullable=True),
        sa.Column("is_test", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("answered_at_ms", sa.BigInteger, nullable=True),
        sa.Column("ended_at_ms", sa.BigInteger, nullable=True),
        sa.ForeignKeyConstraint(
            ["alarm_id"], ["alarms.id"], name=op.f("fk_voice_calls_alarm_id_alarms")
        ),
        sa.ForeignKeyConstraint(["hub_id"], ["hubs.id"], name=op.f("fk_voice_calls_hub_id_hubs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_calls")),
    )
    op.create_index(op.f("ix_voice_calls_alarm_id"), "voice_calls", ["alarm_id"], unique=False)
    op.create_index("ix_voice_calls_hub_state", "voice_calls", ["hub_id", "state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_voice_calls_hub_state", table_name="voice_calls")
    op.drop_index(op.f("ix_voice_calls_alarm_id"), table_name="voice_calls")
    op.drop_table("voice_calls")
