"""The server's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

Times are epoch milliseconds (BigInteger) so both databases agree without time-zone rules.
Changes go through Alembic migrations in `server/migrations/versions`.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = sa.String(64)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
)

doctors = sa.Table(
    "doctors",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("team_id", Id, sa.ForeignKey("teams.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("phone", sa.String(32), nullable=False),
    sa.Column("language", sa.String(8), nullable=False, server_default="zh"),
    sa.Column("on_duty", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
)

elders = sa.Table(
    "elders",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("team_id", Id, sa.ForeignKey("teams.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("address", sa.String(400), nullable=False, server_default=""),
    sa.Column("short_address", sa.String(100), nullable=False, server_default=""),
    sa.Column("spo2_scale2", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("fall_sensitivity", sa.Float, nullable=False, server_default="0.5"),
)

hubs = sa.Table(
    "hubs",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("elder_id", Id, sa.ForeignKey("elders.id"), nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("last_seen_ms", sa.BigInteger, nullable=True),
    sa.Column("health", sa.JSON, nullable=True),
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("hub_id", Id, sa.ForeignKey("hubs.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
)

alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("id", Id, primary_key=True),  # made on the server (uuid4 hex)
    sa.Column("hub_id", Id, sa.ForeignKey("hubs.id"), nullable=False, index=True),
    sa.Column("hub_alarm_id", Id, nullable=False),  # made on the hub: idempotency key per hub
    sa.Column("elder_id", Id, sa.ForeignKey("elders.id"), nullable=False, index=True),
    sa.Column("device_id", Id, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("event_ts_ms", sa.BigInteger, nullable=True),
    sa.Column("raised_at_ms", sa.BigInteger, nullable=False),
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Column("doctor_id", Id, sa.ForeignKey("doctors.id"), nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Index("uq_alarms_hub_alarm", "hub_id", "hub_alarm_id", unique=True),
)

alarm_events = sa.Table(
    "alarm_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("alarm_id", Id, sa.ForeignKey("alarms.id"), nullable=False, index=True),
    sa.Column("hub_id", Id, nullable=False, index=True),
    sa.Column("kind", sa.String(24), nullable=False),  # state | doctor_chosen | sms_sent | …
    sa.Column("state", sa.String(16), nullable=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.String(400), nullable=False, server_default=""),
    sa.Column("report_id", Id, nullable=True),  # hub-made: dedups retried reports, per hub
    sa.Index("uq_alarm_events_hub_report", "hub_id", "report_id", unique=True),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("alarm_id", Id, sa.ForeignKey("alarms.id"), nullable=False, index=True),
    sa.Column("doctor_id", Id, sa.ForeignKey("doctors.id"), nullable=False),
    sa.Column("purpose", sa.String(24), nullable=False),  # dispatch | escalation-N | …
    sa.Column("status", sa.String(16), nullable=False),  # carehub.admin_contract.NotificationStatus
    sa.Column("body", sa.String(400), nullable=False),
    sa.Column("provider_ref", sa.String(64), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("sent_at_ms", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("alarm_id", "doctor_id", "purpose", name="uq_notifications_once"),
)

faults = sa.Table(
    "faults",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("hub_id", Id, sa.ForeignKey("hubs.id"), nullable=False, index=True),
    sa.Column("device_id", Id, nullable=False),
    sa.Column("fault", sa.String(24), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("since_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.String(200), nullable=False, server_default=""),
    sa.Column("report_id", Id, nullable=False),  # hub-made (or server-made), unique per hub
    sa.Index("uq_faults_hub_report", "hub_id", "report_id", unique=True),
)
