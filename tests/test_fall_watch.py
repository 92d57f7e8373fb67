"""FallWatch: the hub's per-pendant frame ordering + detection, including streams that stop."""

from __future__ import annotations

import numpy as np

from carehub.mqtt_contract import ImuFrame
from firmware_sim.pendant import still_standing, synthetic_fall
from gateway.fall_watch import FallWatch


def frames(acc: np.ndarray, t0_ms: int = 1_000_000, hz: int = 50) -> list[ImuFrame]:
    return [
        ImuFrame(v=1, seq=i, t0=t0_ms + i * 1000, hz=hz, acc=acc[i * hz : (i + 1) * hz].tolist())
        for i in range(len(acc) // hz)
    ]


def signal(lying_s: float) -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.vstack([still_standing(100, rng), synthetic_fall(50, rng, lying_s=lying_s)])


def test_a_fall_is_decided_while_streaming_in_shuffled_order() -> None:
    watch = FallWatch()
    fs = frames(signal(lying_s=20))
    order = list(range(len(fs)))
    for i in range(1, len(order) - 1, 3):  # swap neighbours: late frames
        order[i], order[i + 1] = order[i + 1], order[i]
    events = []
    for k, i in enumerate(order):
        events += watch.push("pend-1", fs[i], now_ms=k * 1000)
        events += watch.push("pend-1", fs[i], now_ms=k * 1000)  # and duplicates
    assert len(events) == 1 and events[0].peak_g > 3


def test_a_pendant_that_stops_after_the_impact_is_decided_when_silent() -> None:
    watch = FallWatch()
    events = []
    last_ms = 0
    for k, f in enumerate(frames(signal(lying_s=4))):
        last_ms = k * 1000
        events += watch.push("pend-1", f, now_ms=last_ms)
    assert events == []  # still confirming that the elder stays down
    assert watch.silent(now_ms=last_ms + 4000, after_ms=5000) == []  # not silent long enough
    decided = watch.silent(now_ms=last_ms + 6000, after_ms=5000)
    assert [d for d, _ in decided] == ["pend-1"]
    assert watch.silent(now_ms=last_ms + 20_000, after_ms=5000) == []  # decided once


def test_walking_on_raises_nothing_and_a_new_sensitivity_restarts_detectors() -> None:
    watch = FallWatch(sensitivity=0.5)
    t = np.arange(0, 20, 1 / 50)
    walk = np.stack(
        [0.1 * np.sin(2 * np.pi * 2 * t), 1 + 0.4 * np.sin(2 * np.pi * 2 * t), 0 * t], axis=1
    )
    assert [e for f in frames(walk) for e in watch.push("pend-1", f, f.t0)] == []
    watch.set_sensitivity(0.9)
    assert watch.sensitivity == 0.9


def test_box_mean_matches_scipy_uniform_filter() -> None:
    from scipy.ndimage import uniform_filter1d

    from edge.fall_detection import box_mean

    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 200):
        a = rng.normal(size=(n, 3))
        for k in (1, 2, 3, 4, 8):
            expected = uniform_filter1d(a, size=k, axis=0, mode="nearest")
            assert np.allclose(box_mean(a, k), expected), (n, k)


FAR_MS = 10 * 365 * 24 * 3600 * 1000  # a hostile clock, ten years off (bench.hostile)


def test_hostile_far_clock_frames_right_after_an_impact_do_not_lose_the_fall() -> None:
    """The three falls the hostile chaos bench missed near its broker restart: a copy of a
    real frame with a far-future clock (re-stamped to now), then a stale hostile frame whose
    t0 the new offset maps 30 s back, restarted the detector before the impact was scored."""
    watch = FallWatch()
    fs = frames(signal(lying_s=15))
    impact_frame = 2 + 12  # still_standing(100) then 12 s upright in synthetic_fall
    events = []
    for k, f in enumerate(fs):
        now = f.t0 + 1000
        events += watch.push("pend-1", f, now)
        if k == impact_frame:
            copy = f.model_copy(update={"t0": now + FAR_MS})
            stale = f.model_copy(update={"t0": now - 30_000 + FAR_MS})
            events += watch.push("pend-1", copy, now)
            events += watch.push("pend-1", stale, now)
    assert len(events) == 1 and events[0].peak_g > 3
    assert not any("restarted" in n.text for n in watch.take_notices())


def test_a_restarted_hub_detects_a_fall_from_the_frames_the_broker_queued() -> None:
    """The hub was SIGKILLed 1.2 s of stream before an impact: its fresh detector hears the
    pendant from the broker's queue (a burst, late) and must still confirm the fall."""
    rng = np.random.default_rng(1)
    acc = synthetic_fall(50, rng, lying_s=12, upright_s=12)  # impact peak at ~12.44 s
    queued = acc[int(11.24 * 50) :]
    fs = frames(queued, t0_ms=1_000_000)
    watch = FallWatch()
    restart_ms = 1_000_000 + 3000  # the hub is back 3 s after the first queued frame
    events = [e for f in fs for e in watch.push("pend-1", f, max(restart_ms, f.t0 + 1000))]
    assert len(events) == 1 and events[0].peak_g > 3


def test_a_stale_copy_restamped_to_now_cannot_overwrite_the_impact() -> None:
    """A hostile copy of an old (upright) frame with a far-off clock is re-stamped to the
    hub's now, which lies inside the frame being streamed: it must not replace the impact."""
    watch = FallWatch()
    fs = frames(signal(lying_s=15))
    impact_frame = 2 + 12  # the peak is 0.44 s into this frame
    events = []
    for k, f in enumerate(fs):
        if k == impact_frame:
            now = f.t0 - 500  # the copy arrives while the impact's frame is being sampled
            events += watch.push("pend-1", fs[0].model_copy(update={"t0": now + FAR_MS}), now)
        events += watch.push("pend-1", f, f.t0 + 1000)
    assert len(events) == 1 and events[0].peak_g > 3


def test_a_stale_copy_whose_time_is_guessed_never_reaches_the_detector() -> None:
    """The hostile bench's last misses: a copy of a frame from half a minute ago (the wearer
    lying after an earlier fall), its clock ten years off, is re-stamped to the hub's now,
    just where the next frame belongs: its posture before the impact hid the fall."""
    watch = FallWatch()
    fs = frames(signal(lying_s=15))
    lying = fs[-1]
    events = []
    for k, f in enumerate(fs):
        if k in (12, 13):  # the second and a half before the impact
            now = f.t0 - 150
            events += watch.push("pend-1", lying.model_copy(update={"t0": now + FAR_MS}), now)
        events += watch.push("pend-1", f, f.t0 + 1000)
    assert len(events) == 1 and events[0].peak_g > 3


def test_an_impact_the_detector_dismisses_is_counted_as_a_near_fall() -> None:
    rng = np.random.default_rng(5)
    up_again = np.vstack(  # down hard, and straight back up after 1.5 s: not a fall
        [still_standing(100, rng), synthetic_fall(50, rng, lying_s=1.5), still_standing(1500, rng)]
    )
    watch = FallWatch()
    events = [e for k, f in enumerate(frames(up_again)) for e in watch.push("p", f, k * 1000)]
    assert events == [] and watch.take_near_falls() == 1
    assert watch.take_near_falls() == 0  # taken once

    fell = FallWatch()
    events = [
        e for k, f in enumerate(frames(signal(lying_s=20))) for e in fell.push("p", f, k * 1000)
    ]
    assert len(events) == 1 and fell.take_near_falls() == 0  # a fall is no near-fall
