"""Puts a pendant's IMU frames back in stream order before the fall detector sees them.

IMU frames travel at QoS 0, so they may arrive late, twice or swapped. A frame that follows
the last one released goes straight through (no added latency); a frame that leaves a hole
is held until ``hold_ms`` of newer stream time has arrived, then the hole is accepted as a
gap. Pure: no I/O, no clock; time is the frames' own ``t0``.
"""

from __future__ import annotations

import bisect
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

    def __init__(self, hold_ms: float = 2000.0, slack_ms: float = 250.0, max_held: int = 32):
        self.hold_ms = hold_ms
        self.slack_ms = slack_ms
        """A frame starting this close after the expected time is contiguous (clock jitter)."""
        self.max_held = max_held
        self._next_ms: float | None = None
        self._held: list[Frame] = []
        self.dropped = 0

    def push(self, frame: Frame) -> list[Frame]:
        if self._next_ms is not None and frame.end_ms <= self._next_ms + 0.5:
            self.dropped += 1  # a duplicate, or a frame older than what was already used
            return []
        i = bisect.bisect_left(self._held, frame)
        if i < len(self._held) and self._held[i].t0_ms == frame.t0_ms:
            self.dropped += 1  # the same frame twice while held
            return []
        self._held.insert(i, frame)
        return self._release()

    def _release(self) -> list[Frame]:
        out: list[Frame] = []
        while self._held:
            head = self._held[0]
            newest = self._held[-1].end_ms
            contiguous = self._next_ms is None or head.t0_ms <= self._next_ms + self.slack_ms
            waited = self._next_ms is not None and newest - self._next_ms > self.hold_ms
            if not (contiguous or waited or len(self._held) > self.max_held):
                break
            self._held.pop(0)
            if self._next_ms is not None and head.end_ms <= self._next_ms + 0.5:
                self.dropped += 1
                continue
            out.append(head)
            self._next_ms = head.end_ms
        return out
