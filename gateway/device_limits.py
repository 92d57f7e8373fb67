"""Per-device limits, so that one device's flood neither delays another device nor fills
the log: a token bucket per device (and a smaller one for its presses), and a log throttle
that writes a device's first few lines a minute (and the first of each reason), then one
summary.

Pure and clock-injected (seconds from `Clock.monotonic`); the hub shell asks before it does
any work for a message, so a message over its device's limit costs a dict lookup."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from carehub.clock import Clock

MESSAGE_RATE_PER_S = 50.0
"""Messages per second a device may send on all channels together, sustained. A pendant
sends one IMU frame per second and a wearable a reading or two."""
MESSAGE_BURST = 4000
"""What arrives at once after an outage must pass: an hour of a pendant's frames queued by
the broker for the hub (older ones are dropped anyway), its own replay, a button's retries."""
PRESS_RATE_PER_S = 2.0
"""New button events per second a device may send, sustained (each costs a commit): no hand
presses faster for long. Republications of an event recently let through do not count."""
PRESS_BURST = 20
LOG_EVERY_S = 60.0
"""Per device and period: its first `LOG_FIRST_LINES` lines and the first of each reason are
written, the rest counted and summarised in one line when the period is over."""
LOG_FIRST_LINES = 5
LOG_MAX_KEYS = 64
"""Distinct devices the log throttle tracks per period; more (a flood of made-up ids) share
one key, so the log stays bounded whatever the ids."""
OTHER_DEVICES = "*"
MAX_BUCKETS = 10_000
"""Buckets kept at most: before its first config the hub accepts any device id, so made-up
ids must not grow memory; the oldest bucket is forgotten (it would start full again)."""


@dataclass
class TokenBucket:
    """`burst` tokens, refilled at `rate_per_s`; a message takes one."""

    rate_per_s: float
    burst: float
    tokens: float
    at_s: float

    def take(self, now_s: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_s - self.at_s) * self.rate_per_s)
        self.at_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class DeviceRateLimiter:
    """One token bucket per device id; `allow` is False once a device is over its rate."""

    def __init__(self, clock: Clock, rate_per_s: float, burst: int) -> None:
        self._clock = clock
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, device_id: str) -> bool:
        now = self._clock.monotonic()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[device_id] = TokenBucket(
                self.rate_per_s, self.burst, self.burst, now
            )
        return bucket.take(now)

    def forget(self, device_id: str) -> None:
        self._buckets.pop(device_id, None)


class PressLimiter:
    """New button events per device within a token bucket, decided before any lookup so
    that a flood of new `seq`s costs no database read; republications of an event let
    through recently (its last `remember` seqs) pass free, so a backlog of retries is
    answered, not limited."""

    def __init__(self, clock: Clock, rate_per_s: float, burst: int, remember: int = 32) -> None:
        self._buckets = DeviceRateLimiter(clock, rate_per_s, burst)
        self._remember = remember
        self._recent: dict[str, deque[int]] = {}

    def allow(self, device_id: str, seq: int) -> bool:
        recent = self._recent.get(device_id)
        if recent is not None and seq in recent:
            return True
        if not self._buckets.allow(device_id):
            return False
        if recent is None:
            if len(self._recent) >= MAX_BUCKETS:
                self._recent.pop(next(iter(self._recent)))
            recent = self._recent[device_id] = deque(maxlen=self._remember)
        recent.append(seq)
        return True

    def forget(self, device_id: str) -> None:
        self._buckets.forget(device_id)
        self._recent.pop(device_id, None)


@dataclass(frozen=True)
class LogSummary:
    """What a device had logged about it but not written, over `period_s` seconds."""

    device_id: str
    period_s: float
    suppressed: dict[str, int]
    """Reason (a key such as ``over_rate`` or a contract reason) → messages."""

    @property
    def total(self) -> int:
        return sum(self.suppressed.values())


@dataclass
class _Window:
    started_s: float
    written: int = 0
    seen: set[str] = field(default_factory=set)
    suppressed: Counter[str] = field(default_factory=Counter)


class LogThrottle:
    """Decides which per-message log lines are written: per device and period, the first
    `first_lines` and the first of each reason; the others are counted and summarised once
    the period is over (`summaries`), so a flood of 20 000 messages is a handful of lines."""

    def __init__(
        self,
        clock: Clock,
        every_s: float = LOG_EVERY_S,
        max_keys: int = LOG_MAX_KEYS,
        first_lines: int = LOG_FIRST_LINES,
    ) -> None:
        self._clock = clock
        self.every_s = every_s
        self.max_keys = max_keys
        self.first_lines = first_lines
        self._windows: dict[str, _Window] = {}

    def key(self, device_id: str) -> str:
        """The key a device is logged under (its id, or `OTHER_DEVICES` when too many)."""
        if device_id in self._windows or len(self._windows) < self.max_keys:
            return device_id
        return OTHER_DEVICES

    def note(self, device_id: str, reason: str) -> bool:
        """A message of `device_id` about to be logged for `reason`: True to write it now."""
        key = self.key(device_id)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(self._clock.monotonic())
        if reason not in window.seen or window.written < self.first_lines:
            window.seen.add(reason)
            window.written += 1
            return True
        window.suppressed[reason] += 1
        return False

    def summaries(self) -> list[LogSummary]:
        """Devices whose period is over: one summary each for what was not written (none
        when nothing was); their next line is written again."""
        now = self._clock.monotonic()
        out: list[LogSummary] = []
        for key, window in list(self._windows.items()):
            if now - window.started_s < self.every_s:
                continue
            del self._windows[key]
            if window.suppressed:
                out.append(LogSummary(key, now - window.started_s, dict(window.suppressed)))
        return out
