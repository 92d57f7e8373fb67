"""Per-sample artefact screening of one vital-sign channel, streaming and vectorised.

A raw value is *possible* if it is a finite number inside the physiological range; a possible
value is a *jump* if it moved from the previous possible value faster than the channel can
(a spike loses itself and the sample after it; a real step loses one sample). Runs of
identical possible values give the flat-line start (``same_since``), broken by a change or by
a gap longer than :data:`GAP_MS`. :class:`ChannelScreen` does this per sample for the hub;
:func:`screen_channel` does the same over arrays for offline evaluation — the two are
equivalent by construction and by test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "GAP_MS",
    "PLAUSIBLE",
    "ChannelScreen",
    "ScreenedChannel",
    "finite_number",
    "screen_channel",
]

GAP_MS = 30_000
"""Samples further apart than this (ms) are not compared for jumps or flat lines."""

PLAUSIBLE: dict[str, tuple[float, float]] = {
    "hr": (25.0, 250.0),
    "spo2": (50.0, 100.0),
    "rr": (3.0, 60.0),
    "temp": (15.0, 43.0),
    "sbp": (50.0, 260.0),
}
"""Physiologically possible ranges (bpm, %, /min, °C, mmHg); outside = artefact, dropped.
Temperature goes down to 15 °C so that a wearable cooling off the wrist stays visible."""


def finite_number(x: object) -> float | None:
    """A finite float, or None for anything else (None, NaN, inf, text, objects)."""
    if type(x) is float:
        return x if x - x == 0.0 else None  # NaN and ±inf give NaN
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


class ChannelScreen:
    """Streaming screen of one channel; ``values`` collects the accepted values of the epoch."""

    __slots__ = ("lo", "hi", "jump", "prev", "prev_ts", "same_since", "values", "seen")

    def __init__(self, lo: float, hi: float, jump_per_s: float) -> None:
        self.lo, self.hi, self.jump = lo, hi, jump_per_s
        self.prev: float | None = None
        self.prev_ts = 0
        self.same_since = 0
        self.values: list[float] = []
        self.seen = False
        """A possible value arrived during the current epoch (a sign of skin contact)."""

    def offer(self, x: object, ts: int, keep: bool) -> float | None:
        """Screen one raw value at ``ts`` (ms); store it in the epoch if accepted and ``keep``.
        Returns the value if it was accepted (possible and not a jump), else None."""
        v = x if type(x) is float else finite_number(x)
        if v is None or not self.lo <= v <= self.hi:  # NaN fails the comparison
            return None
        self.seen = True
        prev = self.prev
        jump = False
        if prev is None:
            self.same_since = ts
        else:
            gap = ts - self.prev_ts
            jump = gap < GAP_MS and abs(v - prev) > self.jump * max(gap / 1000.0, 1.0)
            if v != prev or gap > GAP_MS:
                self.same_since = ts
        self.prev = v
        self.prev_ts = ts
        if jump:
            return None
        if keep:
            self.values.append(v)
        return v

    def flat_at(self, end_ms: int, flat_ms: int) -> tuple[bool, bool]:
        """(reporting, flat) at ``end_ms``: a possible value within GAP_MS, and the same value
        for at least ``flat_ms``."""
        reporting = self.prev is not None and end_ms - self.prev_ts <= GAP_MS
        return reporting, reporting and end_ms - self.same_since >= flat_ms


@dataclass(frozen=True)
class ScreenedChannel:
    """Result of :func:`screen_channel`: for each possible sample its index into the input,
    time (ms), value, whether it is a jump, and the start of its run of equal values (ms)."""

    index: NDArray[np.intp]
    ts_ms: NDArray[np.int64]
    value: NDArray[np.float64]
    jump: NDArray[np.bool_]
    same_since: NDArray[np.int64]


def screen_channel(
    ts_ms: NDArray[np.int64], x: NDArray[np.float64], screen: ChannelScreen
) -> ScreenedChannel:
    """Vectorised :meth:`ChannelScreen.offer` over increasing ``ts_ms``, continuing from the
    state of ``screen`` (which is not modified)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & (x >= screen.lo) & (x <= screen.hi)
    idx = np.flatnonzero(ok)
    v = x[idx]
    t = ts_ms[idx]
    n = idx.size
    if screen.prev is None:
        pv = np.concatenate([[np.nan], v[:-1]]) if n else v
        pt = np.concatenate([[0], t[:-1]]).astype(np.int64) if n else t
        has_prev = np.ones(n, bool)
        if n:
            has_prev[0] = False
    else:
        pv = np.concatenate([[screen.prev], v[:-1]])[:n]
        pt = np.concatenate([[screen.prev_ts], t[:-1]]).astype(np.int64)[:n]
        has_prev = np.ones(n, bool)
    gap = t - pt
    jump = (
        has_prev & (gap < GAP_MS) & (np.abs(v - pv) > screen.jump * np.maximum(gap / 1000.0, 1.0))
    )
    new_run = ~has_prev | (v != pv) | (gap > GAP_MS)
    start = np.maximum.accumulate(np.where(new_run, np.arange(n), -1)) if n else np.zeros(0, int)
    same = np.where(start >= 0, t[np.maximum(start, 0)], screen.same_since).astype(np.int64)
    return ScreenedChannel(idx, t, v, jump, same)
