"""Puts a pendant's IMU frames back in stream order before the fall detector sees them.

IMU frames travel at QoS 0, so they may arrive late, twice or swapped. A frame that follows
the last one released goes straight through (no added latency); a frame that leaves a hole
is held until ``hold_ms`` of newer stream time has arrived, then the hole is accepted as a
gap. Pure: no I/O, no clock; time is the frames' own ``t0``.

A frame far from the expected time (more than ``hold_ms`` ahead, more than ``rewind_ms``
back, or straddling it: off the stream's grid) is a *stray*: kept aside, never released
alone. Only when the very next new frame continues the stray's timeline (starts where it
ends) does the stream move there
(a device clock stepped, a replay resumed after a gap); a jump of more than ``jump_ms`` or
any move back then restarts the orderer, the reason left in ``restarted`` for the caller to
report (and to restart its detector). So one stale or far-off frame (a hostile copy, a
clock mapped wrongly once) neither deafens the stream nor wipes a detector's history
mid-fall; a real new timeline costs one frame of latency.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, order=True)
class Frame:
    t0_ms: float
    hz: float = field(compare=False)
    acc: np.ndarray = field(compare=False, repr=False)
    gyr: np.ndarray | None = field(compare=False, repr=False, default=None)

    @property
    def end_ms(self) -> float:
        """Stream time just after the last sample."""
        return self.t0_ms + len(self.acc) * 1000.0 / self.hz


class FrameOrderer:
    """One per device. ``push`` returns the frames that may go to the detector now, in order."""

    def __init__(
        self,
        hold_ms: float = 2000.0,
        slack_ms: float = 250.0,
        max_held: int = 32,
        jump_ms: float = 60_000.0,
        rewind_ms: float = 10_000.0,
    ):
        self.hold_ms = hold_ms
        self.slack_ms = slack_ms
        """A frame starting this close after the expected time is contiguous (clock jitter)."""
        self.max_held = max_held
        self.jump_ms = jump_ms
        """A frame starting this far (ms) after the expected time is a new timeline."""
        self.rewind_ms = max(rewind_ms, hold_ms)
        """A frame starting this far (ms) before the expected time is a new timeline, not a
        straggler (a frame that late cannot come from the network's reordering)."""
        self.restarted: str | None = None
        """Why the last ``push`` restarted the stream, else None."""
        self.rewound = False
        """The last ``push`` restarted the stream on an earlier timeline."""
        self._next_ms: float | None = None
        self._held: list[Frame] = []
        self._stray: Frame | None = None
        """A frame far from the expected time, waiting for a second one on its timeline."""
        self.dropped = 0

    def push(self, frame: Frame, replayed: bool = False) -> list[Frame]:
        """``replayed``: buffered by the device during an outage and old on purpose, so it
        never moves the stream back (what was already used is dropped as a duplicate)."""
        self.restarted, self.rewound = None, False
        if not (frame.hz > 0 and math.isfinite(frame.t0_ms) and math.isfinite(frame.end_ms)):
            self.dropped += 1
            return []
        out: list[Frame] = []
        expected = self._next_ms
        stray, self._stray = self._stray, None
        if expected is not None and self._is_stray(frame, expected, replayed):
            if stray is None or not self._continues(stray, frame):
                if stray is not None:
                    self.dropped += 1  # an earlier stray nothing continued
                self._stray = frame  # wait for a second frame on its timeline
                return []
            if frame.t0_ms > expected:  # the stream went on after a gap
                out = self._release(flush=True)  # what was held is older: it goes first
                self._next_ms = None
                if stray.t0_ms > expected + self.jump_ms:
                    self.restarted = (
                        f"stream jumped {(stray.t0_ms - expected) / 1000:.0f} s forward"
                    )
            else:  # the old timeline is over
                self._held.clear()
                self._next_ms, self.rewound = None, True
                self.restarted = f"stream went {(expected - stray.t0_ms) / 1000:.0f} s back"
            self._held = [stray]
        elif stray is not None:
            self._stray = stray  # a frame on the current timeline: the stray keeps waiting
        if self._next_ms is not None and frame.end_ms <= self._next_ms + 0.5:
            self.dropped += 1  # a duplicate, or a frame older than what was already used
            return out
        i = bisect.bisect_left(self._held, frame)
        if i < len(self._held) and self._held[i].t0_ms == frame.t0_ms:
            self.dropped += 1  # the same frame twice while held
            return out
        if self._stray is not None:  # the stream went on where it was: the stray was alone
            self._stray = None
            self.dropped += 1
        self._held.insert(i, frame)
        return out + self._release()

    def _is_stray(self, frame: Frame, expected: float, replayed: bool) -> bool:
        """Too far from the expected time to be network reordering (see the module doc), or
        straddling it: a frame of a stream starts where the last one ended, so one starting
        well inside what was used yet ending after it is off the stream's grid (a stale copy
        re-stamped to the hub's now) and must not overwrite the samples that follow."""
        if frame.t0_ms > expected + self.hold_ms + self.slack_ms:
            return True
        if replayed:  # old on purpose: never moves the stream back (see `push`)
            return False
        straddles = frame.t0_ms < expected - self.slack_ms and frame.end_ms > expected + 0.5
        return straddles or frame.t0_ms < expected - self.rewind_ms

    def _continues(self, stray: Frame, frame: Frame) -> bool:
        """``frame`` starts where ``stray`` ends: the next frame of the same timeline."""
        return abs(frame.t0_ms - stray.end_ms) <= self.slack_ms

    def _release(self, flush: bool = False) -> list[Frame]:
        out: list[Frame] = []
        while self._held:
            head = self._held[0]
            newest = self._held[-1].end_ms
            contiguous = self._next_ms is None or head.t0_ms <= self._next_ms + self.slack_ms
            waited = self._next_ms is not None and newest - self._next_ms > self.hold_ms
            if not (flush or contiguous or waited or len(self._held) > self.max_held):
                break
            self._held.pop(0)
            if self._next_ms is not None and head.end_ms <= self._next_ms + 0.5:
                self.dropped += 1
                continue
            out.append(head)
            self._next_ms = head.end_ms
        return out
