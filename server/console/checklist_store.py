"""Reading an alarm kind's checklist: the directory file's, stored in ``checklists`` by
the process that loads the file, else the built-in one."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.console.checklists import DEFAULTS
from server.schema import checklists


async def checklist_items(conn: AsyncConnection, kind: str) -> tuple[str, ...]:
    """`kind`'s items, in order (read each time: a reloaded file shows on the next page)."""
    texts = await conn.scalar(sa.select(checklists.c.texts).where(checklists.c.kind == kind))
    return tuple(texts) if texts is not None else DEFAULTS.get(kind, ())
