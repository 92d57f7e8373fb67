"""What may be texted to one number now: a per-number rate limit with merging, and never
the same text twice (some carriers silently drop a repeated identical message).

A doctor on duty during a burst (a power cut wakes a district's fall sensors) must not get
twenty messages in a minute, yet no alarm may go unmentioned: beyond `max_per_window`
messages in `window_ms`, waiting texts to that number are merged into one. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_PER_WINDOW = 4
WINDOW_MS = 15 * 60 * 1000


@dataclass(frozen=True)
class Sent:
    number: str
    body: str
    at_ms: int


@dataclass(frozen=True)
class Waiting:
    """A text waiting to go out; `key` identifies it (a notification id)."""

    key: str
    number: str
    body: str


@dataclass(frozen=True)
class Outgoing:
    number: str
    body: str
    keys: tuple[str, ...]
    """The waiting texts this message carries (several when merged)."""


MIN_GAP_OVER_LIMIT_MS = 10_000
"""Over its limit a number still gets one merged message every 10 s: an emergency waits
seconds, never the rest of the window (and the ladder moves on after its step's wait)."""


@dataclass(frozen=True)
class TextPlan:
    send: list[Outgoing]
    held_until_ms: dict[str, int]
    """Numbers over their limit whose waiting texts go out (merged) at that time."""


def plan_texts(
    waiting: Sequence[Waiting],
    history: Sequence[Sent],
    now_ms: int,
    max_per_window: int = MAX_PER_WINDOW,
    window_ms: int = WINDOW_MS,
    separator: str = "\n",
) -> TextPlan:
    """The messages to send now for `waiting` (in order), given what each number was sent.

    Every waiting text is carried by exactly one outgoing message, now or when held:
    sent alone while the number is under its limit; the texts beyond the limit merged into
    one message, at most one every 10 s once the limit is reached.
    """
    recent: dict[str, int] = {}
    last: dict[str, int] = {}
    bodies: dict[str, set[str]] = {}
    for s in history:
        bodies.setdefault(s.number, set()).add(s.body)
        last[s.number] = max(last.get(s.number, s.at_ms), s.at_ms)
        if now_ms - s.at_ms < window_ms:
            recent[s.number] = recent.get(s.number, 0) + 1
    by_number: dict[str, list[Waiting]] = {}
    for w in waiting:
        by_number.setdefault(w.number, []).append(w)
    plan = TextPlan([], {})
    for number, texts in by_number.items():
        sent_before = bodies.setdefault(number, set())
        room = max_per_window - recent.get(number, 0)
        if room <= 0:
            free_at = last.get(number, now_ms) + MIN_GAP_OVER_LIMIT_MS
            if free_at > now_ms:
                plan.held_until_ms[number] = free_at
                continue
            alone, merged = [], list(texts)
        elif len(texts) <= room:
            alone, merged = list(texts), []
        else:
            alone, merged = list(texts[: room - 1]), list(texts[room - 1 :])
        for w in alone:
            plan.send.append(Outgoing(number, unique_body(w.body, sent_before), (w.key,)))
        if merged:
            body = unique_body(separator.join(w.body for w in merged), sent_before)
            plan.send.append(Outgoing(number, body, tuple(w.key for w in merged)))
    return plan


def unique_body(body: str, already_sent: set[str]) -> str:
    """`body`, or `body` with a repeat counter when that exact text went to the number
    before; records the result in `already_sent`."""
    candidate, n = body, 1
    while candidate in already_sent:
        n += 1
        candidate = f"{body} ({n})"
    already_sent.add(candidate)
    return candidate
