"""The console's pure parts for issue 23's operator screen: one incident per elder (the
window rule on a fake clock), the queue's incidents and its next alarm, the checklist
recorded with the outcome, and KPI plots against their targets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from carehub.clock import FakeClock
from server.console.checklists import DEFAULTS, ChecklistRecord, at_outcome, decode, encode
from server.console.incidents import group_incidents, since_first_ms
from server.console.live_queue import QueueRow, next_alarm, queue_incidents
from server.console.plots import Target, series_svg
from server.console.timeline_text import checklist_text

WINDOW_MS = 5 * 60_000


@dataclass(frozen=True)
class Arrived:
    alarm_id: str
    elder_id: str
    received_at_ms: int
    is_test: bool = False


def test_a_press_a_fall_and_vitals_minutes_apart_are_one_incident() -> None:
    clock = FakeClock()
    start = clock.now_ms()
    press = Arrived("press", "wang", clock.now_ms())
    clock.advance(60)
    fall = Arrived("fall", "wang", clock.now_ms())
    other = Arrived("other-elder", "li", clock.now_ms())
    clock.advance(240)  # 4 min after the fall, 5 after the press: within the window of the fall
    vitals = Arrived("vitals", "wang", clock.now_ms())
    clock.advance(301)  # more than the window after the last one: a new incident
    later = Arrived("later", "wang", clock.now_ms())
    test = Arrived("selftest", "wang", vitals.received_at_ms, is_test=True)

    got = group_incidents([later, vitals, test, other, fall, press], WINDOW_MS)

    assert [[a.alarm_id for a in g] for g in got] == [
        ["press", "fall", "vitals"],
        ["other-elder"],
        ["selftest"],  # a self-test never joins real alarms
        ["later"],
    ]
    assert since_first_ms(got[0], clock.now_ms()) == clock.now_ms() - start
    assert since_first_ms(got[0], start - 1) == 0


def test_the_window_is_inclusive_and_configurable() -> None:
    clock = FakeClock()
    first = Arrived("a", "wang", clock.now_ms())
    clock.advance(30)
    second = Arrived("b", "wang", clock.now_ms())
    assert len(group_incidents([first, second], 30_000)) == 1
    assert len(group_incidents([first, second], 29_999)) == 2


def row(
    alarm_id: str, elder: str, at_ms: int, severity: str = "critical", **kw: object
) -> QueueRow:
    return QueueRow(
        alarm_id=alarm_id,
        elder_id=elder,
        elder_name=elder,
        short_address="",
        team_id="team-a",
        kind="button",
        severity=severity,
        state="dispatched",
        received_at_ms=at_ms,
        **kw,  # type: ignore[arg-type]
    )


def test_the_queue_orders_incidents_by_their_most_urgent_alarm() -> None:
    rows = [
        row("li-warn", "li", 0, "warning"),
        row("wang-warn", "wang", 10, "warning"),
        row("wang-crit", "wang", 20),
        row("zhao", "zhao", 5),
    ]
    got = queue_incidents(rows, WINDOW_MS)
    assert [[r.alarm_id for r in i.rows] for i in got] == [
        ["zhao"],
        ["wang-crit", "wang-warn"],  # critical first within the incident too
        ["li-warn"],
    ]
    assert got[1].first_at_ms == 10


def test_next_alarm_is_the_most_urgent_nobody_has_and_never_the_one_on_screen() -> None:
    rows = [row("a", "x", 0, claimed_by="disp"), row("b", "y", 10), row("c", "z", 20)]
    assert next_alarm(rows) == "b"
    assert next_alarm(rows, after="b") == "c"
    assert next_alarm([rows[0]]) == "a"  # all claimed: the most urgent anyway
    assert next_alarm([rows[0]], after="a") is None


def test_the_checklist_at_the_outcome_round_trips_and_reads_in_words() -> None:
    record = at_outcome(DEFAULTS["fall"], ["consider_ambulance", "call_elder", "call_elder"])
    assert record == ChecklistRecord(
        ("call_elder", "consider_ambulance"), ("ask_injury", "call_family", "responder_on_way")
    )
    assert decode(encode(record)) == record
    assert (
        len(encode(at_outcome(DEFAULTS["fall"], []) or record)) <= 400
    )  # fits alarm_events.detail
    assert at_outcome(DEFAULTS["welfare"], ["x"]) is None  # no list: no record
    assert decode("garbage") == ChecklistRecord((), ())
    words = {"checklist.done": "done", "checklist.missed": "not done"}
    text = checklist_text(lambda k: words.get(k, k), ChecklistRecord(("call_elder",), ()))
    assert text == "done: check.call_elder"


def test_kpi_bars_are_green_or_red_against_the_target_line() -> None:
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    shares = str(series_svg(days, [0.99, 0.5, None], "%", 100, target=Target(97.5)))
    assert shares.count('class="bar met"') == 1 and shares.count('class="bar missed"') == 1
    assert 'class="target"' in shares and "target 97.5 %" in shares
    times = str(series_svg(days, [30.0, 90.0, 45.0], "s", target=Target(60, False)))
    assert times.count('class="bar met"') == 2 and times.count('class="bar missed"') == 1
    sizes = [int(n) for n in re.findall(r'font-size="(\d+)"', times + shares)]
    assert sizes and min(sizes) >= 12  # chart labels at least 12 px
    assert 'aria-label="' in times
