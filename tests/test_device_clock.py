"""DeviceClock: a device's timestamps mapped onto the hub's clock, whatever its own clock says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.device_clock import ClockChange, DeviceClock

NOW = 1_764_000_000_000
MIN = 60_000
HOUR = 3_600_000


def test_a_right_clock_is_trusted_as_is() -> None:
    c = DeviceClock()
    for dt in (-MIN, -5_000, 0, 5_000, MIN):
        s = c.stamp(NOW + dt, NOW)
        assert (s.hub_ms, s.drop, s.change, s.offset_ms) == (NOW + dt, False, None, 0)


def test_one_far_future_frame_maps_to_now_and_the_next_normal_one_maps_back() -> None:
    c = DeviceClock()
    s = c.stamp(NOW + 10 * 365 * 86_400_000, NOW)
    assert s.hub_ms == NOW and s.change is ClockChange.WRONG
    s = c.stamp(NOW + 1000, NOW + 1000)
    assert s.hub_ms == NOW + 1000 and s.change is ClockChange.OK and s.offset_ms == 0


def test_a_clock_a_day_behind_is_shifted_and_reported_once() -> None:
    c = DeviceClock()
    day = 86_400_000
    changes = [c.stamp(NOW - day + k * 1000, NOW + k * 1000).change for k in range(100)]
    assert changes[0] is ClockChange.WRONG and changes[1:] == [None] * 99
    s = c.stamp(NOW - day + 100_000, NOW + 100_000)
    assert s.hub_ms == NOW + 100_000 and s.offset_ms == day


def test_the_offset_is_re_estimated_when_the_device_clock_steps_again() -> None:
    c = DeviceClock()
    c.stamp(NOW + HOUR, NOW)  # an hour ahead: offset -1 h
    assert c.stamp(NOW + HOUR + 1000, NOW + 1000).hub_ms == NOW + 1000
    s = c.stamp(NOW + 5 * HOUR, NOW + 2000)  # steps 4 h further: mapped to now again
    assert s.hub_ms == NOW + 2000 and s.change is None  # still wrong: not logged again
    assert c.stamp(NOW + 5 * HOUR + 1000, NOW + 3000).hub_ms == NOW + 3000


def test_replayed_frames_keep_their_age_and_are_dropped_past_the_limit() -> None:
    c = DeviceClock()
    s = c.stamp(NOW - 30 * MIN, NOW, replayed=True)
    assert (s.hub_ms, s.drop, s.change) == (NOW - 30 * MIN, False, None)
    old = [c.stamp(NOW - 2 * HOUR + k, NOW, replayed=True) for k in range(3)]
    assert all(s.drop for s in old)
    assert [s.change for s in old] == [ClockChange.REPLAY_TOO_OLD, None, None]
    assert not c.stamp(NOW - 10_000, NOW, replayed=True).drop
    assert c.stamp(NOW - 2 * HOUR, NOW, replayed=True).change is ClockChange.REPLAY_TOO_OLD


def test_replayed_frames_use_the_offset_of_a_wrong_clock() -> None:
    c = DeviceClock()
    c.stamp(NOW - 5 * HOUR, NOW)  # live: five hours behind
    s = c.stamp(NOW - 5 * HOUR - 90_000, NOW, replayed=True)  # buffered 90 s before
    assert s.hub_ms == NOW - 90_000 and not s.drop


def test_a_replayed_frame_from_the_future_is_treated_as_live() -> None:
    c = DeviceClock()
    s = c.stamp(NOW + HOUR, NOW, replayed=True)
    assert s.hub_ms == NOW and s.change is ClockChange.WRONG


@given(
    st.lists(
        st.tuples(st.integers(0, 10**14 - 1), st.integers(0, 5_000), st.booleans()),
        min_size=1,
        max_size=50,
    )
)
def test_no_timestamp_is_ever_mapped_past_the_hubs_clock_plus_tolerance(
    stamps: list[tuple[int, int, bool]],
) -> None:
    c = DeviceClock()
    now = NOW
    for device_ms, step, replayed in stamps:
        now += step
        s = c.stamp(device_ms, now, replayed)
        assert s.hub_ms <= now + c.ahead_ms
        if not s.drop:
            assert s.hub_ms >= now - (c.replay_max_age_ms if replayed else c.behind_ms)


@given(st.lists(st.integers(0, 10**14 - 1), max_size=20), st.integers(0, 10))
def test_transitions_alternate_and_a_right_clock_ends_trusted(
    hostile: list[int], good: int
) -> None:
    c = DeviceClock()
    changes = [c.stamp(t, NOW).change for t in hostile]
    changes += [c.stamp(NOW + k, NOW + k).change for k in range(good + 1)]
    said = [ch for ch in changes if ch is not None]
    assert all(a is not b for a, b in zip(said, said[1:], strict=False))
    assert not c.wrong and c.offset_ms == 0


def test_a_timestamp_that_is_not_a_number_is_dropped_and_leaves_the_offset_alone() -> None:
    c = DeviceClock()
    for bad in (float("nan"), float("inf")):
        s = c.stamp(bad, NOW)  # type: ignore[arg-type]
        assert s.drop and s.change is ClockChange.NOT_A_TIME
    assert c.stamp(NOW + 1000, NOW) == c.stamp(NOW + 1000, NOW)
    assert c.offset_ms == 0 and not c.wrong


def test_only_the_timestamp_the_offset_is_guessed_from_is_marked_guessed() -> None:
    c = DeviceClock(ahead_ms=60_000, behind_ms=60_000)
    now = 1_764_000_000_000
    assert not c.stamp(now, now).guessed
    first = c.stamp(now + 10**12, now + 1000)  # a clock far off: mapped to the hub's now
    assert first.guessed and first.hub_ms == now + 1000
    assert not c.stamp(now + 10**12 + 1000, now + 2000).guessed  # then mapped by the offset
