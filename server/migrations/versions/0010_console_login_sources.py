"""addresses each console account signed in from (the sign-in limit's known sources), and
the audit log found by account

The sign-in limit used to lock an account everywhere after a few failures from anywhere,
so an outsider who knew a dispatcher's username could keep them out while on duty. Now an
account's failures only delay new addresses, and not the addresses it signed in from
before: this table remembers those (`server/console/sign_in_limit.py`).

The admins' audit log page filters by account; an index on `console_audit.username` keeps
that from reading the whole log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_login_sources",
        sa.Column("username", sa.String(80), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("last_ok_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("username", "client", name=op.f("pk_console_login_sources")),
    )
    op.create_index("ix_console_login_sources_last_ok_ms", "console_login_sources", ["last_ok_ms"])
    op.create_index("ix_console_audit_username", "console_audit", ["username"])


def downgrade() -> None:
    op.drop_index("ix_console_audit_username", table_name="console_audit")
    op.drop_index("ix_console_login_sources_last_ok_ms", table_name="console_login_sources")
    op.drop_table("console_login_sources")
