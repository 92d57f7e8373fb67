"""a version number the database bumps on every change to which hub a token is

Each server process keeps the hubs' identities by token hash in memory
(`server.hub_identities`), so a hub's request no longer reads its row: at 10 000 hubs that
read was most of a heartbeat's cost. Triggers bump `hubs_version.version` on any insert or
delete of `hubs` and on any update of a hub's `token_hash`, `elder_id` or `household_id`
(a revocation, a move, an elder leaving the home, a directory load) — whichever process or
tool made it — so a process reads one number to know its cache still holds. Heartbeats
(`last_seen_ms`, `health`, `online`) leave it alone: the caches would never hold otherwise.

On SQLite a later `batch_alter_table("hubs")` rebuilds the table without these triggers:
such a migration must create them again (`tests/test_hub_identities_store.py` fails if not).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BUMP = "UPDATE hubs_version SET version = version + 1 WHERE id = 1"
IDENTITY = "token_hash, elder_id, household_id"
"""The columns a `HubIdentity` is made of (with `id`, never updated)."""


def upgrade() -> None:
    op.create_table(
        "hubs_version",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hubs_version")),
    )
    op.execute("INSERT INTO hubs_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION bump_hubs_version() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        op.execute(  # once per statement, like the directory's (0009)
            "CREATE TRIGGER hubs_version "
            f"AFTER INSERT OR UPDATE OF {IDENTITY} OR DELETE OR TRUNCATE ON hubs "
            "FOR EACH STATEMENT EXECUTE FUNCTION bump_hubs_version()"
        )
        return
    events = (("insert", "INSERT"), ("update", f"UPDATE OF {IDENTITY}"), ("delete", "DELETE"))
    for event, on in events:  # per row, as SQLite has them
        op.execute(f"CREATE TRIGGER hubs_version_{event} AFTER {on} ON hubs BEGIN {BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER hubs_version ON hubs")
        op.execute("DROP FUNCTION bump_hubs_version()")
    else:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER hubs_version_{event}")
    op.drop_table("hubs_version")
