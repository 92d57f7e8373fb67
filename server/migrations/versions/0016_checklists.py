"""the centre's own checklists per alarm kind, from the directory file's [checklists]

One row per alarm kind the file sets (its items, the centre's texts, as a JSON list `texts`),
replaced as a whole on each load; a kind without a row keeps the built-in list
(`server.console.checklists.DEFAULTS`), so an empty table changes nothing.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checklists",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("texts", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_checklists")),
    )


def downgrade() -> None:
    op.drop_table("checklists")
