"""dispatch model: rosters, policies, escalations, links, replies, delivery status

Teams gain a time zone, a base and a roster; members a role; elders what a responder needs
(coordinates, care level, medical notes, an encrypted key-safe code, emergency contacts).
Each alarm gets an escalation row (the next step's due time: what the workers claim) and
notifications gain their link token hash, reply code and provider status.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.String(64)


def _add(table: str, *columns: sa.Column) -> None:  # type: ignore[type-arg]
    for column in columns:
        op.add_column(table, column)


def upgrade() -> None:
    _add(
        "teams",
        sa.Column("kind", sa.String(16), nullable=False, server_default="care"),
        sa.Column("time_zone", sa.String(64), nullable=False, server_default="Asia/Shanghai"),
        sa.Column("service_area", sa.String(400), nullable=False, server_default=""),
        sa.Column("base_lat", sa.Float(), nullable=True),
        sa.Column("base_lon", sa.Float(), nullable=True),
        sa.Column("backup_team_ids", sa.JSON(), nullable=True),
        sa.Column("roster", sa.JSON(), nullable=True),
        sa.Column("policies", sa.JSON(), nullable=True),
    )
    _add(
        "doctors",
        sa.Column("role", sa.String(16), nullable=False, server_default="doctor"),
        sa.Column("verified", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    _add(
        "elders",
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("care_level", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("medical_notes", sa.Text(), nullable=False, server_default=""),
        sa.Column("key_safe_secret", sa.String(400), nullable=True),
        sa.Column("language", sa.String(8), nullable=False, server_default="zh"),
    )
    _add(
        "alarms",
        sa.Column("accepted_by", Id, nullable=True),
        sa.Column("accepted_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("arrived_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("first_notified_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(24), nullable=True),
        sa.Column("is_test", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    _add("alarm_events", sa.Column("actor", sa.String(80), nullable=False, server_default=""))
    _add(
        "notifications",
        sa.Column("to_phone", sa.String(32), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("provider_status", sa.String(16), nullable=True),
        sa.Column("status_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("send_deadline_ms", sa.BigInteger(), nullable=True),
        sa.Column("next_attempt_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("link_token_hash", sa.String(64), nullable=True),
        sa.Column("link_expires_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("reply_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.String(16), nullable=True),
    )
    with op.batch_alter_table("notifications") as batch_op:  # contacts are not members
        batch_op.alter_column("doctor_id", existing_type=Id, nullable=True)
        batch_op.add_column(sa.Column("contact_id", Id, nullable=True))
    op.create_index("ix_notifications_next_attempt_at_ms", "notifications", ["next_attempt_at_ms"])
    op.create_index(
        "uq_notifications_contact_once",
        "notifications",
        ["alarm_id", "contact_id", "purpose"],
        unique=True,
    )
    op.create_index(
        "uq_notifications_link_token_hash", "notifications", ["link_token_hash"], unique=True
    )
    op.create_table(
        "emergency_contacts",
        sa.Column("id", Id, nullable=False),
        sa.Column("elder_id", Id, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("language", sa.String(8), nullable=False, server_default="zh"),
        sa.Column("relation", sa.String(40), nullable=False, server_default=""),
        sa.Column("notify_on", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name="fk_emergency_contacts_elder_id_elders"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_emergency_contacts"),
    )
    op.create_index("ix_emergency_contacts_elder_id", "emergency_contacts", ["elder_id"])
    op.create_table(
        "escalation_policies",
        sa.Column("id", Id, nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_escalation_policies"),
    )
    op.create_table(
        "escalations",
        sa.Column("alarm_id", Id, nullable=False),
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("due_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("dispatcher", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.id"], name="fk_escalations_alarm_id_alarms"),
        sa.PrimaryKeyConstraint("alarm_id", name="pk_escalations"),
    )
    op.create_index("ix_escalations_due_at_ms", "escalations", ["due_at_ms"])
    op.create_table(
        "sms_optouts",
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("phone", name="pk_sms_optouts"),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("sid", sa.String(64), nullable=False),
        sa.Column("from_phone", sa.String(32), nullable=False),
        sa.Column("body", sa.String(1600), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.String(200), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("sid", name="pk_inbound_messages"),
    )
    op.create_index("ix_inbound_messages_from_phone", "inbound_messages", ["from_phone"])
    op.create_table(
        "link_views",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("notification_id", Id, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name="fk_link_views_notification_id_notifications",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_link_views"),
    )
    op.create_index("ix_link_views_notification_id", "link_views", ["notification_id"])


def downgrade() -> None:
    for table in (
        "link_views",
        "inbound_messages",
        "sms_optouts",
        "escalations",
        "escalation_policies",
        "emergency_contacts",
    ):
        op.drop_table(table)
    op.drop_index("uq_notifications_contact_once", table_name="notifications")
    op.drop_index("uq_notifications_link_token_hash", table_name="notifications")
    op.drop_index("ix_notifications_next_attempt_at_ms", table_name="notifications")
    columns = {
        "notifications": (
            "to_phone position provider_status status_at_ms send_deadline_ms"
            " next_attempt_at_ms link_token_hash link_expires_at_ms reply_code response contact_id"
        ),
        "alarm_events": "actor",
        "alarms": (
            "accepted_by accepted_at_ms arrived_at_ms first_notified_at_ms resolved_at_ms"
            " outcome is_test"
        ),
        "elders": "lat lon care_level medical_notes key_safe_secret language",
        "doctors": "role verified",
        "teams": "kind time_zone service_area base_lat base_lon backup_team_ids roster policies",
    }
    for table, names in columns.items():
        with op.batch_alter_table(table) as batch_op:
            for name in names.split():
                batch_op.drop_column(name)
