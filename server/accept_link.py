"""The link in every alarm SMS: an unguessable, expiring token bound to one alarm and one
recipient, so a doctor can accept from any phone without logging in (Twilio cannot receive
SMS replies from mainland-China numbers).

Only a hash of the token is stored: a copy of the database opens no alarm. The token is
128 random bits (22 URL-safe characters); the URL also names the alarm, so a token used
with another alarm's id is refused like a guessed one. Pure apart from `secrets`.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_BYTES = 16
LINK_TTL_MS = 24 * 3600 * 1000
"""A link works for a day: long enough for a night shift's alarm to be closed the next
morning (arrival), short enough that an old SMS on a lost phone opens nothing."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def link_token(secret_key: bytes, notification_id: str) -> str:
    """The token of one notification's link: derived (HMAC-SHA256) from the server's secret,
    so a message re-sent after a crash carries the same working link, and neither the token
    nor the text holding it is ever stored."""
    mac = hmac.new(secret_key, b"accept-link\0" + notification_id.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:TOKEN_BYTES]).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedLink:
    """What is stored for a link (never the token itself)."""

    alarm_id: str
    member_id: str
    token_hash: str
    expires_at_ms: int


class LinkVerdict(enum.StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # guessed, mistyped, or for another alarm
    EXPIRED = "expired"


def check_link(issued: IssuedLink | None, alarm_id: str, token: str, now_ms: int) -> LinkVerdict:
    """Whether `token` opens `alarm_id` now. `issued` is the stored link found by the
    token's hash (None when there is none)."""
    if issued is None or not hmac.compare_digest(issued.token_hash, token_hash(token)):
        return LinkVerdict.UNKNOWN
    if issued.alarm_id != alarm_id:
        return LinkVerdict.UNKNOWN
    if now_ms >= issued.expires_at_ms:
        return LinkVerdict.EXPIRED
    return LinkVerdict.OK
