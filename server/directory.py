"""Loading the care directory (teams, doctors, elders, hubs, devices) from a TOML/JSON file.

Until installer enrollment exists this is how a deployment is provisioned; loading is an
upsert, so the same file can be applied again after edits. Hub tokens are stored hashed.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from carehub.api_contract import ID_PATTERN, DeviceKind
from server.auth import hash_token
from server.schema import devices, doctors, elders, hubs, teams


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)


class Team(_Entry):
    name: str


class Doctor(_Entry):
    team: str
    name: str
    phone: str = Field(pattern=r"^\+[1-9]\d{6,14}$", description="E.164, e.g. +8613800000000")
    language: Literal["zh", "en"] = "zh"
    on_duty: bool = True
    priority: int = 0


class Elder(_Entry):
    team: str
    name: str
    address: str = ""
    short_address: str = Field("", max_length=100, description="What the SMS may name.")
    spo2_scale2: bool = False
    fall_sensitivity: float = Field(0.5, ge=0, le=1)


class Hub(_Entry):
    elder: str
    token: str = Field(min_length=16, description="Shown to the installer; stored hashed.")


class Device(_Entry):
    hub: str
    kind: DeviceKind


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teams: list[Team] = []
    doctors: list[Doctor] = []
    elders: list[Elder] = []
    hubs: list[Hub] = []
    devices: list[Device] = []


def read_directory(path: Path) -> Directory:
    raw = path.read_bytes()
    data: Any = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    return Directory.model_validate(data)


async def _upsert(conn: AsyncConnection, table: sa.Table, values: dict[str, Any]) -> None:
    exists = (await conn.execute(sa.select(table.c.id).where(table.c.id == values["id"]))).first()
    if exists:
        await conn.execute(table.update().where(table.c.id == values["id"]).values(**values))
    else:
        await conn.execute(table.insert().values(**values))


async def load_directory(engine: AsyncEngine, directory: Directory) -> None:
    """Upsert every entry, parents first, in one transaction."""
    async with engine.begin() as conn:
        for t in directory.teams:
            await _upsert(conn, teams, {"id": t.id, "name": t.name})
        for d in directory.doctors:
            await _upsert(
                conn,
                doctors,
                {
                    "id": d.id,
                    "team_id": d.team,
                    "name": d.name,
                    "phone": d.phone,
                    "language": d.language,
                    "on_duty": d.on_duty,
                    "priority": d.priority,
                },
            )
        for e in directory.elders:
            await _upsert(
                conn,
                elders,
                {
                    "id": e.id,
                    "team_id": e.team,
                    "name": e.name,
                    "address": e.address,
                    "short_address": e.short_address,
                    "spo2_scale2": e.spo2_scale2,
                    "fall_sensitivity": e.fall_sensitivity,
                },
            )
        for h in directory.hubs:
            await _upsert(
                conn, hubs, {"id": h.id, "elder_id": h.elder, "token_hash": hash_token(h.token)}
            )
        for dv in directory.devices:
            await _upsert(conn, devices, {"id": dv.id, "hub_id": dv.hub, "kind": dv.kind.value})
