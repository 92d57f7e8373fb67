"""`StatusCallbacks`: a signed, well-formed delivery callback is answered without the app's
routing; anything else reaches the route with its body intact, to be answered as before."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr
from starlette.types import Message, Receive, Scope, Send

from carehub.settings import ServerSettings
from harness.sms_sandbox import twilio_signature
from server.routes.twilio_hooks import STATUS_PATH, StatusCallbacks

BASE = "https://carehub.example"
TOKEN = "auth-token"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Service:
    calls: list[tuple[str, str, Sequence[str]]] = field(default_factory=list)

    async def delivery_status(self, sid: str, state: str, ids: Sequence[str]) -> bool:
        self.calls.append((sid, state, list(ids)))
        return True


@dataclass
class Route:
    """The app behind: records what reached it, body included."""

    bodies: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def post(
    params: dict[str, str],
    query: str = "n=a1,a2",
    signed_with: str | None = TOKEN,
    content_type: str = FORM,
    path: str = STATUS_PATH,
    chunks: int = 1,
) -> tuple[int, Service, Route]:
    service, route = Service(), Route()
    settings = ServerSettings(public_base_url=BASE, twilio_auth_token=SecretStr(TOKEN))  # type: ignore[call-arg]
    app = SimpleNamespace(
        state=SimpleNamespace(runtime=SimpleNamespace(settings=settings, service=service))
    )
    url = BASE + path + ("?" + query if query else "")
    headers = [(b"content-type", content_type.encode())]
    if signed_with is not None:
        headers.append((b"x-twilio-signature", twilio_signature(url, params, signed_with).encode()))
    body = urlencode(params).encode()
    size = -(-len(body) // chunks) if body else 1
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]

    async def receive() -> Message:
        return messages.pop(0)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query.encode(),
        "headers": headers,
        "app": app,
    }
    await StatusCallbacks(route)(scope, receive, send)
    return sent[0]["status"], service, route


DELIVERED = {"MessageSid": "SM1", "MessageStatus": "delivered", "ErrorCode": ""}


@pytest.mark.parametrize("chunks", [1, 3])
async def test_a_signed_callback_is_answered_without_the_route(chunks: int) -> None:
    status, service, route = await post(DELIVERED, chunks=chunks)
    assert status == 204
    assert service.calls == [("SM1", "delivered", ["a1", "a2"])]
    assert route.bodies == []


@pytest.mark.parametrize(
    "case",
    [
        {"signed_with": None},
        {"signed_with": "another-token"},
        {"query": "n=a1&extra=1"},  # the route answers 422
        {"params": {"MessageSid": "SM1"}},  # the route answers 400
        {"content_type": "multipart/form-data; boundary=x"},
        {"query": "n=" + ",".join(f"a{i}" for i in range(100))},  # too many ids: 400
    ],
)
async def test_anything_else_reaches_the_route_with_its_body(case: dict[str, Any]) -> None:
    params = case.pop("params", DELIVERED)
    status, service, route = await post(params, **case)
    assert status == 418
    assert route.bodies == [urlencode(params).encode()]
    assert service.calls == []


async def test_other_paths_are_not_read() -> None:
    status, _, route = await post(DELIVERED, path="/twilio/sms")
    assert status == 418 and route.bodies == [urlencode(DELIVERED).encode()]


def test_a_signature_is_twilios_for_the_url_with_or_without_its_default_port() -> None:
    """The exact URL's signature is checked first (one HMAC); one Twilio made over the URL
    with its port spelt out, or with the wrong token, goes to the SDK's whole check."""
    from twilio.request_validator import RequestValidator

    from server.routes.twilio_hooks import _signed

    settings = ServerSettings(public_base_url=BASE, twilio_auth_token=SecretStr(TOKEN))  # type: ignore[call-arg]
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "Blank": ""}
    exact = RequestValidator(TOKEN).compute_signature(f"{BASE}{STATUS_PATH}?n=a", params)
    ported = RequestValidator(TOKEN).compute_signature(
        f"https://carehub.example:443{STATUS_PATH}?n=a", params
    )
    forged = RequestValidator("other").compute_signature(f"{BASE}{STATUS_PATH}?n=a", params)
    assert _signed(settings, STATUS_PATH, "n=a", params, exact)
    assert _signed(settings, STATUS_PATH, "n=a", params, ported)
    assert not _signed(settings, STATUS_PATH, "n=a", params, forged)
    assert not _signed(settings, STATUS_PATH, "n=b", params, exact)
    assert not _signed(settings, STATUS_PATH, "n=a", {**params, "MessageStatus": "read"}, exact)
    assert not _signed(settings, STATUS_PATH, "n=a", params, "")
