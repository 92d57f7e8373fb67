"""console accounts: accounts with roles, server-side sessions, login failures, audit log

The duty dispatcher's console (server/console) signs people in with argon2-hashed passwords;
sessions are stored by the hash of their cookie id with a CSRF token each; failed logins
are counted in the database so every server process applies the same rate limit; every
view of an elder's medical notes or key-safe code is recorded for the admins.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.String(64)


def _big_id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "console_accounts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("username", sa.String(80), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("team_id", Id, sa.ForeignKey("teams.id"), nullable=True),
        sa.Column("language", sa.String(8), nullable=False, server_default="zh"),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("username", name="uq_console_accounts_username"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("account_id", Id, sa.ForeignKey("console_accounts.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_console_sessions_account_id", "console_sessions", ["account_id"])
    op.create_table(
        "console_login_failures",
        _big_id(),
        sa.Column("username", sa.String(80), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
    )
    for column in ("username", "client", "at_ms"):
        op.create_index(f"ix_console_login_failures_{column}", "console_login_failures", [column])
    op.create_table(
        "console_audit",
        _big_id(),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("username", sa.String(80), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("elder_id", Id, nullable=False),
        sa.Column("alarm_id", Id, nullable=True),
    )
    op.create_index("ix_console_audit_at_ms", "console_audit", ["at_ms"])
    op.create_index("ix_console_audit_elder_id", "console_audit", ["elder_id"])


def downgrade() -> None:
    op.drop_table("console_audit")
    op.drop_table("console_login_failures")
    op.drop_table("console_sessions")
    op.drop_table("console_accounts")
