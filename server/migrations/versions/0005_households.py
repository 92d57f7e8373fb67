"""households, enrollment codes, enrollment attempts, self-tests

A household (the home: address, contracted team) holds elders and hubs. Installers enroll
hubs with one-time codes (stored hashed); every attempt is counted in the database so all
server processes share one rate limit; self-test reports are kept per household.

Existing hubs each get a household named after their elder (the elder joins it), so a
deployment provisioned from a directory file keeps working.

Columns are added in place (no SQLite table copy: hubs and elders are referenced by other
tables).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 23:40:00
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.String(64)


def _add_household_column(table: str) -> None:
    """``household_id`` (nullable, references households) added in place: SQLite accepts a
    REFERENCES clause in ADD COLUMN, but alembic would only add such a constraint by copying
    the table, which other tables' foreign keys forbid."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN household_id VARCHAR(64) REFERENCES households (id)"
        )
    else:
        op.add_column(table, sa.Column("household_id", Id, nullable=True))
        op.create_foreign_key(
            f"fk_{table}_household_id_households", table, "households", ["household_id"], ["id"]
        )
    op.create_index(f"ix_{table}_household_id", table, ["household_id"])


def upgrade() -> None:
    op.create_table(
        "households",
        sa.Column("id", Id, primary_key=True),
        sa.Column("address", sa.String(400), nullable=False, server_default=""),
        sa.Column("team_id", Id, sa.ForeignKey("teams.id"), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
    )
    _add_household_column("elders")
    _add_household_column("hubs")
    op.add_column(
        "hubs", sa.Column("hardware_id", sa.String(200), nullable=False, server_default="")
    )
    op.add_column("hubs", sa.Column("enrolled_at_ms", sa.BigInteger(), nullable=True))
    op.create_table(
        "enrollment_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("household_id", Id, sa.ForeignKey("households.id"), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("hub_id", Id, nullable=True),
    )
    op.create_index("ix_enrollment_codes_household_id", "enrollment_codes", ["household_id"])
    op.create_table(
        "enroll_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_enroll_attempts_client", "enroll_attempts", ["client"])
    op.create_index("ix_enroll_attempts_at_ms", "enroll_attempts", ["at_ms"])
    op.create_table(
        "selftests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("household_id", Id, sa.ForeignKey("households.id"), nullable=False),
        sa.Column("hub_id", Id, sa.ForeignKey("hubs.id"), nullable=False),
        sa.Column("report_id", Id, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("test_alarm_id", Id, nullable=True),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_selftests_household_id", "selftests", ["household_id"])
    op.create_index("uq_selftests_hub_report", "selftests", ["hub_id", "report_id"], unique=True)

    # every hub already provisioned gets a household named after its elder
    now_ms = int(time.time() * 1000)
    op.execute(
        sa.text(
            "INSERT INTO households (id, address, team_id, created_at_ms)"
            " SELECT e.id, e.address, e.team_id, :now FROM elders e"
            " WHERE e.id IN (SELECT elder_id FROM hubs)"
        ).bindparams(now=now_ms)
    )
    op.execute("UPDATE elders SET household_id = id WHERE id IN (SELECT elder_id FROM hubs)")
    op.execute("UPDATE hubs SET household_id = elder_id")


def downgrade() -> None:
    op.drop_table("selftests")
    op.drop_table("enroll_attempts")
    op.drop_table("enrollment_codes")
    with op.batch_alter_table("hubs") as batch_op:
        batch_op.drop_index("ix_hubs_household_id")
        batch_op.drop_column("enrolled_at_ms")
        batch_op.drop_column("hardware_id")
        batch_op.drop_column("household_id")
    with op.batch_alter_table("elders") as batch_op:
        batch_op.drop_index("ix_elders_household_id")
        batch_op.drop_column("household_id")
    op.drop_table("households")
