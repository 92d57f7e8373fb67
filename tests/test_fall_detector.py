"""The streaming fall detector on synthetic pendant signals (g, any orientation)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.fall_detection import CandidateImpact, FallDetector, FallEvent, FallSettings

T0_MS = 1_700_000_000_000
UP = np.array([0.0, 1.0, 0.0])  # gravity along the pendant's y axis when upright

Signal = Callable[[np.ndarray], np.ndarray]  # time (s) -> acc (N, 3) in g


def _rotated(angle_deg: float) -> np.ndarray:
    """Gravity direction after turning the trunk by ``angle_deg`` about the x axis."""
    a = np.radians(angle_deg)
    return np.array([0.0, np.cos(a), np.sin(a)])


def _bump(t: np.ndarray, center: float, width: float) -> np.ndarray:
    """Triangle of height 1 and half-width ``width`` (s) centred on ``center`` (s)."""
    return np.clip(1.0 - np.abs(t - center) / width, 0.0, None)


def _event(
    t_event: float, free_fall_s: float, free_fall_g: float, impact_g: float, end_tilt_deg: float
) -> Signal:
    """Stand, fall freely for ``free_fall_s``, hit with ``impact_g`` at t_event, end tilted."""

    def signal(t: np.ndarray) -> np.ndarray:
        t = t[:, None]
        before = t < t_event - free_fall_s
        during = (t >= t_event - free_fall_s) & (t < t_event)
        end = _rotated(end_tilt_deg)
        mid = _rotated(end_tilt_deg / 2) * free_fall_g
        acc = np.where(before, UP, np.where(during, mid, end))
        spike = (impact_g - 1.0) * _bump(t, t_event, 0.06)
        return acc + spike * end

    return signal


FALL = _event(8.0, free_fall_s=0.4, free_fall_g=0.2, impact_g=4.0, end_tilt_deg=90.0)
HARD_SIT = _event(8.0, free_fall_s=0.3, free_fall_g=0.6, impact_g=2.3, end_tilt_deg=20.0)
JUMP = _event(8.0, free_fall_s=0.35, free_fall_g=0.05, impact_g=3.2, end_tilt_deg=0.0)
SOFT_FALL = _event(8.0, free_fall_s=0.3, free_fall_g=0.5, impact_g=2.3, end_tilt_deg=60.0)


def _gait(step_hz: float, amplitude_g: float) -> Signal:
    """Walking or jogging: a vertical bounce per step with a sharp heel strike."""

    def signal(t: np.ndarray) -> np.ndarray:
        phase = (t * step_hz) % 1.0
        strike = amplitude_g * np.exp(-(((phase - 0.1) / 0.06) ** 2))
        sway = 0.15 * np.sin(2 * np.pi * step_hz * t / 2)
        return np.column_stack([sway, 1.0 + strike - 0.25 * amplitude_g * 0.4, 0.1 * sway])

    return signal


WALK = _gait(1.9, 0.9)
JOG = _gait(2.8, 2.5)


def _frames(
    signal: Signal, seconds: float, hz: float, frame_s: float = 1.0, seed: int = 0
) -> list[tuple[int, float, np.ndarray]]:
    """Sample ``signal`` at ``hz`` with sensor noise (0.01 g) and cut it into frames."""
    rng = np.random.default_rng(seed)
    n = int(seconds * hz)
    t = np.arange(n) / hz
    acc = signal(t) + rng.normal(0.0, 0.01, (n, 3))
    step = max(1, int(round(frame_s * hz)))
    return [(T0_MS + int(round(i * 1000 / hz)), hz, acc[i : i + step]) for i in range(0, n, step)]


def _run(
    frames: list[tuple[int, float, np.ndarray]], detector: FallDetector | None = None
) -> list[FallEvent]:
    detector = detector or FallDetector()
    events: list[FallEvent] = []
    for t0, hz, acc in frames:
        events.extend(detector.push(t0, hz, acc))
    return events


def test_fall_then_lying_still_raises_exactly_one_alarm() -> None:
    events = _run(_frames(FALL, 30, 50))
    assert len(events) == 1
    event = events[0]
    assert abs(event.impact_ts_ms - (T0_MS + 8000)) <= 40
    assert 0 < event.decided_ts_ms - event.impact_ts_ms <= 10_000
    assert event.peak_g > 3.0 and event.score > 0
    assert event.window_hz == 50.0
    assert event.window_t0_ms <= event.impact_ts_ms
    assert len(event.window_acc) >= 2 * 50 and all(len(row) == 3 for row in event.window_acc)


@pytest.mark.parametrize(
    "signal", [HARD_SIT, JUMP, WALK, JOG], ids=["hard-sit", "jump", "walk", "jog"]
)
def test_activities_of_daily_living_raise_no_alarm(signal: Signal) -> None:
    assert _run(_frames(signal, 60, 50)) == []


@pytest.mark.parametrize("hz", [20, 25, 50, 100, 200])
def test_any_rate_detects_the_fall(hz: float) -> None:
    assert len(_run(_frames(FALL, 25, hz))) == 1
    assert _run(_frames(JOG, 25, hz)) == []


def test_rate_change_mid_stream() -> None:
    first = _frames(FALL, 30, 50)[:5]
    rest = [f for f in _frames(FALL, 30, 100) if f[0] >= T0_MS + 5000]
    assert len(_run(first + rest)) == 1


def test_odd_frame_lengths_give_the_same_decision() -> None:
    assert len(_run(_frames(FALL, 25, 50, frame_s=0.26))) == 1
    assert len(_run(_frames(FALL, 25, 50, frame_s=7.0))) == 1


def test_duplicated_and_late_frames_are_ignored() -> None:
    frames = _frames(FALL, 30, 50)
    replayed = []
    for i, frame in enumerate(frames):
        replayed.append(frame)
        replayed.append(frame)  # QoS 0 may deliver twice
        if i >= 3:
            replayed.append(frames[i - 3])  # and late
    assert len(_run(replayed)) == 1


def test_partly_overlapping_frame_is_trimmed() -> None:
    frames = _frames(FALL, 30, 50)
    t0, hz, acc = frames[5]
    prev = frames[4][2]
    overlapping = (t0 - 400, hz, np.vstack([prev[-20:], acc]))
    assert len(_run(frames[:5] + [overlapping] + frames[6:])) == 1


def test_gap_resets_without_alarm() -> None:
    standing = _frames(lambda t: np.tile(UP, (len(t), 1)), 10, 50)
    lying = [
        (t0 + 60_000, hz, np.tile(_rotated(90), (len(acc), 1)))
        for t0, hz, acc in _frames(lambda t: np.zeros((len(t), 3)), 10, 50)
    ]
    assert _run(standing + lying) == []
    walk = _frames(WALK, 20, 50)
    assert _run(walk[:10] + [(t0 + 5000, hz, a) for t0, hz, a in walk[10:]]) == []


def test_non_finite_samples_never_crash_nor_alarm() -> None:
    frames = _frames(FALL, 30, 50)
    poisoned = []
    for t0, hz, acc in frames:
        acc = acc.copy()
        if t0 == T0_MS + 8000:
            acc[0] = [np.inf, np.nan, 1.0]  # the impact sample itself
        poisoned.append((t0, hz, acc))
    assert _run(poisoned) == []
    nan_frames = [(t0, hz, np.full_like(acc, np.nan)) for t0, hz, acc in frames]
    assert _run(nan_frames) == []


def test_recovers_after_bad_samples() -> None:
    frames = _frames(FALL, 30, 50)
    frames[1] = (frames[1][0], 50.0, np.full((50, 3), np.nan))
    assert len(_run(frames)) == 1


def test_malformed_frames_are_ignored() -> None:
    detector = FallDetector()
    assert detector.push(T0_MS, 50, np.zeros((0, 3))) == []
    assert detector.push(T0_MS, 50, np.zeros((10, 2))) == []
    assert detector.push(T0_MS, float("nan"), np.ones((10, 3))) == []
    assert detector.push(T0_MS, 0.0, np.ones((10, 3))) == []
    assert detector.push(T0_MS, -50, np.ones((10, 3))) == []


def test_refractory_one_event_per_fall_with_bounces() -> None:
    def bouncy(t: np.ndarray) -> np.ndarray:
        end = _rotated(90)
        return (
            FALL(t)
            + (2.0 * _bump(t[:, None], 8.5, 0.05) + 1.5 * _bump(t[:, None], 9.6, 0.05)) * end
        )

    assert len(_run(_frames(bouncy, 30, 50))) == 1


def test_second_fall_after_refractory_is_reported() -> None:
    def two_falls(t: np.ndarray) -> np.ndarray:
        # lying after the first fall until 50 s, then up for 20 s, then a second fall at 78 s
        later = np.where(t[:, None] < 50.0, FALL(t), FALL(t - 70.0))
        return np.asarray(later)

    events = _run(_frames(two_falls, 100, 50))
    assert [e.impact_ts_ms - T0_MS for e in events] == pytest.approx([8000, 78000], abs=40)


def test_alarm_is_confirmed_after_the_person_stayed_down() -> None:
    settings = FallSettings(confirm_s=5.0)
    (event,) = _run(_frames(FALL, 30, 50), FallDetector(settings))
    assert event.decided_ts_ms - event.impact_ts_ms == pytest.approx(5000, abs=40)
    (event,) = _run(_frames(FALL, 30, 50))
    assert event.decided_ts_ms - event.impact_ts_ms == pytest.approx(7000, abs=40)
    assert event.window_acc and len(event.window_acc) == 7 * 50 + 1


def _down_and_up_again(
    t_down: float, t_up: float, impact_g: float, free_fall_s: float = 0.4, free_fall_g: float = 0.2
) -> Signal:
    """Upright, a 90° posture change landing at ``t_down``, and back to upright at ``t_up``
    (lying down quickly and sitting up again; rolling onto one side and back; a fall and
    getting up)."""
    down = _event(t_down, free_fall_s, free_fall_g, impact_g=impact_g, end_tilt_deg=90)

    def signal(t: np.ndarray) -> np.ndarray:
        back = np.tile(UP, (len(t), 1)) + (impact_g - 1.0) * _bump(t[:, None], t_up, 0.06) * UP
        return np.asarray(np.where(t[:, None] < t_up - 0.3, down(t), back))

    return signal


LIE_DOWN_QUICKLY = {"impact_g": 2.5, "free_fall_s": 0.3, "free_fall_g": 0.5}
"""A mattress landing: above the fall threshold on its own, far from a hard fall's score."""


