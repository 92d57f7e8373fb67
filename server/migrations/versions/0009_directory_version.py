"""a version number the database bumps on every change to the care directory

Each server process keeps the directory (teams, members, policies) in memory as its care
map. It used to rebuild that map every 5 s whether anything had changed or not: for a city
of 10 000 teams each rebuild read 20 000 rows on the event loop and held the interpreter
for 0.1-0.2 s, stalling every request in the process. Triggers bump
`directory_version.version` on any insert, update or delete of `teams`, `doctors` and
`escalation_policies` — whichever process, tool or console made it — so a process reads one
number and rebuilds only when it moved.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 08:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = ("teams", "doctors", "escalation_policies")
BUMP = "UPDATE directory_version SET version = version + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "directory_version",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_version")),
    )
    op.execute("INSERT INTO directory_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION bump_directory_version() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table in TABLES:  # once per statement: a directory load is one bump per table
            op.execute(
                f"CREATE TRIGGER {table}_directory_version "
                f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version()"
            )
        return
    for table in TABLES:  # SQLite triggers are per row; the row is one page, kept in cache
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_directory_version_{event.lower()} "
                f"AFTER {event} ON {table} BEGIN {BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_directory_version ON {table}")
        op.execute("DROP FUNCTION bump_directory_version()")
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_directory_version_{event}")
    op.drop_table("directory_version")
