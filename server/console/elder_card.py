"""What the console shows about an elder: who they are, where, their care needs, medical
notes and contacts; the key-safe code stays sealed until someone reveals it."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.elder_facts import ElderWarning, Sex, warnings_of
from server.schema import elders, emergency_contacts


@dataclass(frozen=True)
class Contact:
    name: str
    relation: str
    phone: str


@dataclass(frozen=True)
class ElderCard:
    id: str
    team_id: str
    name: str
    address: str
    short_address: str
    care_level: int  # 0 (none) … 5
    medical_notes: str
    has_key_safe: bool
    contacts: tuple[Contact, ...]
    phone: str | None = None  # the elder's own, E.164
    home_phone: str | None = None
    born: str | None = None  # "1941" or "1941-03-08" (server.elder_facts.age)
    sex: Sex | None = None
    warnings: tuple[ElderWarning, ...] = ()


async def elder_card(engine: AsyncEngine, elder_id: str) -> ElderCard | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(elders).where(elders.c.id == elder_id))).first()
        if row is None:
            return None
        contacts = (
            await conn.execute(
                sa.select(emergency_contacts)
                .where(emergency_contacts.c.elder_id == elder_id)
                .order_by(emergency_contacts.c.id)
            )
        ).all()
    return ElderCard(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        address=row.address,
        short_address=row.short_address,
        care_level=row.care_level,
        medical_notes=row.medical_notes,
        has_key_safe=row.key_safe_secret is not None,
        contacts=tuple(Contact(c.name, c.relation, c.phone) for c in contacts),
        phone=row.phone,
        home_phone=row.home_phone,
        born=row.born,
        sex=Sex(row.sex) if row.sex in Sex._value2member_map_ else None,
        warnings=warnings_of(row.warnings),
    )


async def sealed_key_safe(engine: AsyncEngine, elder_id: str) -> str | None:
    """The elder's key-safe code as stored (sealed; `server.sealed.Sealer` opens it)."""
    async with engine.connect() as conn:
        value = await conn.scalar(
            sa.select(elders.c.key_safe_secret).where(elders.c.id == elder_id)
        )
    return None if value is None else str(value)


async def elder_position(engine: AsyncEngine, elder_id: str) -> tuple[float | None, float | None]:
    """The elder's home (lat, lon), for the map link, when the directory has it."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(elders.c.lat, elders.c.lon).where(elders.c.id == elder_id))
        ).first()
    return (None, None) if row is None else (row.lat, row.lon)
