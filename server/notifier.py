"""Sending SMS to doctors: one `Notifier` interface, a Twilio backend and a console backend."""

from __future__ import annotations

import base64
import itertools
import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

log = logging.getLogger(__name__)

TWILIO_API_BASE = "https://api.twilio.com"
NOTIFICATIONS_PARAM = "n"
"""The status callback URL's query parameter naming the notifications a message carries
(comma-separated ids). Twilio's first callbacks can come before the send's answer has been
recorded with its MessageSid, so the callback names its notifications itself; the URL is
part of what Twilio signs, so the ids cannot be forged."""
MAX_CALLBACK_IDS = 50
"""More ids than a merged message can carry: a callback naming more is refused."""


def status_callback_url(base: str, notification_ids: Sequence[str]) -> str:
    """`base` (``…/twilio/status``) naming the notifications one message carries."""
    if not notification_ids:
        return base
    return f"{base}?{urlencode({NOTIFICATIONS_PARAM: ','.join(notification_ids)})}"


def callback_notification_ids(value: str | None) -> list[str]:
    """The ids `status_callback_url` put in the URL (none for a URL without them, as an
    older server process gave); raises ValueError beyond `MAX_CALLBACK_IDS`."""
    ids = [i for i in (value or "").split(",") if i]
    if len(ids) > MAX_CALLBACK_IDS:
        raise ValueError(f"a status callback names at most {MAX_CALLBACK_IDS} notifications")
    return ids


class NotifierError(Exception):
    """The message may not have been sent; the dispatcher retries."""


class Notifier(Protocol):
    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
        """Send one SMS carrying `notification_ids` (more than one when merged); return
        the provider's message reference."""
        ...


class ConsoleNotifier:
    """Prints messages instead of sending them: the demo's default."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.sent: list[tuple[str, str]] = []

    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
        self.sent.append((to, body))
        ref = f"console-{next(self._ids)}"
        log.info("SMS %s to %s: %s", ref, _mask(to), redact_links(body))
        return ref

    async def aclose(self) -> None:
        """Nothing to release."""


class _RebasedHttpClient(AsyncTwilioHttpClient):
    """The SDK's asyncio HTTP client, with api.twilio.com replaced by a configured base URL
    and one aiohttp session, made at the first send (inside the running loop), kept for
    every send: its connections to the provider stay open. Its own `request` rather than
    the SDK's, which gives aiohttp no timeout (None: none at all) and a deprecated
    ``BasicAuth``."""

    def __init__(self, api_base: str, timeout: float) -> None:
        super().__init__(pool_connections=False, timeout=timeout)  # no session made here
        self._api_base = api_base.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the SDK's signature)
        allow_redirects: bool = False,
    ) -> Response:
        if url.startswith(TWILIO_API_BASE):
            url = self._api_base + url[len(TWILIO_API_BASE) :]
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = _basic_auth(*auth)
        kwargs: dict[str, Any] = {
            "method": method.upper(),
            "url": url,
            "params": params,
            "data": data,
            "headers": headers,
            "allow_redirects": allow_redirects,
        }
        self.log_request(kwargs)
        total = aiohttp.ClientTimeout(total=timeout or self.timeout)
        async with self._open().request(**kwargs, timeout=total) as answer:
            response = Response(answer.status, await answer.text(), answer.headers)
        self.log_response(answer.status, response)
        return response

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the Twilio client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        """Close the session; a send after this fails."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` header value (aiohttp's ``BasicAuth`` is deprecated)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class TwilioNotifier:
    """Sends through the real Twilio SDK's asyncio client. Call `aclose` when done."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base: str | None = None,
        timeout_s: float = 10.0,
        status_callback: str | None = None,
    ) -> None:
        self._http = _RebasedHttpClient(api_base or TWILIO_API_BASE, timeout_s)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._from = from_number
        self._status_callback = status_callback
        # imports the SDK's whole REST API tree (~0.4 s of CPU) now, not at the first alarm
        self._client.messages  # noqa: B018

    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
        """Send; Twilio reports delivery to `status_callback` (``/twilio/status``), the
        URL naming the message's notifications (`status_callback_url`)."""
        extra = (
            {"status_callback": status_callback_url(self._status_callback, notification_ids)}
            if self._status_callback
            else {}
        )
        try:
            msg = await self._client.messages.create_async(
                to=to, from_=self._from, body=body, **extra
            )
        except (TwilioException, aiohttp.ClientError, TimeoutError, OSError) as e:
            raise NotifierError(f"Twilio refused or unreachable: {type(e).__name__}: {e}") from e
        except Exception as e:  # anything else the SDK or aiohttp raise: retried all the same
            raise NotifierError(f"Twilio request failed: {type(e).__name__}: {e}") from e
        return str(msg.sid)

    async def aclose(self) -> None:
        """Close the connections to the provider (at shutdown, after the last send)."""
        await self._http.close()


_LINK_TOKEN = re.compile(r"(/r/[A-Za-z0-9]+/)[A-Za-z0-9_-]+")


def redact_links(body: str) -> str:
    """A text as it may be logged: an accept link's token opens the alarm, so it is cut."""
    return _LINK_TOKEN.sub(r"\1…", body)


_PHONE = re.compile(r"\+?\d[\d ()-]{5,}\d(\d{4})\b")


def redact_phones(text: str) -> str:
    """Text from a provider (an error names the number it refused) as it may be logged:
    every phone number cut to its last 4 digits."""
    return _PHONE.sub(lambda m: "…" + m.group(1), text)


def _mask(phone: str) -> str:
    """Phone numbers in logs keep only their last 4 digits."""
    return "*" * max(0, len(phone) - 4) + phone[-4:]
