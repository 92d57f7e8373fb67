"""FrameOrderer: frames reach the detector in stream order, once, whatever the network did."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gateway.imu_order import Frame, FrameOrderer


def frames(n: int, hz: float = 50.0, per: int = 50) -> list[Frame]:
    return [Frame(1000.0 + i * per * 1000 / hz, hz, np.zeros((per, 3))) for i in range(n)]


def test_in_order_frames_pass_straight_through() -> None:
    o = FrameOrderer()
    for f in frames(5):
        assert o.push(f) == [f]


def test_a_swapped_pair_is_put_back_in_order() -> None:
    f = frames(3)
    o = FrameOrderer()
    assert o.push(f[0]) == [f[0]]
    assert o.push(f[2]) == []  # leaves a hole: held
    assert o.push(f[1]) == [f[1], f[2]]


def test_a_lost_frame_becomes_a_gap_after_the_hold() -> None:
    f = frames(6)
    o = FrameOrderer(hold_ms=2500)
    o.push(f[0])
    assert o.push(f[2]) == []  # 2 s of stream time after the hole: wait
    assert o.push(f[3]) == [f[2], f[3]]  # 3 s: f[1] is given up, the hole is a gap
    assert o.push(f[1]) == []  # too late now: dropped
    assert o.dropped == 1


def test_duplicates_are_dropped() -> None:
    f = frames(2)
    o = FrameOrderer()
    assert o.push(f[0]) == [f[0]] and o.push(f[0]) == []
    assert o.push(f[1]) == [f[1]] and o.push(f[1]) == []


@given(st.lists(st.integers(0, 19), min_size=1, max_size=60))
def test_output_is_strictly_increasing_and_never_repeats(order: list[int]) -> None:
    f = frames(20)
    o = FrameOrderer(rewind_ms=30_000)  # the whole stream is within the reorder range
    out: list[Frame] = []
    for i in order:
        out += o.push(f[i])
    starts = [x.t0_ms for x in out]
    assert starts == sorted(set(starts))
    assert len(o._held) <= o.max_held + 1


def frame_at(t0_ms: float) -> Frame:
    return Frame(t0_ms, 50.0, np.zeros((50, 3)))


def test_one_far_future_frame_is_kept_aside_and_the_stream_goes_on() -> None:
    o = FrameOrderer()
    assert o.push(frame_at(0)) and o.restarted is None
    assert o.push(frame_at(10**12)) == [] and o.restarted is None  # a stray: not released
    back = frame_at(1000)
    assert o.push(back) == [back] and o.restarted is None  # the stream was never left
    assert o.push(frame_at(2000)) == [frame_at(2000)] and o.restarted is None


def test_one_stale_frame_from_far_back_does_not_restart_the_stream() -> None:
    """The chaos bench's missed falls: a hostile frame mapped 30 s back restarted the
    detector between an impact and its scoring."""
    o = FrameOrderer()
    for k in range(40):
        o.push(frame_at(k * 1000))
    assert o.push(frame_at(9000)) == [] and o.restarted is None
    assert o.push(frame_at(40_000)) == [frame_at(40_000)] and o.restarted is None


def test_a_clock_that_really_went_back_is_followed_from_its_second_frame() -> None:
    o = FrameOrderer()
    for k in range(40):
        o.push(frame_at(k * 1000))
    assert o.push(frame_at(5000)) == [] and o.restarted is None
    assert o.push(frame_at(6000)) == [frame_at(5000), frame_at(6000)]
    assert o.rewound and o.restarted and "back" in o.restarted


def test_two_stale_copies_do_not_make_a_timeline_while_the_stream_goes_on() -> None:
    """The hostile bench sends old copies of a pendant's frames (3 s apart, a minute old)."""
    o = FrameOrderer()
    for k in range(80):
        o.push(frame_at(k * 1000))
    assert o.push(frame_at(17_000)) == []  # a stray
    assert o.push(frame_at(80_000)) == [frame_at(80_000)]  # the stream goes on: stray gone
    assert o.push(frame_at(18_000)) == [] and o.restarted is None  # would have continued it
    assert o.push(frame_at(21_000)) == [] and o.restarted is None  # 2 s of "lost frames"
    assert o.push(frame_at(81_000)) == [frame_at(81_000)] and o.restarted is None


def test_a_frame_straddling_the_expected_time_is_a_stray() -> None:
    o = FrameOrderer()
    for k in range(5):
        o.push(frame_at(k * 1000))
    assert o.push(frame_at(4500)) == [] and o.restarted is None  # off the grid: kept aside
    assert o.push(frame_at(5000)) == [frame_at(5000)]  # the real stream goes on
    assert o.push(frame_at(6000)) == [frame_at(6000)] and o.restarted is None
    assert o.push(frame_at(6500), replayed=True) == [frame_at(6500)]  # a replay may overlap


def test_a_late_straggler_within_the_rewind_bound_is_dropped_not_a_restart() -> None:
    o = FrameOrderer(rewind_ms=10_000)
    for k in range(12):
        o.push(frame_at(k * 1000))
    assert o.push(frame_at(5000)) == [] and o.restarted is None and o.dropped == 1


def test_replayed_frames_never_move_the_stream_back() -> None:
    o = FrameOrderer()
    for k in range(30):
        o.push(frame_at(k * 1000))
    assert o.push(frame_at(0), replayed=True) == [] and o.restarted is None
    assert o.push(frame_at(30_000), replayed=True) == [frame_at(30_000)]


def test_a_forward_jump_releases_what_was_held_first() -> None:
    o = FrameOrderer()
    o.push(frame_at(0))
    assert o.push(frame_at(2000)) == []  # held: frame 1000 is missing
    assert o.push(frame_at(500_000)) == []  # a stray until a second frame continues it
    out = o.push(frame_at(501_000))
    assert [f.t0_ms for f in out] == [2000, 500_000, 501_000] and o.restarted


def test_non_finite_times_are_dropped() -> None:
    o = FrameOrderer()
    assert o.push(frame_at(float("nan"))) == [] and o.push(Frame(0.0, 0.0, np.zeros((5, 3)))) == []
    assert o.push(frame_at(0)) == [frame_at(0)]


@given(
    st.lists(
        st.one_of(
            st.integers(0, 40).map(lambda k: k * 1000.0),  # the stream, any order, repeats
            st.floats(-1e13, 1e13, allow_nan=False),  # a clock anywhere
        ),
        max_size=60,
    )
)
def test_between_restarts_the_output_is_ordered_and_good_frames_always_get_through(
    starts: list[float],
) -> None:
    o = FrameOrderer()
    segment: list[float] = []
    for t in starts:
        out = o.push(frame_at(t))
        if o.restarted is not None:
            segment = []
        segment += [f.t0_ms for f in out]
        assert segment == sorted(set(segment))
    now = 2e13  # then a normal stream resumes (on the hub's clock): heard from its 2nd frame
    heard: list[Frame] = []
    for k in range(3):
        heard += o.push(frame_at(now + k * 1000))
    assert [f for f in heard if f.t0_ms >= now] == [frame_at(now + k * 1000) for k in range(3)]