def test_posture_change_undone_within_seconds_is_no_fall() -> None:
    seen: list[CandidateImpact] = []
    detector = FallDetector(on_candidate=seen.append)
    signal = _down_and_up_again(8.0, 12.5, **LIE_DOWN_QUICKLY)
    assert _run(_frames(signal, 40, 50), detector) == []
    down, up = sorted((c for c in seen if c.features.tilt_deg > 60), key=lambda c: c.impact_ts_ms)
    assert down.score > FallSettings().threshold()  # it would be a fall but for rule B
    assert not FallSettings().is_strong(down.score)
    assert down.posture_reversed and not down.is_fall  # came back up 4.5 s later
    assert up.posture_reversed and not up.is_fall  # ended where it was 5 s before
    assert abs(up.impact_ts_ms - (T0_MS + 12_500)) <= 40


def test_a_hard_fall_is_reported_even_if_the_faller_is_up_again_within_seconds() -> None:
    """Rule B is waived beyond ``strong_margin``: a break-fall and getting straight up is
    still a fall (the elder can cancel on the hub); a lie-down never scores that high."""
    hard = _down_and_up_again(8.0, 12.5, 4.0)
    seen: list[CandidateImpact] = []
    (event,) = _run(_frames(hard, 40, 50), FallDetector(on_candidate=seen.append))
    assert abs(event.impact_ts_ms - (T0_MS + 8000)) <= 40
    assert event.decided_ts_ms - event.impact_ts_ms == pytest.approx(7000, abs=40)
    down = next(c for c in seen if abs(c.impact_ts_ms - event.impact_ts_ms) <= 40)
    assert down.is_fall and not down.posture_reversed and down.return_s == pytest.approx(4.5, abs=1)
    never_waived = FallDetector(FallSettings(strong_margin=float("inf")))
    assert _run(_frames(hard, 40, 50), never_waived) == []


