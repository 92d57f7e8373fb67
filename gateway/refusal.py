"""When the server refuses the hub: its credential (``401``/``403``: revoked, moved to
another household, a wrong token) or one alarm for good (``413``/``422``). Plain state and
decisions, clock-injected; `gateway.hub` moves the bytes.

No alarm ends in silence: while refused, the elder's devices hear ``not_delivered`` for
every alarm the server does not have, the hub says so in its systemd STATUS line and in a
rate-limited log line, and the outbox keeps every alarm and retries with a growing,
jittered backoff (`HubCore.retry_delay`) until the credential works again. Then each alarm
is delivered and its devices hear the real state.
"""

from __future__ import annotations

from typing import Any

from carehub.api_contract import storable_details

REFUSED_STATUS = frozenset({401, 403})
"""The server refuses the hub itself, not one request: every upload will fail alike."""
LOG_EVERY_MS = 300_000
"""While refused, the log repeats the news at most this often (the STATUS line always)."""
MINIMAL_MARK = "upload_refused"
"""Key in the details of an alarm re-sent in its minimal form after the server refused the
full upload for good: the HTTP status it gave."""
MINIMAL_FIELDS = (
    "alarm_id",
    "device_id",
    "kind",
    "severity",
    "seq",
    "raised_at_ms",
    "event_ts_ms",
    "test",
)


class Refusal:
    """Whether the server refuses this hub's credential, since when, and which alarms'
    devices were told ``not_delivered`` (they hear the real state once it is delivered)."""

    def __init__(self) -> None:
        self.since_ms: int | None = None
        self.status: int | None = None
        self.told: set[str] = set()
        """Alarm ids whose devices heard ``not_delivered`` and are not delivered yet."""
        self._logged_at_ms: int | None = None

    @property
    def refused(self) -> bool:
        return self.since_ms is not None

    def refused_by(self, status: int, now_ms: int) -> bool:
        """The server refused the credential; True when this is news (log it now)."""
        self.status = status
        if self.since_ms is None:
            self.since_ms = now_ms
            self._logged_at_ms = now_ms
            return True
        return False

    def log_due(self, now_ms: int) -> bool:
        """While refused: True at most every `LOG_EVERY_MS` (the reminder's log line)."""
        if self.since_ms is None:
            return False
        if self._logged_at_ms is not None and 0 <= now_ms - self._logged_at_ms < LOG_EVERY_MS:
            return False
        self._logged_at_ms = now_ms
        return True

    def accepted(self) -> bool:
        """The server took a request with the credential; True when it had been refused."""
        was = self.since_ms is not None
        self.since_ms = self.status = self._logged_at_ms = None
        return was

    def to_tell(self, alarm_ids: list[str]) -> list[str]:
        """Of these undelivered alarms, those whose devices have not heard it yet (marked
        told)."""
        new = [a for a in alarm_ids if a not in self.told]
        self.told.update(new)
        return new

    def delivered(self, alarm_id: str) -> bool:
        """The server has the alarm now; True when its devices heard ``not_delivered``."""
        if alarm_id in self.told:
            self.told.discard(alarm_id)
            return True
        return False


def minimal_upload(body: dict[str, Any], status: int | None) -> dict[str, Any] | None:
    """The alarm upload cut to what any server takes (who, what, when: no evidence), for an
    alarm whose full upload was refused for good; None when `body` is that already."""
    details = body.get("details")
    if isinstance(details, dict) and MINIMAL_MARK in details:
        return None
    minimal = {k: body[k] for k in MINIMAL_FIELDS if k in body and body[k] is not None}
    minimal["details"] = storable_details({MINIMAL_MARK: status})
    return minimal
