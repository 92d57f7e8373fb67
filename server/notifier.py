"""Sending SMS to doctors: one `Notifier` interface, a Twilio backend and a console backend."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
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


class _RebasedHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, with api.twilio.com replaced by a configured base URL."""

    def __init__(self, api_base: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._api_base = api_base.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API_BASE):
            url = self._api_base + url[len(TWILIO_API_BASE) :]
        return super().request(method, url, *args, **kwargs)


class TwilioNotifier:
    """Sends through the real Twilio SDK (blocking, so in a worker thread)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base: str | None = None,
        timeout_s: float = 10.0,
        status_callback: str | None = None,
    ) -> None:
        http = _RebasedHttpClient(api_base or TWILIO_API_BASE, timeout_s)
        self._client = Client(account_sid, auth_token, http_client=http)
        self._from = from_number
        self._status_callback = status_callback

    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
        """Send; Twilio reports delivery to `status_callback` (``/twilio/status``), the
        URL naming the message's notifications (`status_callback_url`)."""
        extra = (
            {"status_callback": status_callback_url(self._status_callback, notification_ids)}
            if self._status_callback
            else {}
        )
        try:
            msg = await asyncio.to_thread(
                self._client.messages.create, to=to, from_=self._from, body=body, **extra
            )
        except (TwilioException, OSError) as e:
            raise NotifierError(f"Twilio refused or unreachable: {e}") from e
        except Exception as e:  # requests' ConnectionError and friends
            raise NotifierError(f"Twilio request failed: {type(e).__name__}: {e}") from e
        return str(msg.sid)


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