def test_getting_up_after_the_confirmation_time_does_not_cancel() -> None:
    events = _run(_frames(_down_and_up_again(8.0, 20.0, 4.0), 40, 50))
    assert len(events) == 1 and abs(events[0].impact_ts_ms - (T0_MS + 8000)) <= 40


def test_flush_decides_a_fall_when_the_stream_ends() -> None:
    detector = FallDetector()
    assert _run(_frames(FALL, 12, 50), detector) == []  # only 4 s after the impact
    (event,) = detector.flush()
    assert abs(event.impact_ts_ms - (T0_MS + 8000)) <= 40
    assert detector.flush() == []
    walker = FallDetector()
    assert _run(_frames(WALK, 12, 50), walker) == [] and walker.flush() == []
    assert FallDetector().flush() == []


def test_a_stream_that_resumes_after_a_flush_still_judges_the_impact_just_before() -> None:
    """A broker stopping publishes every pendant's last will ("offline") 1 s after an impact;
    the pendant then replays its buffered frames from where the hub stopped hearing it."""
    frames = _frames(FALL, 30, 50)
    head = [f for f in frames if f[0] <= T0_MS + 9000]  # the impact at 8 s, then 1-2 s more
    detector = FallDetector()
    assert _run(head, detector) == [] and detector.flush() == []  # too early to judge
    (event,) = _run(frames[len(head) :], detector)
    assert abs(event.impact_ts_ms - (T0_MS + 8000)) <= 40
    gapped = FallDetector()  # but a gap in the stream still drops it (nothing to judge it on)
    assert _run(head, gapped) == [] and gapped.flush() == []
    assert _run([f for f in frames if f[0] >= T0_MS + 12_000], gapped) == []


