"""Welfare checks (docs/health-review.md): an alarm of kind `welfare` (a missed daily
check-in, a long stillness, a night-time rise with no return) is stored like any alarm but
never climbs the emergency ladder and texts nobody: it waits in the console queue, after
every emergency, for the duty dispatcher, who calls the elder and then the contacts. Pure:
the predicate the ladder code asks, and what the queue shows of the alarm's details."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carehub.alarm_lifecycle import AlarmKind
from carehub.api_contract import WelfareReason

LADDERLESS_KINDS = frozenset({AlarmKind.WELFARE})
"""Alarm kinds that never get an escalation ladder (no SMS to the teams)."""
LADDERLESS_KIND_VALUES = tuple(sorted(k.value for k in LADDERLESS_KINDS))
"""The same, as stored in `alarms.kind` (for a SQL filter)."""
MAX_FIGURES = 12
"""At most this many usual/today figures are shown (the details are the hub's)."""


def starts_ladder(kind: AlarmKind | str) -> bool:
    """Whether an alarm of this kind climbs the emergency ladder."""
    return AlarmKind(kind) not in LADDERLESS_KINDS


def joins_open_alarm(kind: AlarmKind | str) -> bool:
    """Whether a new upload of this kind may join its device's open alarm as a repeat
    (`server.alarm_repeats`). Not a welfare check: the hub raises each reason at most once
    a day, so a second one is news (a night-time rise while the day's stillness check is
    still open must not disappear into it)."""
    return AlarmKind(kind) not in LADDERLESS_KINDS


def is_welfare(kind: AlarmKind | str) -> bool:
    return kind == AlarmKind.WELFARE.value


@dataclass(frozen=True)
class Figure:
    """One figure of the elder's usual pattern beside today's (e.g. ``still_min``)."""

    name: str
    usual: str
    today: str


@dataclass(frozen=True)
class WelfareView:
    """What the queue shows of a welfare check: why, and the usual pattern beside today."""

    reason: str  # a WelfareReason value, or "unknown" when the hub sent another
    figures: tuple[Figure, ...]


def welfare_view(details: Mapping[str, Any] | None) -> WelfareView:
    """The reason and the ``usual`` vs ``today`` figures of a welfare alarm's details
    (``{"welfare": <reason>, "usual": {...}, "today": {...}}``); whatever is missing or
    malformed is left out, never an error (the details come from a hub)."""
    details = details if isinstance(details, Mapping) else {}
    raw = details.get("welfare")
    known = {r.value for r in WelfareReason}
    reason = raw if isinstance(raw, str) and raw in known else "unknown"
    usual, today = _flat(details.get("usual")), _flat(details.get("today"))
    names = [*usual, *(n for n in today if n not in usual)][:MAX_FIGURES]
    return WelfareView(
        reason, tuple(Figure(n, usual.get(n, "–"), today.get(n, "–")) for n in names)
    )


def _flat(figures: Any) -> dict[str, str]:
    """Scalar figures only, as short text (a nested value is not shown)."""
    if not isinstance(figures, Mapping):
        return {}
    out: dict[str, str] = {}
    for name, value in figures.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        out[str(name)[:40]] = shown[:40]
    return out
