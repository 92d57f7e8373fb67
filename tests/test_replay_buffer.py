"""The pendant's outage buffer (`firmware_sim.replay.ReplayBuffer`), pure: no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carehub.mqtt_contract import REPLAY_BUFFER_S, Channel, ImuFrame, encode, parse_payload
from firmware_sim.replay import ReplayBuffer

T0 = 1_764_000_000_000


def frame(k: int, hz: float = 50.0, n: int = 50) -> ImuFrame:
    """The k-th one-second frame of a stream."""
    return ImuFrame(v=1, seq=k, t0=T0 + k * 1000, hz=hz, acc=[[0.0, 1.0, 0.0]] * n)


def test_replay_is_in_order_marked_and_empties_the_buffer() -> None:
    buf = ReplayBuffer()
    for k in range(5):
        buf.hold(frame(k))
    out = buf.replay()
    assert [f.seq for f in out] == [0, 1, 2, 3, 4]
    assert all(f.replayed for f in out)
    assert buf.owed == 0 and buf.replay() == []
    wire = parse_payload(Channel.IMU, encode(out[0]))
    assert isinstance(wire, ImuFrame) and wire.replayed is True


def test_keeps_at_least_the_last_replay_buffer_seconds() -> None:
    buf = ReplayBuffer()
    n = 3 * REPLAY_BUFFER_S
    for k in range(n):
        buf.hold(frame(k))
    out = buf.replay()
    assert out[-1].seq == n - 1
    covered_ms = (out[-1].t0 + 1000) - out[0].t0
    assert REPLAY_BUFFER_S * 1000 <= covered_ms < (REPLAY_BUFFER_S + 1) * 1000
    assert buf.dropped == n - len(out)
    assert [f.seq for f in out] == list(range(out[0].seq, n))


def test_frames_sent_just_before_the_link_was_found_down_are_replayed_first() -> None:
    buf = ReplayBuffer(in_doubt_ms=3000)
    for k in range(10):
        buf.sent(frame(k))
    buf.link_lost()  # frames 7, 8, 9 ended within 3 s of the last one sent
    buf.hold(frame(10))
    assert [f.seq for f in buf.replay()] == [7, 8, 9, 10]


def test_a_replay_cut_short_puts_the_rest_back_in_front() -> None:
    buf = ReplayBuffer()
    for k in range(4):
        buf.hold(frame(k))
    out = buf.replay()
    buf.sent(out[0])
    buf.put_back(out[1:])  # the link died after the first one
    buf.hold(frame(4))  # a live frame meanwhile
    buf.link_lost()  # frame 0 was sent but may have gone with the link
    assert [f.seq for f in buf.replay()] == [0, 1, 2, 3, 4]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        ReplayBuffer(keep_s=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["sent", "hold", "lost", "replay"]), max_size=300))
def test_any_sequence_of_events_replays_in_stream_order_within_the_window(
    events: list[str],
) -> None:
    buf = ReplayBuffer(keep_s=10, in_doubt_ms=2000)
    k = 0
    for event in events:
        if event == "sent" and not buf.owed:  # firmware sends only when nothing is owed
            buf.sent(frame(k))
            k += 1
        elif event in ("sent", "hold"):
            buf.hold(frame(k))
            k += 1
        elif event == "lost":
            buf.link_lost()
        else:
            out = buf.replay()
            seqs = [f.seq for f in out]
            assert seqs == sorted(set(seqs)), "in order, no frame twice"
            assert all(f.replayed for f in out)
            if out:
                assert out[-1].t0 - out[0].t0 < 10_000 + 2000
            for f in out:
                buf.sent(f)