def test_gap_while_confirming_still_reports_the_fall() -> None:
    frames = _frames(FALL, 30, 50)
    gapped = [f for f in frames if not T0_MS + 11_000 <= f[0] < T0_MS + 14_000]
    (event,) = _run(gapped)
    assert abs(event.impact_ts_ms - (T0_MS + 8000)) <= 40
    assert event.window_t0_ms == event.impact_ts_ms - 2000 and len(event.window_acc) >= 100


def test_sensitivity_is_monotonic() -> None:
    thresholds = [FallSettings(sensitivity=s).threshold() for s in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in zip(thresholds, thresholds[1:], strict=False))
    signals = [SOFT_FALL, FALL, HARD_SIT, JUMP]
    counts = []
    for s in (0.0, 0.25, 0.5, 0.75, 1.0):
        counts.append(
            sum(
                len(_run(_frames(sig, 20, 50), FallDetector(FallSettings(sensitivity=s))))
                for sig in signals
            )
        )
    assert counts == sorted(counts)
    assert counts[0] < counts[-1]


def test_candidates_are_reported_for_evaluation() -> None:
    seen: list[CandidateImpact] = []
    detector = FallDetector(on_candidate=seen.append)
    _run(_frames(FALL, 20, 50), detector)
    assert any(c.is_fall for c in seen)
    assert all(np.isfinite(c.score) for c in seen)


_floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-(10**6), max_value=10**6),
            st.one_of(
                st.sampled_from([20.0, 25.0, 50.0, 100.0, 200.0, 0.0, -1.0]),
                st.floats(allow_nan=True, allow_infinity=True),
            ),
            st.integers(min_value=0, max_value=120),
            _floats,
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_random_frames_never_raise(frames: list[tuple[int, float, int, float, bool]]) -> None:
    detector = FallDetector()
    rng = np.random.default_rng(0)
    t = T0_MS
    for dt, hz, n, poison, spiky in frames:
        t += dt
        acc = rng.normal(0, 3.0 if spiky else 0.1, (n, 3)) + UP
        if n:
            acc[rng.integers(0, n)] = poison
        events = detector.push(t, hz, acc, acc * 100)
        assert all(isinstance(e, FallEvent) for e in events)


def test_at_start_up_an_impact_with_a_short_history_is_judged_only_when_asked() -> None:
    """The hub's detectors (``startup_pre_s``) judge an impact 1.2 s into a stream; the
    evaluated default needs ``MIN_PRE_S`` (1.5 s) and ignores it."""
    late = [f for f in _frames(FALL, 30, 50) if f[0] >= T0_MS + 6800]  # impact at 8 s
    assert _run(late) == []
    (event,) = _run(late, FallDetector(startup_pre_s=1.0))
    assert abs(event.impact_ts_ms - (T0_MS + 8000)) <= 40
    assert _run([f for f in late if f[0] >= T0_MS + 7200], FallDetector(startup_pre_s=1.0)) == []
    walk = [f for f in _frames(WALK, 20, 50) if f[0] >= T0_MS + 6800]
    assert _run(walk, FallDetector(startup_pre_s=1.0)) == []


def test_how_sure_a_strong_fall_is_does_not_move_with_the_sensitivity() -> None:
    for sensitivity in (0.0, 0.5, 1.0):
        at = FallSettings(sensitivity=sensitivity)
        assert not at.is_strong(3.4) and at.is_strong(3.6)
        assert at.is_strong(3.6) <= (3.6 > at.threshold())  # strong is always a fall
    assert not FallSettings(strong_margin=float("nan")).is_strong(1e6)  # a bad setting waives none
