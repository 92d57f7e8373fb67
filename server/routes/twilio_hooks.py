"""Twilio's webhooks: inbound SMS (reply codes, STOP/START) and delivery status callbacks.

Both are checked with the SDK's `RequestValidator` against ``X-Twilio-Signature`` and the
URL Twilio was given (``CAREHUB_PUBLIC_BASE_URL`` + path, as phones and Twilio see the
server, not as the proxy in front of it forwards it). Unsigned or wrongly signed → 403 and
nothing changes. Inbound messages are deduplicated by ``MessageSid`` (Twilio retries).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from server.dispatch_store import Answer, notification_by_reply, record_delivery
from server.notifier import NOTIFICATIONS_PARAM, callback_notification_ids
from server.reply_codes import CodedReply, Keyword, ReplyAction, parse_reply
from server.responder_store import (
    claim_help,
    hub_of_alarm,
    member_language,
    record_inbound,
    set_inbound_result,
    set_opt_out,
)
from server.routes.deps import Runtime
from server.routes.responder import answer_text
from server.sms_text import words

log = logging.getLogger(__name__)
router = APIRouter(prefix="/twilio", tags=["twilio"], include_in_schema=False)

SMS_PATH = "/twilio/sms"
STATUS_PATH = "/twilio/status"
ACTIONS = {
    ReplyAction.ACCEPT: "accept",
    ReplyAction.DECLINE: "decline",
    ReplyAction.ARRIVED: "arrived",
}


async def signed_form(request: Request, rt: Runtime) -> dict[str, str]:
    """The request's form fields, once its Twilio signature checks out (else 403)."""
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    token = rt.settings.twilio_auth_token.get_secret_value()
    url = rt.settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature or not RequestValidator(token).validate(url, params, signature):
        log.warning(
            "%s refused: %s Twilio signature (check CAREHUB_PUBLIC_BASE_URL and the auth token)",
            request.url.path,
            "no" if not signature else "wrong",
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid Twilio signature")
    return params


SignedForm = Annotated[dict[str, str], Depends(signed_form)]


def _twiml(text: str | None) -> Response:
    reply = MessagingResponse()
    if text:
        reply.message(text)
    return Response(str(reply), media_type="application/xml")


@router.post("/sms")
async def inbound_sms(form: SignedForm, rt: Runtime) -> Response:
    """A member's reply: ``1a`` / ``1d`` / ``1r``, STOP / START, or anything else (one
    help text per number per hour). Answered with TwiML."""
    sid, phone, body = form.get("MessageSid", ""), form.get("From", ""), form.get("Body", "")
    if not sid or not phone:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "MessageSid and From are required")
    now = rt.clock.now_ms()
    if not await record_inbound(rt.dispatch, sid, phone, body, now):
        log.info("inbound SMS %s already handled (Twilio retried)", sid)
        return _twiml(None)
    reply = parse_reply(body)
    language = await member_language(rt.dispatch, phone)
    if isinstance(reply, CodedReply):
        text, result = await _coded(rt, phone, reply, language)
        await set_inbound_result(rt.dispatch, sid, result)
        return _twiml(text)
    if reply in (Keyword.STOP, Keyword.START):
        await set_opt_out(rt.dispatch, phone, reply is Keyword.STOP, now)
        await set_inbound_result(rt.dispatch, sid, reply.value)
        log.info("inbound SMS %s: %s", sid, reply.value)
        return _twiml(None)  # the provider confirms STOP/START itself
    if await claim_help(rt.dispatch, sid, phone, now):
        return _twiml(words(language)("reply.help"))
    await set_inbound_result(rt.dispatch, sid, "help-limited")
    return _twiml(None)


async def _coded(rt: Runtime, phone: str, reply: CodedReply, language: str) -> tuple[str, str]:
    n = await notification_by_reply(rt.dispatch, phone, reply.number, rt.clock.now_ms())
    if n is None:
        return words(language)("reply.no_such_code", n=reply.number), f"no alarm {reply.number}"
    action = ACTIONS[reply.action]
    care = await rt.escalator.care_map()
    answer, msgs = await rt.dispatch.answer(n.id, action, rt.clock.now_ms(), "sms", care)
    # the answer's message may name the responder: the log keeps its outcome only
    log.info("alarm %s: %s by SMS: %s", n.alarm_id, action, _outcome(answer))
    await rt.escalator.send(msgs)
    rt.escalator.kick()
    hub_id = await hub_of_alarm(rt.dispatch, n.alarm_id)
    if hub_id:
        await rt.changes.notify(f"hub:{hub_id}")
    await rt.changes.notify("alarms")
    text = words(language)("reply.answer", answer=answer_text(answer, language))
    return text, f"{action}: {answer.key}"


@router.post("/status", status_code=status.HTTP_204_NO_CONTENT)
async def status_callback(
    form: SignedForm,
    rt: Runtime,
    carried: Annotated[str | None, Query(alias=NOTIFICATIONS_PARAM)] = None,
) -> None:
    """A message's delivery status; undelivered takes the member out of the step at once.
    The URL names the message's notifications (`server.notifier.status_callback_url`)."""
    sid, state = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not state:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "MessageSid and MessageStatus required")
    try:
        ids = callback_notification_ids(carried)
    except ValueError as e:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(e)) from None
    if await record_delivery(rt.dispatch, sid, state, rt.clock.now_ms(), ids):
        log.info("SMS %s is %s", sid, state)
        rt.escalator.kick()
        await rt.changes.notify("alarms")


def _outcome(answer: Answer) -> str:
    """An answer as the log keeps it: done or refused, and the alarm's state."""
    return ("done" if answer.ok else "refused") + (
        f", {answer.state.value}" if answer.state else ""
    )
