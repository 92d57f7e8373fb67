"""The checklists' core: what the directory file may set as a kind's list, and the record
kept with the outcome, which must give back a centre's own words whatever they hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.console.checklists import (
    DEFAULTS,
    MAX_ITEM_CHARS,
    MAX_ITEMS,
    ChecklistRecord,
    at_outcome,
    checklist,
    decode,
    encode,
    list_problem,
    words,
)


def test_the_built_in_lists_are_valid_and_their_record_unchanged() -> None:
    for kind, items in DEFAULTS.items():
        assert list_problem(kind, items) is None
    record = at_outcome(DEFAULTS["button"], ["call_elder"])
    assert record is not None
    assert encode(record) == "done=call_elder;missed=call_family,responder_on_way"  # as before


@pytest.mark.parametrize(
    ("kind", "items", "says"),
    [
        ("wellbeing", ["a"], "unknown alarm kind 'wellbeing': checklists are for button, fall"),
        ("fall", ["x"] * 2, "listed twice"),
        ("fall", [str(i) for i in range(MAX_ITEMS + 1)], f"at most {MAX_ITEMS}"),
        ("fall", ["x" * (MAX_ITEM_CHARS + 1)], f"longer than {MAX_ITEM_CHARS} characters"),
        ("fall", [""], "empty"),
        ("fall", [" 问伤情"], "starts or ends with a space"),
        ("fall", ["问伤情\n叫救护车"], "line break"),
        ("fall", [f"{i}" + "问" * (MAX_ITEM_CHARS - 1) for i in range(6)], "too long to record"),
    ],
)
def test_a_list_the_console_cannot_show_or_record_is_refused(
    kind: str, items: list[str], says: str
) -> None:
    problem = list_problem(kind, items)
    assert problem is not None and says in problem


def test_an_empty_list_is_allowed() -> None:
    assert list_problem("button", []) is None
    assert at_outcome((), ["call_elder"]) is None  # nothing to record


item = (
    st.text(
        st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")),
        min_size=1,
        max_size=MAX_ITEM_CHARS,
    )
    .map(str.strip)
    .filter(bool)
)


@given(st.lists(item, max_size=MAX_ITEMS, unique=True), st.data())
def test_a_record_gives_back_the_centres_words(items: list[str], data: st.DataObject) -> None:
    ticked = data.draw(st.lists(st.sampled_from(items), unique=True) if items else st.just([]))
    record = at_outcome(items, ticked)
    if not items:
        assert record is None
        return
    assert record is not None
    assert decode(encode(record)) == record
    assert sorted(record.done + record.missed) == sorted(items)


def test_catalogue_items_are_looked_up_and_the_centres_shown_as_written() -> None:
    def t(key: str) -> str:
        return {"check.call_elder": "Called the elder"}.get(key, "?")

    assert words(t, "call_elder") == "Called the elder"
    assert words(t, "致电老人，询问感觉如何") == "致电老人，询问感觉如何"
    items = checklist(("a", "b"), [("b", "console:op", 5), ("b", "console:ed", 9)])
    assert [(c.key, c.done_by, c.done_at_ms) for c in items] == [
        ("a", None, None),
        ("b", "op", 5),
    ]


def test_a_legacy_record_still_reads() -> None:
    assert decode("done=call_elder;missed=call_family") == ChecklistRecord(
        ("call_elder",), ("call_family",)
    )
