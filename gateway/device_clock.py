"""Maps one device's timestamps onto the hub's clock, so no device clock can steer a detector.

The rule (``carehub.mqtt_contract``, ``docs/mqtt.md``): a live timestamp outside
[now − ``CLOCK_BEHIND_TOLERANCE_MS``, now + ``CLOCK_AHEAD_TOLERANCE_MS``] means the device's
clock is wrong. The guard then re-stamps that device's data with a per-device offset, set so
that the offending timestamp lands on the hub's ``now``; the offset is re-estimated whenever a
mapped timestamp falls outside the window again. So one far-future frame is mapped to about
now, and the next normal frame (now far behind under that offset) maps back to itself: a
detector's time never moves past the hub's clock + tolerance.

Replayed frames (buffered by a pendant during an outage) are legitimately old: they keep the
current offset and are only dropped when older than ``REPLAY_MAX_AGE_MS``.

Pure: no I/O, no logging; the hub's time is passed in, transitions are returned for the shell.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from carehub.mqtt_contract import (
    CLOCK_AHEAD_TOLERANCE_MS,
    CLOCK_BEHIND_TOLERANCE_MS,
    REPLAY_MAX_AGE_MS,
)


class ClockChange(enum.StrEnum):
    """A transition the shell logs once (with the device id)."""

    WRONG = "clock wrong"
    OK = "clock ok again"
    REPLAY_TOO_OLD = "replayed data too old"
    NOT_A_TIME = "timestamp is not a finite number"


@dataclass(frozen=True)
class Stamp:
    """A device timestamp mapped onto the hub's clock (epoch ms), or ``drop``."""

    hub_ms: int
    drop: bool = False
    change: ClockChange | None = None
    offset_ms: int = 0
    """The offset applied (hub ms − device ms); 0 while the device's clock is trusted."""
    guessed: bool = False
    """The offset was re-estimated from this very timestamp, which is therefore mapped to the
    hub's now: when its data was sampled is unknown (a stale copy re-sent with a clock ten
    years off looks the same). Ordered streams should not use its samples."""


class DeviceClock:
    """One per device. ``stamp`` maps each of its timestamps (epoch ms) onto the hub's clock."""

    def __init__(
        self,
        ahead_ms: int = CLOCK_AHEAD_TOLERANCE_MS,
        behind_ms: int = CLOCK_BEHIND_TOLERANCE_MS,
        replay_max_age_ms: int = REPLAY_MAX_AGE_MS,
    ) -> None:
        self.ahead_ms = ahead_ms
        self.behind_ms = behind_ms
        self.replay_max_age_ms = replay_max_age_ms
        self.offset_ms = 0
        self.wrong = False
        self._dropping = False

    def stamp(self, device_ms: int, now_ms: int, replayed: bool = False) -> Stamp:
        """Map ``device_ms`` (the device's epoch ms) given the hub's ``now_ms``."""
        if not (isinstance(device_ms, int) or math.isfinite(device_ms)):
            return Stamp(now_ms, True, ClockChange.NOT_A_TIME)  # refused by the contract
        device_ms = int(device_ms)
        mapped = device_ms + self.offset_ms
        if replayed and mapped <= now_ms + self.ahead_ms:
            if now_ms - mapped > self.replay_max_age_ms:
                first = not self._dropping
                self._dropping = True
                return Stamp(mapped, True, ClockChange.REPLAY_TOO_OLD if first else None)
            self._dropping = False
            return Stamp(mapped, offset_ms=self.offset_ms)
        self._dropping = False
        if self._inside(mapped, now_ms):
            return Stamp(mapped, offset_ms=self.offset_ms)
        if self._inside(device_ms, now_ms):  # the device's own clock is right (again)
            self.offset_ms = 0
            change = ClockChange.OK if self.wrong else None
            self.wrong = False
            return Stamp(device_ms, change=change)
        self.offset_ms = now_ms - device_ms
        change = None if self.wrong else ClockChange.WRONG
        self.wrong = True
        return Stamp(now_ms, change=change, offset_ms=self.offset_ms, guessed=True)

    def _inside(self, ts_ms: int, now_ms: int) -> bool:
        return now_ms - self.behind_ms <= ts_ms <= now_ms + self.ahead_ms


@dataclass(frozen=True)
class Notice:
    """Something about a device's input the hub logs once: a wrong clock, a restarted
    detector. ``text`` says what happened and what the hub did; never personal data."""

    device_id: str
    text: str
