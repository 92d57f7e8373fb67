"""Voice calls on the console (docs/voice.md): the alarm page answers a home's call, calls
the home, hangs up; its script (`static/console/call.js`) does the WebRTC in the browser
and exchanges one SDP each way through these routes. Each call an operator takes or makes
is in the audit log (who, when; the call's record says how long)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from carehub.api_contract import CallDirection, CallEndReason
from server.console.accounts import MEDICAL_ROLES, Session
from server.console.web import PREFIX, console_store, require
from server.routes.deps import Runtime
from server.routes.voice_api import call_changed
from server.runtime import ServerRuntime
from server.voice_calls import CallRecord, CallRefused, CallStore

log = logging.getLogger(__name__)
router = APIRouter(prefix=PREFIX, tags=["console"], include_in_schema=False)
AUDIT_CALL = "voice_call"
MAX_SDP_CHARS = 20_000
CONSOLE_END_REASONS = (
    CallEndReason.HANGUP_CONSOLE,
    CallEndReason.NO_CONNECTION,
    CallEndReason.NETWORK_LOST,
)
"""What a console may give as the reason it ended a call."""


async def _alarm(rt: ServerRuntime, session: Session, alarm_id: str) -> Any:
    from server.console.routes import _visible_alarm  # the team scope, in one place

    return await _visible_alarm(rt, session, alarm_id)


def _view(record: CallRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    sdp = record.offer_sdp if record.direction is CallDirection.FROM_HOME else record.answer_sdp
    return {
        "id": record.id,
        "direction": record.direction.value,
        "state": record.state.value,
        "end_reason": record.end_reason.value if record.end_reason else None,
        "answered_by": record.answered_by,
        "sdp": sdp if record.state.value != "ended" else None,
        "created_at_ms": record.created_at_ms,
        "answered_at_ms": record.answered_at_ms,
        "ended_at_ms": record.ended_at_ms,
    }


async def _sdp(request: Request) -> str:
    sdp = str((await request.form()).get("sdp", ""))
    if not sdp or len(sdp) > MAX_SDP_CHARS or "\x00" in sdp:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "sdp missing or not an SDP")
    return sdp


def _refused(e: CallRefused) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND if e.not_found else status.HTTP_409_CONFLICT, str(e)
    )


@router.get("/alarms/{alarm_id}/call")
async def call_state(
    rt: Runtime, alarm_id: str, session: Session = require(*MEDICAL_ROLES)
) -> JSONResponse:
    """The alarm's latest call and the ICE servers the browser uses."""
    await _alarm(rt, session, alarm_id)
    record = await CallStore(rt.store.engine).latest_of_alarm(alarm_id)
    return JSONResponse(
        {
            "call": _view(record),
            "ice_servers": [s.model_dump(exclude_none=True) for s in rt.settings.voice_ice_servers],
            "ice_policy": rt.settings.voice_console_ice_policy,
            "now_ms": rt.clock.now_ms(),
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/alarms/{alarm_id}/call")
async def call_home(
    request: Request, rt: Runtime, alarm_id: str, session: Session = require(*MEDICAL_ROLES)
) -> JSONResponse:
    """Call the home of an open alarm (the browser's offer in the form's `sdp`)."""
    view = await _alarm(rt, session, alarm_id)
    sdp = await _sdp(request)
    now = rt.clock.now_ms()
    try:
        record = await CallStore(rt.store.engine).call_home(
            alarm_id, session.account.username, sdp, now
        )
    except CallRefused as e:
        raise _refused(e) from None
    await console_store(rt).audit(session.account, AUDIT_CALL, view.elder_id, alarm_id, now)
    log.info("console: %s calls the home of alarm %s", session.account.username, alarm_id)
    await call_changed(rt, record.hub_id)
    return JSONResponse({"call": _view(record)})


async def _own_call(rt: ServerRuntime, session: Session, call_id: str) -> CallRecord:
    record = await CallStore(rt.store.engine).call(call_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such call")
    await _alarm(rt, session, record.alarm_id)  # 404 for another team's doctor
    return record


@router.post("/calls/{call_id}/answer")
async def answer(
    request: Request, rt: Runtime, call_id: str, session: Session = require(*MEDICAL_ROLES)
) -> JSONResponse:
    """Answer a home's ringing call (the browser's answer in `sdp`): the first operator
    to answer takes it, the others get 409 with who did."""
    record = await _own_call(rt, session, call_id)
    sdp = await _sdp(request)
    now = rt.clock.now_ms()
    try:
        record = await CallStore(rt.store.engine).answer_from_console(
            call_id, session.account.username, sdp, now
        )
    except CallRefused as e:
        raise _refused(e) from None
    view = await _alarm(rt, session, record.alarm_id)
    await console_store(rt).audit(session.account, AUDIT_CALL, view.elder_id, record.alarm_id, now)
    log.info("console: %s answered call %s", session.account.username, call_id)
    await call_changed(rt, record.hub_id)
    return JSONResponse({"call": _view(record)})


@router.post("/calls/{call_id}/hangup")
async def hang_up(
    request: Request, rt: Runtime, call_id: str, session: Session = require(*MEDICAL_ROLES)
) -> JSONResponse:
    """End the call: the operator hung up, or the browser found no media path."""
    record = await _own_call(rt, session, call_id)
    given = str((await request.form()).get("reason", CallEndReason.HANGUP_CONSOLE.value))
    reasons = {r.value: r for r in CONSOLE_END_REASONS}
    if given not in reasons:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"reason must be one of {', '.join(reasons)}"
        )
    record = await CallStore(rt.store.engine).hang_up(call_id, reasons[given], rt.clock.now_ms())
    log.info(
        "console: call %s ended by %s (%s)", call_id, session.account.username, record.end_reason
    )
    await call_changed(rt, record.hub_id)
    return JSONResponse({"call": _view(record)})
