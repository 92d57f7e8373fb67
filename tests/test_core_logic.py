"""Plain core logic: alarm lifecycle, intake dedup, backoff, doctor choice, SMS text."""

from __future__ import annotations

import pytest

from carehub.alarm_lifecycle import (
    FINAL_STATES,
    TRANSITIONS,
    AlarmKind,
    AlarmState,
    Severity,
    merge,
)
from carehub.mqtt_contract import ButtonEvent
from gateway.intake import Backoff, StoredEvent, classify
from server.sms_text import MAX_SMS_CHARS, AlarmSummary, compose, elder_label


def test_final_states_have_no_way_out_and_every_other_state_ends() -> None:
    assert FINAL_STATES == {AlarmState.RESOLVED, AlarmState.CANCELLED}
    for state in AlarmState:
        seen, todo = set(), [state]
        while todo:  # every state can reach a final state
            s = todo.pop()
            seen.add(s)
            todo.extend(TRANSITIONS[s] - seen)
        assert seen & FINAL_STATES


def test_merge_ignores_stale_and_backward_reports() -> None:
    assert merge(AlarmState.RECEIVED, AlarmState.DISPATCHED) is AlarmState.DISPATCHED
    assert merge(AlarmState.DISPATCHED, AlarmState.RECEIVED) is AlarmState.DISPATCHED
    assert merge(AlarmState.CANCELLED, AlarmState.DISPATCHED) is AlarmState.CANCELLED
    assert merge(AlarmState.DISPATCHED, AlarmState.DISPATCHED) is AlarmState.DISPATCHED


def _press(seq: int, ts: int) -> ButtonEvent:
    return ButtonEvent(v=1, seq=seq, ts=ts, action="press")


def test_repeated_seq_is_the_same_event_but_a_restarted_counter_is_not() -> None:
    stored = StoredEvent("btn", 17, 1_000_000, "a1")
    assert classify(_press(17, 1_000_000), None, 600_000) == "new"
    assert classify(_press(17, 1_000_000), stored, 600_000) == "duplicate"
    assert classify(_press(17, 1_000_000 + 599_000), stored, 600_000) == "duplicate"
    assert classify(_press(17, 1_000_000 + 3_600_000), stored, 600_000) == "new"


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    b = Backoff(0.2, 30.0)
    assert b.delay(0, 0.0) == pytest.approx(0.1) and b.delay(0, 0.999) < 0.2
    assert b.delay(3, 1.0) == pytest.approx(1.6)
    assert b.delay(50, 1.0) == pytest.approx(30.0)
    assert b.delay(50, 0.0) == pytest.approx(15.0)


@pytest.mark.parametrize(
    ("name", "label"), [("王秀英", "王"), ("Zhang San", "Zhang"), ("欧阳 娜娜", "欧阳"), ("", "?")]
)
def test_sms_names_only_the_family_name(name: str, label: str) -> None:
    assert elder_label(name) == label


def test_sms_is_short_in_the_doctors_language() -> None:
    summary = AlarmSummary("AB12CD", "王秀英", "和平里3-2-501", AlarmKind.FALL, Severity.CRITICAL)
    zh, en = compose(summary, "zh"), compose(summary, "en")
    assert "王" in zh and "秀英" not in zh and "跌倒" in zh and "AB12CD" in zh
    assert en.startswith("CareHub URGENT") and "may have fallen" in en
    long = AlarmSummary("AB12CD", "王秀英", "x" * 300, AlarmKind.BUTTON, Severity.WARNING)
    assert len(compose(long, "en")) <= MAX_SMS_CHARS
