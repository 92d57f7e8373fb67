"""Admin routes of households and enrollment (`carehub.admin_contract`): create a home,
assign its elders and contracted team, make enrollment codes, move a hub.

Callers: the admin bearer token (tools, `carehub admin`). Installers and admins signed in to
the console make codes and see the households on its page ``/console/households``."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from carehub import admin_contract as admin
from carehub.api_contract import ID_PATTERN
from server.household_store import Conflict, HouseholdStore, NotFound
from server.routes.deps import Admin, Runtime
from server.routes.problems import problems

log = logging.getLogger(__name__)


async def admin_caller(_: Annotated[None, Admin]) -> str:
    """Who is asking, for the log and the code's `created_by`: the admin token's holder.
    Installers use the console's households page (`server.console.routes`) instead."""
    return "admin"


Caller = Depends(admin_caller)

router = APIRouter(prefix=admin.ADMIN_PREFIX, tags=["installer"], responses=problems(401, 403, 422))
HouseholdId = Path(pattern=ID_PATTERN, description="The household's id.")


def _store(rt: Runtime) -> HouseholdStore:
    return HouseholdStore(rt.store.engine, rt.store.hub_identities)


def _refused(e: Exception) -> HTTPException:
    if isinstance(e, NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(e))
    return HTTPException(status.HTTP_409_CONFLICT, str(e))


async def _view(rt: Runtime, household_id: str) -> admin.HouseholdView:
    homes = await _store(rt).list_households()
    return admin.HouseholdView.model_validate(next(h for h in homes if h["id"] == household_id))


@router.get("/households", response_model=list[admin.HouseholdView])
async def list_households(rt: Runtime, who: str = Caller) -> list[admin.HouseholdView]:
    """Every household with its elders, hubs and last self-test."""
    return [admin.HouseholdView.model_validate(h) for h in await _store(rt).list_households()]


@router.post(
    "/households",
    response_model=admin.HouseholdView,
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 404, 409),
)
async def create_household(
    body: admin.HouseholdCreate, rt: Runtime, who: str = Caller
) -> admin.HouseholdView:
    try:
        await _store(rt).create_household(body.id, body.address, body.team_id, rt.clock.now_ms())
    except (NotFound, Conflict) as e:
        raise _refused(e) from None
    log.info("household %s created by %s", body.id, who)
    return await _view(rt, body.id)


@router.put(
    "/households/{household_id}/elders/{elder_id}",
    response_model=admin.HouseholdView,
    responses=problems(404),
)
async def assign_elder(
    rt: Runtime,
    household_id: str = HouseholdId,
    elder_id: str = Path(pattern=ID_PATTERN),
    who: str = Caller,
) -> admin.HouseholdView:
    """The elder lives here (and takes the household's contracted team, if it has one)."""
    try:
        await _store(rt).assign_elder(household_id, elder_id)
    except NotFound as e:
        raise _refused(e) from None
    log.info("elder %s assigned to household %s by %s", elder_id, household_id, who)
    return await _view(rt, household_id)


@router.put(
    "/households/{household_id}/team",
    response_model=admin.HouseholdView,
    responses=problems(400, 404),
)
async def assign_team(
    body: admin.TeamAssignment, rt: Runtime, household_id: str = HouseholdId, who: str = Caller
) -> admin.HouseholdView:
    """The contracted team of the household and of each of its elders."""
    try:
        await _store(rt).assign_team(household_id, body.team_id)
    except NotFound as e:
        raise _refused(e) from None
    log.info("household %s contracted to team %s by %s", household_id, body.team_id, who)
    return await _view(rt, household_id)


@router.post(
    "/households/{household_id}/enrollment-codes",
    response_model=admin.EnrollmentCode,
    status_code=status.HTTP_201_CREATED,
    responses=problems(404, 409),
)
async def create_enrollment_code(
    rt: Runtime, household_id: str = HouseholdId, who: str = Caller
) -> admin.EnrollmentCode:
    """A one-time code that enrolls one hub into this household, valid for
    `CAREHUB_ENROLL_CODE_TTL_S` (30 min by default). Shown only in this answer."""
    try:
        code, expires = await _store(rt).create_code(
            household_id,
            who,
            rt.clock.now_ms(),
            int(rt.settings.enroll_code_ttl_s * 1000),
        )
    except (NotFound, Conflict) as e:
        raise _refused(e) from None
    log.info("enrollment code for household %s made by %s", household_id, who)
    return admin.EnrollmentCode(code=code, household_id=household_id, expires_at_ms=expires)


@router.put(
    "/hubs/{hub_id}/household",
    response_model=admin.HouseholdView,
    responses=problems(400, 404, 409),
)
async def move_hub(
    body: admin.HubMove,
    rt: Runtime,
    hub_id: str = Path(pattern=ID_PATTERN),
    who: str = Caller,
) -> admin.HouseholdView:
    """Move a hub to another household: its token stops working at once and its devices
    are unpaired; it enrolls again with a code of the new household."""
    try:
        await _store(rt).move_hub(hub_id, body.household_id)
    except (NotFound, Conflict) as e:
        raise _refused(e) from None
    log.warning(
        "hub %s moved to household %s by %s: credential revoked", hub_id, body.household_id, who
    )
    return await _view(rt, body.household_id)


@router.delete(
    "/devices/{device_id}",
    response_model=admin.DeviceReleased,
    responses=problems(404),
)
async def release_device(
    rt: Runtime,
    device_id: str = Path(pattern=ID_PATTERN),
    who: str = Caller,
) -> admin.DeviceReleased:
    """Free a device id: unpaired from its hub and owned by no household, so another
    home's hub may pair it (a hub can pair only ids no other household owns)."""
    try:
        owner = await _store(rt).release_device(device_id)
    except NotFound as e:
        raise _refused(e) from None
    log.warning("device %s released from household %s by %s", device_id, owner, who)
    return admin.DeviceReleased(device_id=device_id, household_id=owner)
