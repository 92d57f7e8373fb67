"""Read access for the duty dispatcher and tools (admin bearer token until accounts exist)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from carehub.api_contract import API_PREFIX
from server.routes.deps import Admin, Runtime

router = APIRouter(prefix=f"{API_PREFIX}/admin", tags=["dispatcher"], dependencies=[Admin])


@router.get("/alarms")
async def list_alarms(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    return list(await rt.store.list_alarms(min(limit, 1000)))


@router.get("/alarms/{alarm_id}")
async def get_alarm(alarm_id: str, rt: Runtime) -> dict[str, Any]:
    alarm = await rt.store.alarm(alarm_id)
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alarm")
    return alarm


@router.get("/hubs")
async def list_hubs(rt: Runtime) -> list[dict[str, Any]]:
    return list(await rt.store.list_hubs())


@router.get("/faults")
async def list_faults(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    return list(await rt.store.list_faults(min(limit, 1000)))
