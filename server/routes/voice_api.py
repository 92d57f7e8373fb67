"""The hub's side of voice calls (`carehub.api_contract`, ``CALLS_PATH``; docs/voice.md):
offers, answers and hang-ups in, the hub's call list out (long-poll). Signalling only."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status

from carehub import api_contract as api
from server.change_signal import ALARMS_KEY
from server.routes.deps import Hub, Runtime
from server.routes.problems import problems
from server.runtime import ServerRuntime
from server.voice_calls import CallRefused, CallStore

log = logging.getLogger(__name__)
router = APIRouter(tags=["voice"], responses=problems(401))
CallId = Annotated[str, Path(pattern=api.ID_PATTERN)]


def calls_key(hub_id: str) -> str:
    """The change key a hub's call long-poll waits on."""
    return f"calls:{hub_id}"


async def call_changed(rt: ServerRuntime, hub_id: str) -> None:
    """Wake the hub's long-poll and the consoles (the queue rings; alarm pages follow)."""
    await rt.changes.notify(calls_key(hub_id))
    await rt.changes.notify(ALARMS_KEY)


def _refused(e: CallRefused) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND if e.not_found else status.HTTP_409_CONFLICT, str(e)
    )


@router.get(api.CALLS_PATH, response_model=api.CallList, responses=problems(422))
async def hub_calls(
    request: Request,
    hub: Hub,
    rt: Runtime,
    seen: str = Query("", pattern=r"^[0-9a-f]{0,16}$", description="The last list's digest."),
    wait_s: float = Query(0.0, ge=0, le=60, description="Long-poll: wait this long for news."),
) -> api.CallList:
    """This hub's calls, answered as soon as they differ from the list `seen` names. Reads
    the database only when this hub's calls were signalled (it wakes each second, without a
    query, to notice a hub that went away), as `/alarm-updates` does."""
    store = CallStore(rt.store.engine)
    deadline = rt.clock.monotonic() + min(wait_s, rt.settings.long_poll_max_s)
    key = calls_key(hub.hub_id)
    version = rt.changes.version(key)
    calls = await store.hub_calls(hub.hub_id, rt.clock.now_ms())
    digest = api.calls_digest(calls)
    while digest == seen:
        remaining = deadline - rt.clock.monotonic()
        if remaining <= 0 or await request.is_disconnected():
            break
        before, version = version, await rt.changes.wait(key, version, min(remaining, 1.0))
        if version != before:
            calls = await store.hub_calls(hub.hub_id, rt.clock.now_ms())
            digest = api.calls_digest(calls)
    return api.CallList(calls=calls, digest=digest)


@router.post(
    api.CALLS_PATH, status_code=status.HTTP_204_NO_CONTENT, responses=problems(400, 404, 409, 422)
)
async def offer_call(body: api.CallOffer, hub: Hub, rt: Runtime) -> None:
    """The hub offers a call for one of its uploaded alarms: it rings in every console."""
    alarm_id = await rt.store.server_alarm_id(hub.hub_id, body.alarm_id)
    if alarm_id is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "unknown alarm: upload the alarm before its call"
        )
    try:
        new = await CallStore(rt.store.engine).offer_from_hub(
            hub.hub_id, alarm_id, body, rt.clock.now_ms()
        )
    except CallRefused as e:
        raise _refused(e) from None
    if new:
        log.info("hub %s: call %s offered for alarm %s", hub.hub_id, body.call_id, alarm_id)
        await call_changed(rt, hub.hub_id)


@router.post(
    f"{api.CALLS_PATH}/{{call_id}}/answer",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(400, 404, 409, 422),
)
async def answer_call(call_id: CallId, body: api.CallAnswer, hub: Hub, rt: Runtime) -> None:
    """The hub answered an operator's call (by itself: elders cannot pick up)."""
    try:
        await CallStore(rt.store.engine).answer_from_hub(
            hub.hub_id, call_id, body.sdp, rt.clock.now_ms()
        )
    except CallRefused as e:
        raise _refused(e) from None
    log.info("hub %s: call %s answered", hub.hub_id, call_id)
    await call_changed(rt, hub.hub_id)


@router.post(
    f"{api.CALLS_PATH}/{{call_id}}/hangup",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(400, 404, 422),
)
async def hangup_call(call_id: CallId, body: api.CallHangup, hub: Hub, rt: Runtime) -> None:
    """The hub ended the call (limits, the elder's button, a lost path, a refusal)."""
    try:
        record = await CallStore(rt.store.engine).hang_up(
            call_id, body.reason, rt.clock.now_ms(), hub.hub_id
        )
    except CallRefused as e:
        raise _refused(e) from None
    log.info("hub %s: call %s ended (%s)", hub.hub_id, call_id, record.end_reason)
    await call_changed(rt, hub.hub_id)
