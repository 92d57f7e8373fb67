"""What a button event means for the hub: a new alarm, a retry of one already stored, or a
cancel. Pure: the shell looks up what is stored and applies the decision."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from carehub.mqtt_contract import ButtonEvent


@dataclass(frozen=True)
class StoredEvent:
    """A device event the hub has already handled, with the alarm it led to."""

    device_id: str
    seq: int
    ts_ms: int
    alarm_id: str | None


Verdict = Literal["new", "duplicate"]


def classify(event: ButtonEvent, stored: StoredEvent | None, dedup_window_ms: int) -> Verdict:
    """A repeated ``seq`` is the same event (firmware retries until acked).

    The same seq with a ``ts`` further than `dedup_window_ms` from the stored one is a device
    whose counter restarted (reboot): that is a new event, so an elder is never ignored.
    """
    if stored is None:
        return "new"
    return "duplicate" if abs(event.ts - stored.ts_ms) <= dedup_window_ms else "new"


def new_alarm_id() -> str:
    """Hub-made alarm id: globally unique, the server's idempotency key."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog, 2015)."""

    initial_s: float
    cap_s: float

    def delay(self, attempt: int, unit_random: float) -> float:
        """Delay before retry number `attempt` (0-based); `unit_random` in [0, 1)."""
        ceiling = min(self.cap_s, self.initial_s * (2 ** min(attempt, 30)))
        return ceiling * (0.5 + 0.5 * unit_random)
