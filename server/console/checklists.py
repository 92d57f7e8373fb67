"""What an operator should not forget for each kind of alarm: a short checklist on the
alarm page. Ticking an item is an `alarm_events` row (kind ``checked``, detail: the item),
so the timeline and the next operator see what was done and by whom.

The built-in lists (`DEFAULTS`) are catalogue keys, their words in the catalogue
(``check.<key>``). A centre may set its own list per alarm kind in the directory file
(``[checklists]``, `server.directory`, stored in the ``checklists`` table): those items are
the centre's own words, free text shown as written, and an item's text is its identity in
the ``checked`` events and the record kept with the outcome."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from carehub.alarm_lifecycle import AlarmKind

CHECKLIST_EVENT = "checklist"
"""The ``alarm_events`` kind of the checklist recorded with the outcome (`ChecklistRecord`)."""

DEFAULTS: dict[str, tuple[str, ...]] = {
    AlarmKind.BUTTON.value: ("call_elder", "call_family", "responder_on_way"),
    AlarmKind.FALL.value: (
        "call_elder",
        "ask_injury",
        "consider_ambulance",
        "call_family",
        "responder_on_way",
    ),
    AlarmKind.VITALS.value: ("call_elder", "check_wearable", "tell_doctor"),
    AlarmKind.WELFARE.value: (),
}
"""A kind's list when the directory file sets none."""

CATALOGUE_ITEMS = frozenset(key for items in DEFAULTS.values() for key in items)
"""Items whose words are the catalogue's (``check.<key>``); any other item is the centre's
own text."""

MAX_ITEMS = 10
MAX_ITEM_CHARS = 80
MAX_RECORD_CHARS = 400  # alarm_events.detail


def words(t: Callable[[str], str], item: str) -> str:
    """What the page shows for `item`: a built-in key's catalogue words, else the centre's
    text as written."""
    return t(f"check.{item}") if item in CATALOGUE_ITEMS else item


def list_problem(kind: str, items: Sequence[str]) -> str | None:
    """Why `items` cannot be `kind`'s checklist (for the directory file's message), or None."""
    kinds = [k.value for k in AlarmKind]
    if kind not in kinds:
        return f"unknown alarm kind {kind!r}: checklists are for {', '.join(kinds)}"
    if len(items) > MAX_ITEMS:
        return f"the {kind} checklist has {len(items)} items: at most {MAX_ITEMS}"
    for item in items:
        if not item.strip() or item != item.strip():
            return f"{kind} checklist: item {item!r} is empty or starts or ends with a space"
        if len(item) > MAX_ITEM_CHARS:
            return f"{kind} checklist: item {item!r} is longer than {MAX_ITEM_CHARS} characters"
        if any(not c.isprintable() for c in item):
            return f"{kind} checklist: item {item!r} holds a line break or control character"
    if len(set(items)) != len(items):
        return f"{kind} checklist: an item is listed twice"
    recorded = len(encode(ChecklistRecord((), tuple(items))))
    if recorded > MAX_RECORD_CHARS:
        return (
            f"the {kind} checklist is too long to record with the outcome ({recorded} of at "
            f"most {MAX_RECORD_CHARS} characters): shorten or drop items"
        )
    return None


@dataclass(frozen=True)
class CheckItem:
    key: str  # a catalogue key (`CATALOGUE_ITEMS`) or the centre's text
    done_by: str | None  # the console user who ticked it
    done_at_ms: int | None


def checklist(items: Sequence[str], ticked: Iterable[tuple[str, str, int]]) -> list[CheckItem]:
    """The alarm kind's `items` with who ticked each first: `ticked` is (item, actor, at ms)
    of the alarm's ``checked`` events, oldest first."""
    first: dict[str, tuple[str, int]] = {}
    for key, who, at_ms in ticked:
        first.setdefault(key, (who.removeprefix("console:"), at_ms))
    out = []
    for key in items:
        done = first.get(key)
        out.append(CheckItem(key, done[0], done[1]) if done else CheckItem(key, None, None))
    return out


@dataclass(frozen=True)
class ChecklistRecord:
    """The checklist as it stood when the alarm was resolved: the items done and those not,
    each in the list's order (stored with the outcome as an ``alarm_events`` row of kind
    ``checklist``, detail `encode`d)."""

    done: tuple[str, ...]
    missed: tuple[str, ...]


def at_outcome(items: Sequence[str], ticked: Iterable[str]) -> ChecklistRecord | None:
    """The record of the alarm kind's checklist `items` given those ticked; None for an
    empty list."""
    if not items:
        return None
    done = set(ticked)
    return ChecklistRecord(
        tuple(k for k in items if k in done), tuple(k for k in items if k not in done)
    )


_ESCAPES = {"%": "%25", ",": "%2C", ";": "%3B", "=": "%3D"}
_CODES = {code: char for char, code in _ESCAPES.items()}


def _escape(item: str) -> str:
    return re.sub("[%,;=]", lambda m: _ESCAPES[m.group()], item)


def _unescape(item: str) -> str:
    return re.sub("%(25|2C|3B|3D)", lambda m: _CODES[m.group()], item)


def encode(record: ChecklistRecord) -> str:
    """``done=call_elder,call_family;missed=responder_on_way`` (fits ``alarm_events.detail``);
    a centre's text keeps its words, its ``%``, ``,``, ``;`` and ``=`` written ``%25`` …"""
    done = ",".join(_escape(k) for k in record.done)
    missed = ",".join(_escape(k) for k in record.missed)
    return f"done={done};missed={missed}"


def decode(detail: str) -> ChecklistRecord:
    """`encode`'s inverse; a part it cannot read is taken as empty."""
    parts = dict(p.split("=", 1) for p in detail.split(";") if "=" in p)

    def keys(name: str) -> tuple[str, ...]:
        return tuple(_unescape(k) for k in parts.get(name, "").split(",") if k)

    return ChecklistRecord(keys("done"), keys("missed"))
