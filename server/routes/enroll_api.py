"""Hub routes of installation (`carehub.api_contract`): enrollment (the only hub request
without a token), the devices a hub pairs or removes, and the installer's self-test."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Path, Request, Response, status

from carehub import api_contract as api
from server.change_signal import HEALTH_KEY
from server.enrollment import CodeRefusal, EnrollLimits, enroll_source
from server.household_store import CodeRefused, Conflict, HouseholdStore, RateLimited
from server.routes.deps import Hub, Runtime
from server.routes.problems import problems
from server.runtime import ServerRuntime
from server.store import UnknownDevice

log = logging.getLogger(__name__)
router = APIRouter(tags=["hub"])

_REFUSED = {
    CodeRefusal.UNKNOWN: (
        status.HTTP_404_NOT_FOUND,
        "unknown enrollment code: check how it was typed, or ask the office for a new one",
    ),
    CodeRefusal.USED: (
        status.HTTP_409_CONFLICT,
        "this enrollment code was used already (a code enrolls one hub): ask for a new one",
    ),
    CodeRefusal.EXPIRED: (
        status.HTTP_410_GONE,
        "this enrollment code has expired: ask the office for a new one",
    ),
}

DeviceId = Path(pattern=api.ID_PATTERN, description="The device's id, as it publishes it.")


def households(rt: ServerRuntime) -> HouseholdStore:
    return HouseholdStore(rt.store.engine, rt.store.hub_identities)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    api.ENROLL_PATH,
    response_model=api.EnrollGranted,
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 404, 409, 410, 422, 429),
)
async def enroll(body: api.EnrollRequest, request: Request, rt: Runtime) -> api.EnrollGranted:
    """Trade a one-time enrollment code for a new hub id and its token (shown only now).
    Attempts are limited per source address and per household (429 with Retry-After)."""
    store, now = households(rt), rt.clock.now_ms()
    client = client_address(request)
    limits = EnrollLimits(
        rt.settings.enroll_max_attempts_per_client,
        rt.settings.enroll_max_attempts_per_household,
        int(rt.settings.enroll_window_s * 1000),
    )
    try:
        await store.count_attempt(enroll_source(client), body.code, now, limits)
    except RateLimited as e:
        log.warning("enrollment: too many attempts (source %s)", enroll_source(client))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many enrollment attempts: retry in {e.retry_after_s} s",
            headers={"Retry-After": str(e.retry_after_s)},
        ) from None
    try:
        granted = await store.enroll(body.code, body.hardware_id, now)
    except CodeRefused as e:
        code, why = _REFUSED[e.reason]
        log.info("enrollment refused: %s code (client %s)", e.reason.value, client)
        raise HTTPException(code, why) from None
    except Conflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    log.info("enrollment: hub %s joined household %s", granted.hub_id, granted.household_id)
    return api.EnrollGranted(
        hub_id=granted.hub_id, household_id=granted.household_id, token=granted.token
    )


@router.put(
    f"{api.HUB_DEVICES_PATH}/{{device_id}}",
    response_model=api.DeviceConfig,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "description": "already paired with this hub (kind updated)",
            "model": api.DeviceConfig,
        },
        **problems(400, 401, 409, 422),
    },
)
async def register_device(
    body: api.DeviceRegistration,
    hub: Hub,
    rt: Runtime,
    response: Response,
    device_id: str = DeviceId,
) -> api.DeviceConfig:
    """Pair a device with this hub (idempotent). A device of this hub's household paired
    with another of its hubs (re-enrolled) moves here; another household's device is
    refused (409): an installer or admin releases it first."""
    try:
        created = await households(rt).register_device(hub, device_id, body.kind, rt.clock.now_ms())
    except Conflict as e:
        log.warning(
            "hub %s: device %s refused: it belongs to another household", hub.hub_id, device_id
        )
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    if created:
        log.info("hub %s: device %s (%s) paired", hub.hub_id, device_id, body.kind.value)
    else:
        response.status_code = status.HTTP_200_OK
    return api.DeviceConfig(device_id=device_id, kind=body.kind)


@router.delete(
    f"{api.HUB_DEVICES_PATH}/{{device_id}}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404, 422),
)
async def remove_device(hub: Hub, rt: Runtime, device_id: str = DeviceId) -> None:
    """Unpair one of this hub's devices: from now on its alarms and faults are refused."""
    try:
        await households(rt).remove_device(hub, device_id)
    except UnknownDevice:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"device {device_id} is not paired with this hub"
        ) from None
    log.info("hub %s: device %s removed", hub.hub_id, device_id)


@router.post(
    api.SELFTESTS_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(400, 401, 409, 422),
)
async def record_selftest(body: api.SelftestReport, hub: Hub, rt: Runtime) -> None:
    """Record the installer's self-test on this hub's household (idempotent by report_id),
    passed or failed; a check naming a device this hub does not serve is recorded failed."""
    try:
        new = await households(rt).record_selftest(hub, body, rt.clock.now_ms())
    except Conflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    if new:
        await rt.changes.notify(HEALTH_KEY)
        log.info(
            "hub %s: self-test %s %s",
            hub.hub_id,
            body.report_id,
            "passed" if body.passed else "FAILED",
        )
