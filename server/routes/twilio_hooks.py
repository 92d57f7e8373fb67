"""Twilio's webhooks: inbound SMS (reply codes, STOP/START) and delivery status callbacks.

Both are checked with the SDK's `RequestValidator` against ``X-Twilio-Signature`` and the
URL Twilio was given (``CAREHUB_PUBLIC_BASE_URL`` + path, as phones and Twilio see the
server, not as the proxy in front of it forwards it). Unsigned or wrongly signed → 403 and
nothing changes. Inbound messages are deduplicated by ``MessageSid`` (Twilio retries).
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from carehub.settings import ServerSettings
from server.dispatch.service import InboundKey
from server.notifier import NOTIFICATIONS_PARAM, callback_notification_ids
from server.routes.deps import Runtime
from server.routes.responder import answer_text
from server.runtime import ServerRuntime
from server.sms_text import words

log = logging.getLogger(__name__)
router = APIRouter(prefix="/twilio", tags=["twilio"], include_in_schema=False)

SMS_PATH = "/twilio/sms"
STATUS_PATH = "/twilio/status"


def _signed(
    settings: ServerSettings, path: str, query: str, params: dict[str, str], signature: str
) -> bool:
    """Whether `signature` is Twilio's for this request, as Twilio saw its URL.

    First the SDK's signature of the URL exactly as configured, compared in constant time:
    the one that matches a genuine request. Only when it does not, the SDK's whole check
    (the URL with and without its port, each signed, compared in Python), which costs
    three times as much and runs for every callback otherwise: three per SMS."""
    token = settings.twilio_auth_token.get_secret_value()
    if not (token and signature):
        return False
    url = settings.public_base_url.rstrip("/") + path + ("?" + query if query else "")
    validator = RequestValidator(token)
    if "bodySHA256" not in query and hmac.compare_digest(
        validator.compute_signature(url, params).encode(), signature.encode()
    ):
        return True
    return bool(validator.validate(url, params, signature))


async def signed_form(request: Request, rt: Runtime) -> dict[str, str]:
    """The request's form fields, once its Twilio signature checks out (else 403)."""
    params = await _form_fields(request)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not _signed(rt.settings, request.url.path, request.url.query, params, signature):
        log.warning(
            "%s refused: %s Twilio signature (check CAREHUB_PUBLIC_BASE_URL and the auth token)",
            request.url.path,
            "no" if not signature else "wrong",
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid Twilio signature")
    return params


MAX_FORM_FIELDS = 1000
"""As `Request.form`'s own limit: a Twilio callback has a few dozen."""


async def _form_fields(request: Request) -> dict[str, str]:
    """The form's text fields. Twilio posts URL-encoded forms: read with the standard
    library's parser, a fraction of the CPU of the multipart parser behind
    `Request.form` (three delivery callbacks come with every SMS); anything else goes
    through `Request.form`. A repeated field keeps its last value, as `Request.form`'s."""
    if request.headers.get("content-type", "").startswith(URLENCODED):
        try:
            return _urlencoded_fields(await request.body())
        except ValueError:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"at most {MAX_FORM_FIELDS} form fields"
            ) from None
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


URLENCODED = "application/x-www-form-urlencoded"


def _urlencoded_fields(body: bytes) -> dict[str, str]:
    """A URL-encoded body's fields (ValueError beyond `MAX_FORM_FIELDS`)."""
    text = body.decode("utf-8", errors="replace")
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))


async def _record_status(rt: ServerRuntime, sid: str, state: str, ids: list[str]) -> None:
    if await rt.service.delivery_status(sid, state, ids):
        log.info("SMS %s is %s", sid, state)


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
    inbound = await rt.service.inbound_sms(sid, phone, body)
    if inbound.key is InboundKey.ANSWERED and inbound.answer is not None:
        said = answer_text(inbound.answer, inbound.language)
        return _twiml(words(inbound.language)("reply.answer", answer=said))
    if inbound.key is InboundKey.NO_SUCH_CODE:
        return _twiml(words(inbound.language)("reply.no_such_code", n=inbound.code))
    if inbound.key is InboundKey.HELP:
        return _twiml(words(inbound.language)("reply.help"))
    return _twiml(None)  # a retry, STOP/START (the provider confirms), help sent lately


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
    await _record_status(rt, sid, state, ids)


class StatusCallbacks:
    """The short way in for `status_callback`: three come with every SMS sent, and a
    well-formed, signed one is answered here, without the app's routing, dependencies and
    exception layers (about half the CPU of a request through them). Whatever this does not
    answer itself (another content type, an unknown parameter, a missing field, a wrong
    signature) goes on, with its body, to the route, which answers it as it always has."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != STATUS_PATH:
            await self.app(scope, receive, send)
            return
        body, rest = await _whole_body(receive)
        if rest or not await self._answered(scope, body, send):  # rest: a disconnect
            await self.app(scope, _replaying(body, rest, receive), send)

    async def _answered(self, scope: Scope, body: bytes, send: Send) -> bool:
        headers = dict(scope["headers"])
        if not headers.get(b"content-type", b"").decode("latin-1").startswith(URLENCODED):
            return False
        query = scope["query_string"].decode("latin-1")
        try:
            carried = dict(parse_qsl(query, keep_blank_values=True, max_num_fields=1))
            form = _urlencoded_fields(body)
            ids = callback_notification_ids(carried.pop(NOTIFICATIONS_PARAM, None))
        except ValueError:  # too many fields or ids
            return False
        sid, state = form.get("MessageSid", ""), form.get("MessageStatus", "")
        signature = headers.get(b"x-twilio-signature", b"").decode("latin-1")
        rt: ServerRuntime = scope["app"].state.runtime
        if carried or not sid or not state:
            return False
        if not _signed(rt.settings, scope["path"], query, form, signature):
            return False
        await _record_status(rt, sid, state, ids)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return True


async def _whole_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The request's body, and any other message received while reading it (a disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replaying(body: bytes, rest: list[Message], original: Receive) -> Receive:
    """A `receive` that gives the body already read, then what came with it, then
    whatever the original gives."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *rest]

    async def receive() -> Message:
        return pending.pop(0) if pending else await original()

    return receive
