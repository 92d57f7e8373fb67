"""The hub's call core (`gateway.voice.call`) on a fake clock: the microphone opens only
after the announcement and only for an open alarm (or the installer's test call); a call
ends after its ring, connect, length and silence limits, when the path drops and when the
alarm closes."""

from __future__ import annotations

import pytest

from carehub.api_contract import CallDirection, CallEndReason
from carehub.clock import FakeClock
from gateway.voice.call import MOVES, Call, CallLimits, Phase, mic_allowed

LIMITS = CallLimits(
    ring_s=30, connect_s=10, max_s=600, silence_s=60, announcement_s=1.2, network_lost_s=5
)
LOUD, QUIET = 0.2, 0.0


def offered(clock: FakeClock, test: bool = False) -> Call:
    return Call("c1", "a1", CallDirection.FROM_HOME, LIMITS, clock.monotonic(), test)


def talking(clock: FakeClock) -> Call:
    call = offered(clock)
    call.answered(clock.monotonic())
    assert call.connected(clock.monotonic())
    clock.advance(LIMITS.announcement_s)
    assert call.tick(clock.monotonic(), alarm_open=True) is None
    assert call.phase is Phase.TALKING
    return call


def keep_alive(call: Call, clock: FakeClock, seconds: float, level: float = LOUD) -> None:
    """`seconds` of frames from the centre at `level`, one tick a second."""
    for _ in range(int(seconds)):
        clock.advance(1)
        call.heard(level, clock.monotonic(), from_centre=True)
        assert call.tick(clock.monotonic(), alarm_open=True) is None


def test_the_microphone_opens_only_after_the_whole_announcement() -> None:
    clock = FakeClock()
    call = offered(clock)
    assert not call.mic_open
    call.answered(clock.monotonic())
    assert call.phase is Phase.CONNECTING and not call.mic_open
    call.connected(clock.monotonic())
    assert call.phase is Phase.ANNOUNCING and not call.mic_open
    clock.advance(LIMITS.announcement_s - 0.05)
    call.tick(clock.monotonic(), alarm_open=True)
    assert not call.mic_open
    clock.advance(0.05)
    call.tick(clock.monotonic(), alarm_open=True)
    assert call.mic_open


def test_an_answer_cannot_skip_the_announcement() -> None:
    """No path to TALKING but through ANNOUNCING (the elder always hears the tone)."""
    sources = [p for p, to in MOVES.items() if Phase.TALKING in to]
    assert sources == [Phase.ANNOUNCING]
    clock = FakeClock()
    call = offered(clock)
    for _ in range(3):
        clock.advance(1)
        call.tick(clock.monotonic(), alarm_open=True)
    assert call.phase is Phase.OFFERING and not call.mic_open


@pytest.mark.parametrize(
    ("alarm_open", "test_call", "allowed"),
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_privacy_rule(alarm_open: bool, test_call: bool, allowed: bool) -> None:
    assert mic_allowed(alarm_open, test_call) is allowed


def test_a_closed_alarm_ends_the_call_and_closes_the_microphone() -> None:
    clock = FakeClock()
    call = talking(clock)
    clock.advance(1)
    assert call.tick(clock.monotonic(), alarm_open=False) is CallEndReason.ALARM_CLOSED
    assert call.ended and not call.mic_open


def test_the_installers_test_call_needs_no_open_alarm() -> None:
    clock = FakeClock()
    call = offered(clock, test=True)
    call.answered(clock.monotonic())
    call.connected(clock.monotonic())
    clock.advance(LIMITS.announcement_s)
    assert call.tick(clock.monotonic(), alarm_open=False) is None
    assert call.mic_open


def test_an_unanswered_offer_ends_after_the_ring_limit() -> None:
    clock = FakeClock()
    call = offered(clock)
    clock.advance(LIMITS.ring_s - 1)
    assert call.tick(clock.monotonic(), alarm_open=True) is None
    clock.advance(1)
    assert call.tick(clock.monotonic(), alarm_open=True) is CallEndReason.NO_ANSWER


def test_an_answered_call_without_a_media_path_ends_after_the_connect_limit() -> None:
    clock = FakeClock()
    call = offered(clock)
    clock.advance(5)
    call.answered(clock.monotonic())
    clock.advance(LIMITS.connect_s - 1)
    assert call.tick(clock.monotonic(), alarm_open=True) is None
    clock.advance(1)
    assert call.tick(clock.monotonic(), alarm_open=True) is CallEndReason.NO_CONNECTION


def test_a_call_to_the_home_starts_connecting() -> None:
    clock = FakeClock()
    call = Call("c2", "a1", CallDirection.TO_HOME, LIMITS, clock.monotonic())
    assert call.phase is Phase.CONNECTING
    clock.advance(LIMITS.connect_s)
    assert call.tick(clock.monotonic(), alarm_open=True) is CallEndReason.NO_CONNECTION


def test_a_call_ends_at_its_maximum_length() -> None:
    clock = FakeClock()
    call = talking(clock)
    assert call.connected_at_s is not None
    keep_alive(call, clock, LIMITS.max_s - LIMITS.announcement_s - 1)
    clock.advance(call.connected_at_s + LIMITS.max_s - clock.monotonic() - 0.01)
    call.heard(LOUD, clock.monotonic(), from_centre=True)
    assert call.tick(clock.monotonic(), alarm_open=True) is None
    clock.advance(0.01)
    assert call.tick(clock.monotonic(), alarm_open=True) is CallEndReason.MAX_LENGTH


def test_a_long_silence_ends_the_call_but_sound_either_way_keeps_it() -> None:
    clock = FakeClock()
    call = talking(clock)
    keep_alive(call, clock, LIMITS.silence_s - 5, QUIET)
    call.heard(LOUD, clock.monotonic(), from_centre=False)  # the elder speaks
    keep_alive(call, clock, LIMITS.silence_s - 1, QUIET)
    clock.advance(1)
    call.heard(QUIET, clock.monotonic(), from_centre=True)
    assert call.tick(clock.monotonic(), alarm_open=True) is CallEndReason.SILENCE


def test_no_packets_from_the_centre_mean_the_path_dropped() -> None:
    clock = FakeClock()
    call = talking(clock)
    call.heard(QUIET, clock.monotonic(), from_centre=True)  # silence still proves the path
    clock.advance(LIMITS.network_lost_s - 0.1)
    assert call.tick(clock.monotonic(), alarm_open=True) is None
    clock.advance(0.1)
    assert call.tick(clock.monotonic(), alarm_open=True) is CallEndReason.NETWORK_LOST


def test_an_ended_call_keeps_its_first_reason() -> None:
    clock = FakeClock()
    call = talking(clock)
    assert call.end(CallEndReason.HANGUP_CONSOLE, clock.monotonic())
    assert not call.end(CallEndReason.SILENCE, clock.monotonic())
    clock.advance(1000)
    assert call.tick(clock.monotonic(), alarm_open=False) is None
    assert call.end_reason is CallEndReason.HANGUP_CONSOLE and not call.mic_open
