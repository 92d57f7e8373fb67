"""The small pure cores of dispatch: SMS segments, reply codes, accept links, send policy, KPIs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from carehub.clock import FakeClock
from server.accept_link import (
    LINK_TTL_MS,
    IssuedLink,
    LinkVerdict,
    check_link,
    new_token,
    token_hash,
)
from server.kpi import AlarmTimes, team_kpis
from server.reply_codes import (
    MAX_CODE,
    CodedReply,
    CodeUse,
    Keyword,
    ReplyAction,
    next_code,
    parse_reply,
)
from server.send_policy import MIN_GAP_OVER_LIMIT_MS, WINDOW_MS, Sent, Waiting, plan_texts
from server.sms_segments import segments

# ---------------------------------------------------------------- segments


def test_gsm7_and_ucs2_segment_limits() -> None:
    assert segments("a" * 160).count == 1 and segments("a" * 161).count == 2
    assert segments("a" * 306).count == 2 and segments("a" * 307).count == 3
    assert segments("€" * 80).units == 160 and segments("€" * 81).count == 2
    assert segments("急" * 70) == segments("急" * 70) and segments("急" * 70).count == 1
    assert segments("急" * 71).count == 2 and segments("急" * 134).count == 2
    assert segments("急" * 135).count == 3
    assert segments("a" * 69 + "急").encoding == "UCS-2"
    assert segments("😀" * 35).units == 70 and segments("😀" * 36).count == 2


# ---------------------------------------------------------------- reply codes


def test_reply_codes_are_read_the_way_phones_type_them() -> None:
    assert parse_reply("1a") == CodedReply(1, ReplyAction.ACCEPT)
    assert parse_reply(" 12 D ") == CodedReply(12, ReplyAction.DECLINE)
    assert parse_reply("１ａ") == CodedReply(1, ReplyAction.ACCEPT)  # full-width keyboard
    assert parse_reply("3r.") == CodedReply(3, ReplyAction.ARRIVED)
    assert parse_reply("STOP") is Keyword.STOP and parse_reply("退订") is Keyword.STOP
    assert parse_reply("Start") is Keyword.START
    for junk in ("", "yes", "0a", "1", "a1", "1x", "1000a", "ok 1a"):
        assert parse_reply(junk) is None, junk


@given(st.text(max_size=200))
def test_any_reply_is_understood_or_refused_never_an_error(text: str) -> None:
    parse_reply(text)


HOLD = 12 * 3_600_000


def test_codes_are_the_smallest_free_number() -> None:
    def open_(*codes: int) -> list[CodeUse]:
        return [CodeUse(c, True, 0) for c in codes]

    assert next_code([], 0, HOLD) == 1
    assert next_code(open_(1, 2, 4), 0, HOLD) == 3
    assert next_code(open_(2), 0, HOLD) == 1


def test_a_code_stays_with_its_closed_alarm_for_the_hold_time() -> None:
    """Code 2 meant one alarm until 12:32:11; a late "2a" must not land on another alarm
    that got code 2 at 12:32:12."""
    clock = FakeClock()
    closed_at = clock.now_ms()
    uses = [CodeUse(1, True, closed_at - 60_000), CodeUse(2, False, closed_at)]
    clock.advance(1)
    assert next_code(uses, clock.now_ms(), HOLD) == 3
    clock.advance(HOLD / 1000 - 2)
    assert next_code(uses, clock.now_ms(), HOLD) == 3  # still held, a second before the end
    clock.advance(1)
    assert next_code(uses, clock.now_ms(), HOLD) == 2  # free again
    assert next_code(uses, clock.now_ms(), 2 * HOLD) == 3  # a longer hold, configured


def test_when_every_code_is_held_the_longest_released_is_reused_never_an_open_one() -> None:
    uses = [CodeUse(c, c % 2 == 0, 1_000 + c) for c in range(1, MAX_CODE + 1)]
    assert next_code(uses, 2_000, HOLD) == 1  # closed, released longest ago
    assert next_code([CodeUse(c, True, 0) for c in range(1, MAX_CODE + 1)], 0, HOLD) == 1000


# ---------------------------------------------------------------- accept links


def test_a_link_opens_its_own_alarm_until_it_expires() -> None:
    token = new_token()
    assert len(token) == 22
    issued = IssuedLink("alarm-1", "dr-li", token_hash(token), 1_000 + LINK_TTL_MS)
    assert check_link(issued, "alarm-1", token, 1_000) is LinkVerdict.OK
    assert check_link(issued, "alarm-2", token, 1_000) is LinkVerdict.UNKNOWN
    assert check_link(issued, "alarm-1", new_token(), 1_000) is LinkVerdict.UNKNOWN
    assert check_link(None, "alarm-1", token, 1_000) is LinkVerdict.UNKNOWN
    assert check_link(issued, "alarm-1", token, 1_000 + LINK_TTL_MS) is LinkVerdict.EXPIRED


# ---------------------------------------------------------------- send policy


def waiting(n: int, number: str = "+8613800000001") -> list[Waiting]:
    return [Waiting(f"n{i}", number, f"alarm {i}") for i in range(n)]


def test_under_the_limit_each_text_goes_alone() -> None:
    plan = plan_texts(waiting(3), [], 0)
    assert [o.keys for o in plan.send] == [("n0",), ("n1",), ("n2",)]


def test_a_burst_is_merged_so_the_number_stays_within_its_limit() -> None:
    plan = plan_texts(waiting(10), [], 0)
    assert len(plan.send) == 4
    assert plan.send[-1].keys == tuple(f"n{i}" for i in range(3, 10))
    assert "alarm 9" in plan.send[-1].body
    carried = [k for o in plan.send for k in o.keys]
    assert sorted(carried) == sorted(w.key for w in waiting(10))


def test_over_the_limit_one_merged_message_every_few_seconds() -> None:
    number = "+8613800000001"
    history = [Sent(number, f"old {i}", 1000 * i) for i in range(4)]
    held = plan_texts(waiting(2), history, 10_000)
    assert held.send == [] and held.held_until_ms[number] == 3000 + MIN_GAP_OVER_LIMIT_MS
    later = plan_texts(waiting(2), history, 3000 + MIN_GAP_OVER_LIMIT_MS)
    assert [o.keys for o in later.send] == [("n0", "n1")]
    fresh = plan_texts(waiting(1), history, WINDOW_MS + 3000)
    assert [o.keys for o in fresh.send] == [("n0",)]


def test_never_the_same_text_twice_to_one_number() -> None:
    number = "+8613800000001"
    plan = plan_texts(
        [Waiting("a", number, "hello"), Waiting("b", number, "hello")],
        [Sent(number, "hello", 0)],
        WINDOW_MS,
    )
    assert [o.body for o in plan.send] == ["hello (2)", "hello (3)"]


# ---------------------------------------------------------------- KPIs


def test_kpis_count_misses_and_leave_out_cancelled_alarms() -> None:
    rows = [
        AlarmTimes("east", 0, 1_000, 30_000, 30_000 + 15 * 60_000),  # in 60 s, in circle
        AlarmTimes("east", 0, 1_000, 120_000, 120_000 + 25 * 60_000),  # in 180 s, late
        AlarmTimes("east", 0, 1_000, None, None),  # never accepted: a miss
        AlarmTimes("east", 0, None, None, None, cancelled_before_accept=True),
        AlarmTimes("west", 0, 2_000, 50_000, None),
    ]
    east, west = team_kpis(rows)
    assert east.team_id == "east" and east.alarms == 3
    assert east.accepted_60s == 1 / 3 and east.accepted_180s == 2 / 3
    assert east.arrived_in_circle == 1 / 2
    assert east.first_notification_p50_s == 1.0 and east.accept_p50_s == 75.0
    assert west.arrived_in_circle == 0.0
