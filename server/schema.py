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
    sa.Column("kind", sa.String(16), nullable=False, server_default="care"),  # care | dispatch
    sa.Column("time_zone", sa.String(64), nullable=False, server_default="Asia/Shanghai"),
    sa.Column("service_area", sa.String(400), nullable=False, server_default=""),
    sa.Column("base_lat", sa.Float, nullable=True),
    sa.Column("base_lon", sa.Float, nullable=True),
    sa.Column("backup_team_ids", sa.JSON, nullable=True),  # list of team ids
    sa.Column("roster", sa.JSON, nullable=True),  # server.directory.RosterEntry
    sa.Column("policies", sa.JSON, nullable=True),  # alarm class → escalation policy id
    # `server.triage.TriagePolicy` as {"mode", "operator_first_s"}; NULL: parallel (0012)
    sa.Column("triage", sa.JSON, nullable=True),
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
    sa.Column("role", sa.String(16), nullable=False, server_default="doctor"),
    sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
)

directory_version = sa.Table(
    "directory_version",
    metadata,
    # one row (id 1), bumped by triggers on teams, doctors and escalation_policies
    # (migration 0009): the processes' care maps are rebuilt only when it moves
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

checklists = sa.Table(
    "checklists",
    metadata,
    # the directory file's [checklists] (0016): one row per alarm kind it sets, replaced on
    # each load; a kind without a row has `server.console.checklists.DEFAULTS`
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("texts", sa.JSON, nullable=False),  # the items, the centre's texts, in order
)

households = sa.Table(
    "households",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("address", sa.String(400), nullable=False, server_default=""),
    sa.Column("team_id", Id, sa.ForeignKey("teams.id"), nullable=True),  # contracted team
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)
"""A home: its address, the elder(s) living there, the contracted team, its hub(s)."""

elders = sa.Table(
    "elders",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("team_id", Id, sa.ForeignKey("teams.id"), nullable=False, index=True),
    sa.Column("household_id", Id, sa.ForeignKey("households.id"), nullable=True, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("address", sa.String(400), nullable=False, server_default=""),
    sa.Column("short_address", sa.String(100), nullable=False, server_default=""),
    sa.Column("spo2_scale2", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("fall_sensitivity", sa.Float, nullable=False, server_default="0.5"),
    sa.Column("on_oxygen", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("wearable_channels", sa.JSON, nullable=True),  # null: whatever arrives
    sa.Column("lat", sa.Float, nullable=True),
    sa.Column("lon", sa.Float, nullable=True),
    sa.Column("care_level", sa.Integer, nullable=False, server_default="0"),
    sa.Column("medical_notes", sa.Text, nullable=False, server_default=""),
    sa.Column("key_safe_secret", sa.String(400), nullable=True),  # encrypted (server.secrets)
    sa.Column("language", sa.String(8), nullable=False, server_default="zh"),
    # the care plan between emergencies (migration 0015, docs/health-review.md)
    sa.Column("check_in", sa.JSON, nullable=True),  # carehub.api_contract.CheckInPlan; null: none
    sa.Column("inactivity", sa.Boolean, nullable=False, server_default=sa.true()),
    # who the elder is, for the operator (migration 0017, server.elder_facts)
    sa.Column("phone", sa.String(32), nullable=True),  # the elder's own (mobile), E.164
    sa.Column("home_phone", sa.String(32), nullable=True),  # the landline at home, E.164
    sa.Column("born", sa.String(10), nullable=True),  # "1941" or "1941-03-08"
    sa.Column("sex", sa.String(8), nullable=True),  # server.elder_facts.Sex
    sa.Column("warnings", sa.JSON, nullable=True),  # [server.elder_facts.ElderWarning]
)

emergency_contacts = sa.Table(
    "emergency_contacts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("elder_id", Id, sa.ForeignKey("elders.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("phone", sa.String(32), nullable=False),
    sa.Column("language", sa.String(8), nullable=False, server_default="zh"),
    sa.Column("relation", sa.String(40), nullable=False, server_default=""),
    sa.Column("notify_on", sa.JSON, nullable=False),  # ["accepted", "arrived", "cancelled", …]
)

escalation_policies = sa.Table(
    "escalation_policies",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),  # server.directory.PolicyEntry
)

hubs_version = sa.Table(
    "hubs_version",
    metadata,
    # one row (id 1), bumped by triggers on any insert or delete of `hubs` and any update
    # of a hub's token, elder or household (migration 0018): each process's cache of hub
    # identities (`server.hub_identities`) is trusted only while it stands
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

hubs = sa.Table(
    "hubs",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("elder_id", Id, sa.ForeignKey("elders.id"), nullable=False, index=True),
    sa.Column("household_id", Id, sa.ForeignKey("households.id"), nullable=True, index=True),
    # sha256 of the token; a revoked hub's is `server.auth.REVOKED` + random (matches none)
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hardware_id", sa.String(200), nullable=False, server_default=""),
    sa.Column("enrolled_at_ms", sa.BigInteger, nullable=True),
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

device_homes = sa.Table(
    "device_homes",
    metadata,
    sa.Column("device_id", Id, primary_key=True),
    sa.Column("household_id", Id, sa.ForeignKey("households.id"), nullable=False, index=True),
    sa.Column("claimed_at_ms", sa.BigInteger, nullable=False),
)
"""The household each device id belongs to (migration 0011): kept when its hub is moved,
so another home's hub cannot pair it; released by that home's hub or an admin."""

enrollment_codes = sa.Table(
    "enrollment_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),  # sha256 of the normalised code
    sa.Column("household_id", Id, sa.ForeignKey("households.id"), nullable=False, index=True),
    sa.Column("created_by", sa.String(80), nullable=False),  # admin | console:<username>
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    sa.Column("used_at_ms", sa.BigInteger, nullable=True),
    sa.Column("hub_id", Id, nullable=True),  # the hub it enrolled
)

enroll_attempts = sa.Table(
    "enroll_attempts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("client", sa.String(64), nullable=False, index=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),
)
"""Every enrollment attempt, for the rate limits every server process shares: `client` is
the key counted, ``s:<source>`` or ``h:<household hash>`` (`server.enrollment`)."""

selftests = sa.Table(
    "selftests",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("household_id", Id, sa.ForeignKey("households.id"), nullable=False, index=True),
    sa.Column("hub_id", Id, sa.ForeignKey("hubs.id"), nullable=False),
    sa.Column("report_id", Id, nullable=False),  # hub-made: dedups retries, per hub
    sa.Column("started_at_ms", sa.BigInteger, nullable=False),
    sa.Column("finished_at_ms", sa.BigInteger, nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("test_alarm_id", Id, nullable=True),  # the hub's id of its test alarm
    sa.Column("checks", sa.JSON, nullable=False),  # carehub.api_contract.SelftestCheck
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Index("uq_selftests_hub_report", "hub_id", "report_id", unique=True),
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
    sa.Column("accepted_by", Id, nullable=True),  # a member id (kept if the member leaves)
    sa.Column("accepted_at_ms", sa.BigInteger, nullable=True),
    sa.Column("arrived_at_ms", sa.BigInteger, nullable=True),
    sa.Column("first_notified_at_ms", sa.BigInteger, nullable=True),
    sa.Column("resolved_at_ms", sa.BigInteger, nullable=True),
    sa.Column("outcome", sa.String(24), nullable=True),
    sa.Column("is_test", sa.Boolean, nullable=False, server_default=sa.false()),
    # repeats of this alarm from the same device and kind while it was open (alarm_repeats)
    sa.Column("repeat_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_repeat_at_ms", sa.BigInteger, nullable=True),
    # why the device is not the hub's household's: `carehub.api_contract.DeviceFlag` (0011)
    sa.Column("device_flag", sa.String(16), nullable=True),
    # when an operator first answered or handled it (time to answer), and their latest
    # outcome, `server.triage.TriageOutcome` (0012)
    sa.Column("operator_at_ms", sa.BigInteger, nullable=True),
    sa.Column("triage_outcome", sa.String(24), nullable=True),
    # the console user who has the alarm (server.console.alarm_actions.claim), if anyone (0014)
    sa.Column("claimed_by", sa.String(80), nullable=True),
    sa.Column("claimed_at_ms", sa.BigInteger, nullable=True),
    sa.Index("uq_alarms_hub_alarm", "hub_id", "hub_alarm_id", unique=True),
    sa.Index("ix_alarms_open_per_device", "hub_id", "device_id", "kind", "state"),
)

alarm_repeats = sa.Table(
    "alarm_repeats",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("alarm_id", Id, sa.ForeignKey("alarms.id"), nullable=False, index=True),
    sa.Column("hub_id", Id, nullable=False),
    sa.Column("hub_alarm_id", Id, nullable=False),  # the hub's id for this repeat
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("event_ts_ms", sa.BigInteger, nullable=True),
    sa.Column("raised_at_ms", sa.BigInteger, nullable=False),
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    # the hub hears of the alarm's state changes after this event (cursor), under this id
    sa.Column("after_event_id", sa.BigInteger, nullable=False),
    sa.Index("uq_alarm_repeats_hub_alarm", "hub_id", "hub_alarm_id", unique=True),
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
    sa.Column("actor", sa.String(80), nullable=False, server_default=""),  # hub, member:…, system
    sa.Column("report_id", Id, nullable=True),  # hub-made: dedups retried reports, per hub
    sa.Index("uq_alarm_events_hub_report", "hub_id", "report_id", unique=True),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("alarm_id", Id, sa.ForeignKey("alarms.id"), nullable=False, index=True),
    # a member (indexed: each of their SMS looks up their reply codes), or a contact
    sa.Column("doctor_id", Id, sa.ForeignKey("doctors.id"), nullable=True, index=True),
    sa.Column("contact_id", Id, nullable=True),
    sa.Column("purpose", sa.String(24), nullable=False),  # dispatch | escalation-N | …
    sa.Column("status", sa.String(16), nullable=False),  # carehub.admin_contract.NotificationStatus
    sa.Column("body", sa.String(400), nullable=False),
    sa.Column("provider_ref", sa.String(64), nullable=True, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("sent_at_ms", sa.BigInteger, nullable=True),
    sa.Column("to_phone", sa.String(32), nullable=True),
    sa.Column("position", sa.Integer, nullable=True),  # the escalation step that sent it
    sa.Column("provider_status", sa.String(16), nullable=True),  # Twilio's, via callbacks
    sa.Column("status_at_ms", sa.BigInteger, nullable=True),
    sa.Column("send_deadline_ms", sa.BigInteger, nullable=True),
    sa.Column("next_attempt_at_ms", sa.BigInteger, nullable=True, index=True),
    sa.Column("link_token_hash", sa.String(64), nullable=True),
    sa.Column("link_expires_at_ms", sa.BigInteger, nullable=True),
    sa.Column("reply_code", sa.Integer, nullable=True),
    sa.Column("response", sa.String(16), nullable=True),  # accepted | declined (by the member)
    sa.UniqueConstraint("alarm_id", "doctor_id", "purpose", name="uq_notifications_once"),
    sa.Index("uq_notifications_link_token_hash", "link_token_hash", unique=True),
    sa.Index("uq_notifications_contact_once", "alarm_id", "contact_id", "purpose", unique=True),
    # what a number was sent lately (the per-number limit), read before each batch is sent
    sa.Index("ix_notifications_to_phone_sent", "to_phone", "sent_at_ms"),
)

escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("alarm_id", Id, sa.ForeignKey("alarms.id"), primary_key=True),
    sa.Column("policy_id", Id, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # server.escalation.LadderStatus
    sa.Column("position", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at_ms", sa.BigInteger, nullable=True, index=True),
    sa.Column("members", sa.JSON, nullable=False),  # the current step's members
    sa.Column("dispatcher", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("started_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

sms_optouts = sa.Table(
    "sms_optouts",
    metadata,
    sa.Column("phone", sa.String(32), primary_key=True),
    sa.Column("opted_out", sa.Boolean, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

inbound_messages = sa.Table(
    "inbound_messages",
    metadata,
    sa.Column("sid", sa.String(64), primary_key=True),  # Twilio MessageSid: dedups retries
    sa.Column("from_phone", sa.String(32), nullable=False, index=True),
    sa.Column("body", sa.String(1600), nullable=False),
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("result", sa.String(200), nullable=False, server_default=""),
)

link_views = sa.Table(
    "link_views",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("notification_id", Id, sa.ForeignKey("notifications.id"), nullable=False, index=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column(
        "action", sa.String(16), nullable=False
    ),  # view | accept | decline | arrived | key_safe
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
    # the newest report per (hub, device, fault): the health board and the fault writer (0014)
    sa.Index("ix_faults_latest", "hub_id", "device_id", "fault", "id"),
)

# ------------------------------------------------------------ the console (server/console)

console_accounts = sa.Table(
    "console_accounts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("username", sa.String(80), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),  # argon2id
    sa.Column("role", sa.String(16), nullable=False),  # server.console.accounts.Role
    sa.Column("team_id", Id, sa.ForeignKey("teams.id"), nullable=True),
    sa.Column("language", sa.String(8), nullable=False, server_default="zh"),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # sha256 of the cookie's id
    sa.Column("account_id", Id, sa.ForeignKey("console_accounts.id"), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
)

console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("username", sa.String(80), nullable=False, index=True),
    sa.Column("client", sa.String(64), nullable=False, index=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),
)

console_login_sources = sa.Table(
    "console_login_sources",
    metadata,
    sa.Column("username", sa.String(80), primary_key=True),
    sa.Column("client", sa.String(64), primary_key=True),
    sa.Column("last_ok_ms", sa.BigInteger, nullable=False, index=True),
)
"""Where each account signed in from: its delay after failures elsewhere does not apply
there (server/console/sign_in_limit.py)."""

console_audit = sa.Table(
    "console_audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("account_id", Id, nullable=False),  # kept if the account goes
    sa.Column("username", sa.String(80), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),  # medical_notes | key_safe
    sa.Column("elder_id", Id, nullable=False, index=True),
    sa.Column("alarm_id", Id, nullable=True),
)

# ------------------------------------------------------------ voice calls (server/voice_calls.py)

voice_calls = sa.Table(
    "voice_calls",
    metadata,
    sa.Column("id", Id, primary_key=True),  # made by the side that offers
    sa.Column("hub_id", Id, sa.ForeignKey("hubs.id"), nullable=False),
    sa.Column("alarm_id", Id, sa.ForeignKey("alarms.id"), nullable=False, index=True),
    sa.Column("hub_alarm_id", Id, nullable=False),  # the hub's name for the alarm
    sa.Column("direction", sa.String(16), nullable=False),  # carehub.api_contract.CallDirection
    sa.Column("state", sa.String(16), nullable=False),  # ringing | answered | ended
    sa.Column("end_reason", sa.String(24), nullable=True),  # CallEndReason
    sa.Column("started_by", sa.String(80), nullable=True),  # the operator who called the home
    sa.Column("answered_by", sa.String(80), nullable=True),  # the operator who talked
    sa.Column("offer_sdp", sa.Text, nullable=False),
    sa.Column("answer_sdp", sa.Text, nullable=True),
    sa.Column("is_test", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("answered_at_ms", sa.BigInteger, nullable=True),
    sa.Column("ended_at_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_voice_calls_hub_state", "hub_id", "state"),
)

# ------------------------------------------------ between emergencies (docs/health-review.md)

daily_summaries = sa.Table(
    "daily_summaries",
    metadata,
    sa.Column("elder_id", Id, sa.ForeignKey("elders.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # the centre's local date, YYYY-MM-DD
    sa.Column("hub_id", Id, nullable=False),  # who sent it (kept if the hub is replaced)
    sa.Column("received_at_ms", sa.BigInteger, nullable=False, index=True),
    # `carehub.api_contract.DailySummary` without `day`: aggregates only, never raw streams
    sa.Column("figures", sa.JSON, nullable=False),
    sa.Index("ix_daily_summaries_day", "day"),  # the retention job deletes by day
)
"""One elder's day as the hub summarised it; the first upload of a (elder, day) is kept, a
repeat changes nothing. Deleted with the elder and after `summary_keep_days`."""

health_reviews = sa.Table(
    "health_reviews",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column(
        "elder_id", Id, sa.ForeignKey("elders.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("flag", sa.String(32), nullable=False),  # server.health_flags.FlagKind
    sa.Column("day", sa.String(10), nullable=False),  # the summary day the flag was raised on
    sa.Column("figures", sa.JSON, nullable=False),  # what raised it, as shown when reviewed
    sa.Column("reviewed_by", sa.String(80), nullable=False),  # console username
    sa.Column("reviewed_at_ms", sa.BigInteger, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
)
"""A family doctor's review of a trend flag (the follow-up record, 随访): who, when, a note."""
