"""Read access for the duty dispatcher and tools (admin bearer token until accounts exist)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path, Query, status

from carehub import admin_contract as admin
from carehub.api_contract import ID_PATTERN
from server.routes.deps import Admin, Runtime
from server.routes.problems import problems

router = APIRouter(
    prefix=admin.ADMIN_PREFIX,
    tags=["dispatcher"],
    dependencies=[Admin],
    responses=problems(401, 403),
)

Limit = Query(100, ge=1, le=admin.LIST_LIMIT_MAX, description="Most rows to return, newest first.")


@router.get("/alarms", response_model=list[admin.AlarmSummary], responses=problems(422))
async def list_alarms(rt: Runtime, limit: int = Limit) -> list[admin.AlarmSummary]:
    return [admin.AlarmSummary.model_validate(a) for a in await rt.store.list_alarms(limit)]


@router.get("/alarms/{alarm_id}", response_model=admin.AlarmDetail, responses=problems(404, 422))
async def get_alarm(
    rt: Runtime,
    alarm_id: str = Path(pattern=ID_PATTERN, description="The server's alarm id."),
) -> admin.AlarmDetail:
    alarm = await rt.store.alarm(alarm_id)
    if alarm is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alarm")
    return admin.AlarmDetail.model_validate(alarm)


@router.get("/hubs", response_model=list[admin.HubView])
async def list_hubs(rt: Runtime) -> list[admin.HubView]:
    return [admin.HubView.model_validate(h) for h in await rt.store.list_hubs()]


@router.get("/faults", response_model=list[admin.FaultView], responses=problems(422))
async def list_faults(rt: Runtime, limit: int = Limit) -> list[admin.FaultView]:
    return [admin.FaultView.model_validate(f) for f in await rt.store.list_faults(limit)]
