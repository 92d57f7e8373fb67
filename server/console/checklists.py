"""What an operator should not forget for each kind of alarm: a short checklist on the
alarm page. Ticking an item is an `alarm_events` row (kind ``checked``, detail: the item's
key), so the timeline and the next operator see what was done and by whom. Items are keys;
their words are in the catalogue (``check.<key>``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from carehub.alarm_lifecycle import AlarmKind

CHECKLIST_EVENT = "checklist"
"""The ``alarm_events`` kind of the checklist recorded with the outcome (`ChecklistRecord`)."""

CHECKLISTS: dict[str, tuple[str, ...]] = {
    AlarmKind.BUTTON.value: ("call_elder", "call_family", "responder_on_way"),
    AlarmKind.FALL.value: (
        "call_elder",
        "ask_injury",
        "consider_ambulance",
        "call_family",
        "responder_on_way",
    ),
    AlarmKind.VITALS.value: ("call_elder", "check_wearable", "tell_doctor"),
}


@dataclass(frozen=True)
class CheckItem:
    key: str
    done_by: str | None  # the console user who ticked it
    done_at_ms: int | None


def checklist(kind: str, ticked: Iterable[tuple[str, str, int]]) -> list[CheckItem]:
    """The kind's items with who ticked each first: `ticked` is (key, actor, at ms) of the
    alarm's ``checked`` events, oldest first."""
    first: dict[str, tuple[str, int]] = {}
    for key, who, at_ms in ticked:
        first.setdefault(key, (who.removeprefix("console:"), at_ms))
    items = []
    for key in CHECKLISTS.get(kind, ()):
        done = first.get(key)
        items.append(CheckItem(key, done[0], done[1]) if done else CheckItem(key, None, None))
    return items


@dataclass(frozen=True)
class ChecklistRecord:
    """The checklist as it stood when the alarm was resolved: the items done and those not,
    each in the list's order (stored with the outcome as an ``alarm_events`` row of kind
    ``checklist``, detail `encode`d)."""

    done: tuple[str, ...]
    missed: tuple[str, ...]


def at_outcome(kind: str, ticked: Iterable[str]) -> ChecklistRecord | None:
    """The record of `kind`'s checklist given the items ticked; None for a kind without a
    list."""
    items = CHECKLISTS.get(kind, ())
    if not items:
        return None
    done = set(ticked)
    return ChecklistRecord(
        tuple(k for k in items if k in done), tuple(k for k in items if k not in done)
    )


def encode(record: ChecklistRecord) -> str:
    """``done=call_elder,call_family;missed=responder_on_way`` (fits ``alarm_events.detail``)."""
    return f"done={','.join(record.done)};missed={','.join(record.missed)}"


def decode(detail: str) -> ChecklistRecord:
    """`encode`'s inverse; a part it cannot read is taken as empty."""
    parts = dict(p.split("=", 1) for p in detail.split(";") if "=" in p)

    def keys(name: str) -> tuple[str, ...]:
        return tuple(k for k in parts.get(name, "").split(",") if k)

    return ChecklistRecord(keys("done"), keys("missed"))
