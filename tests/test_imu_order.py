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
    o = FrameOrderer()
    out: list[Frame] = []
    for i in order:
        out += o.push(f[i])
    starts = [x.t0_ms for x in out]
    assert starts == sorted(set(starts))
    assert len(o._held) <= o.max_held + 1
