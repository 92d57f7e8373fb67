"""indexes for the notification lookups every SMS makes

Each step's SMS looks up its member's reply codes in use (`notifications.doctor_id`), and a
reply code is found by the member's phone; each batch reads what its numbers were sent
lately (`to_phone`, `sent_at_ms`: the per-number limit); a status callback from a message
sent before callbacks named their notifications is matched by `provider_ref`. Without
indexes each of these read the whole `notifications` table, which grows with every SMS a
city sends.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 05:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_notifications_doctor_id", "notifications", ["doctor_id"])
    op.create_index("ix_notifications_provider_ref", "notifications", ["provider_ref"])
    op.create_index("ix_notifications_to_phone_sent", "notifications", ["to_phone", "sent_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_notifications_to_phone_sent", table_name="notifications")
    op.drop_index("ix_notifications_provider_ref", table_name="notifications")
    op.drop_index("ix_notifications_doctor_id", table_name="notifications")
