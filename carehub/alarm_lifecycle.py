"""An alarm's life: one enum and one transition table, read by the hub, the server, tests and docs.

    raised ─┬─> pending_cancel ─┬─> received ─> dispatched ─> accepted ─> resolved
            │                   └─> cancelled        │            │
            └─> received                             └────────────┴──> resolved / cancelled

``raised`` and ``pending_cancel`` exist only on the hub (a detected fall waits for its cancel
window); the server first sees an alarm as ``received``. ``resolved`` and ``cancelled`` are final.
"""

from __future__ import annotations

import enum


class AlarmState(enum.StrEnum):
    RAISED = "raised"
    PENDING_CANCEL = "pending_cancel"
    RECEIVED = "received"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class AlarmKind(enum.StrEnum):
    """What raised the alarm."""

    BUTTON = "button"
    FALL = "fall"
    VITALS = "vitals"
    WELFARE = "welfare"  # a welfare check (docs/health-review.md): the dispatcher, no ladder


class Severity(enum.StrEnum):
    """`critical` alarms are dispatched like a button press; `warning` only informs the doctor."""

    WARNING = "warning"
    CRITICAL = "critical"


TRANSITIONS: dict[AlarmState, frozenset[AlarmState]] = {
    AlarmState.RAISED: frozenset(
        {AlarmState.PENDING_CANCEL, AlarmState.RECEIVED, AlarmState.CANCELLED}
    ),
    AlarmState.PENDING_CANCEL: frozenset({AlarmState.RECEIVED, AlarmState.CANCELLED}),
    AlarmState.RECEIVED: frozenset(
        {AlarmState.DISPATCHED, AlarmState.ACCEPTED, AlarmState.RESOLVED, AlarmState.CANCELLED}
    ),
    AlarmState.DISPATCHED: frozenset(
        {AlarmState.ACCEPTED, AlarmState.RESOLVED, AlarmState.CANCELLED}
    ),
    AlarmState.ACCEPTED: frozenset({AlarmState.RESOLVED, AlarmState.CANCELLED}),
    AlarmState.RESOLVED: frozenset(),
    AlarmState.CANCELLED: frozenset(),
}
FINAL_STATES = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ORDER = {s: i for i, s in enumerate(AlarmState)}


def can_transition(current: AlarmState, new: AlarmState) -> bool:
    """True when `new` may follow `current` (a repeat of the same state is not a transition)."""
    return new in TRANSITIONS[current]


def merge(current: AlarmState, reported: AlarmState) -> AlarmState:
    """The state after a (possibly stale, repeated or reordered) report arrives.

    Reports travel over retried, reordered channels; a report that would move an alarm
    backwards or out of a final state is ignored rather than refused.
    """
    return reported if can_transition(current, reported) else current
