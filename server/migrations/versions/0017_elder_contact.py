"""who the elder is, for the operator on the phone: their own and home phone numbers, the
year (or date) of birth, sex, and warnings that matter on the phone or at the door

All nullable (an elder without them shows none); `warnings` is a JSON list of
`server.elder_facts.ElderWarning` values. Set from the directory file's `[[elders]]`.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("elders") as batch:
        batch.add_column(sa.Column("phone", sa.String(32), nullable=True))
        batch.add_column(sa.Column("home_phone", sa.String(32), nullable=True))
        batch.add_column(sa.Column("born", sa.String(10), nullable=True))
        batch.add_column(sa.Column("sex", sa.String(8), nullable=True))
        batch.add_column(sa.Column("warnings", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("elders") as batch:
        for name in ("warnings", "sex", "born", "home_phone", "phone"):
            batch.drop_column(name)
