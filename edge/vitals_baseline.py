"""An elder's own normal for one vital sign, learned over days from hourly medians.

Each hour of good data is reduced to one number (the median of its 10-s epoch medians);
the baseline is the median of the last ``days`` of those hourly medians and its spread is
1.4826 × their median absolute deviation (a robust standard deviation that includes the
circadian swing). The baseline is recomputed once per hour, so the per-sample cost is O(1).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["BaselineEstimate", "HourlyBaseline", "median"]


def median(values: list[float]) -> float:
    """Median of a non-empty list (pure Python: faster than numpy for short lists)."""
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else 0.5 * (s[mid - 1] + s[mid])


@dataclass(frozen=True)
class BaselineEstimate:
    """``center`` and ``spread`` (robust SD) in the channel's unit.

    ``hours`` is how much data is behind them.
    """

    center: float
    spread: float
    hours: int


class HourlyBaseline:
    """Accumulates epoch medians of one channel and keeps a rolling multi-day baseline.

    ``min_epochs_per_hour``: an hour with fewer valid epochs (e.g. worn 20 min) is ignored;
    ``exclude_hour`` (via :meth:`exclude_current_hour`) keeps alarm/fault hours out, so a
    deterioration is never learned as the new normal.
    """

    def __init__(self, *, days: float, min_hours: int, min_epochs_per_hour: int) -> None:
        self._hourly: deque[float] = deque(maxlen=max(int(days * 24), 1))
        self._min_hours = min_hours
        self._min_epochs = min_epochs_per_hour
        self._hour: int | None = None
        self._values: list[float] = []
        self._excluded = False
        self.estimate: BaselineEstimate | None = None

    def add(self, hour: int, value: float | None) -> None:
        """Record one epoch median (``None`` = no valid value) that belongs to ``hour``
        (hours since the epoch of the timestamps)."""
        if hour != self._hour:
            self._close_hour()
            self._hour = hour
        if value is not None:
            self._values.append(value)

    def exclude_current_hour(self) -> None:
        """Do not learn from the hour in progress."""
        self._excluded = True

    def _close_hour(self) -> None:
        if self._hour is not None and not self._excluded and len(self._values) >= self._min_epochs:
            self._hourly.append(median(self._values))
            if len(self._hourly) >= self._min_hours:
                hourly = list(self._hourly)
                c = median(hourly)
                mad = median([abs(v - c) for v in hourly])
                self.estimate = BaselineEstimate(c, 1.4826 * mad, len(hourly))
        self._values = []
        self._excluded = False
