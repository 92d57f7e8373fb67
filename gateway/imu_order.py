"""Puts a pendant's IMU frames back in stream order before the fall detector sees them.

IMU frames travel at QoS 0, so they may arrive late, twice or swapped. A frame that follows
the last one released goes straight through (no added latency); a frame that leaves a hole
is held until ``hold_ms`` of newer stream time has arrived, then the hole is accepted as a
gap. Pure: no I/O, no clock; time is the frames' own ``t0``.

A stream that jumps forward by more than ``jump_ms`` or moves back by more than ``rewind_ms``
(a device clock stepped, a stale frame from far away) restarts the orderer: it then follows
the new timeline instead of dropping everything "older" than one bad frame forever. The
reason is left in ``restarted`` for the caller to report (and to restart its detector).
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
        if expected is not None and frame.t0_ms > expected + self.jump_ms:
            out = self._release(flush=True)  # what was held is older: it goes first
            self._next_ms = None
            self.restarted = f"stream jumped {(frame.t0_ms - expected) / 1000:.0f} s forward"
        elif not replayed and expected is not None and frame.t0_ms < expected - self.rewind_ms:
            self._held.clear()  # the old timeline is over
            self._next_ms, self.rewound = None, True
            self.restarted = f"stream went {(expected - frame.t0_ms) / 1000:.0f} s back"
        if self._next_ms is not None and frame.end_ms <= self._next_ms + 0.5:
            self.dropped += 1  # a duplicate, or a frame older than what was already used
            return []
        i = bisect.bisect_left(self._held, frame)
        if i < len(self._held) and self._held[i].t0_ms == frame.t0_ms:
            self.dropped += 1  # the same frame twice while held
            return []
        self._held.insert(i, frame)
        return out + self._release()

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
