"""Per-device fall detection on the hub: orders each pendant's frames and runs its detector.

Pure (no I/O; the hub's time is passed in). The state lives in this object, not in the MQTT
connection, so a broker restart loses nothing; the elder's sensitivity comes from the care
plan. No input can silence a pendant for good: timestamps go through the pendant's
`DeviceClock` (a wrong clock is re-stamped onto the hub's; a frame whose time had to be
guessed is kept from the detector, as a stale copy's samples could hide a fall), a stream
that jumps, goes back or resumes after a stall restarts its orderer/detector (one far-off
frame alone does not: see `gateway.imu_order`). Each such event is one `Notice` for the
shell to log (`take_notices`).

During an installer's self-test the pendant is dropped on purpose: the frames heard while a
self-test covers a pendant mark a span of its timeline, and the first fall whose impact
lies in it is that drop (`take_selftest_drop`), not an elder's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from carehub.mqtt_contract import ImuFrame
from edge.fall_detection import CandidateImpact, FallDetector, FallEvent, FallSettings
from gateway.device_clock import DeviceClock, Notice
from gateway.imu_order import Frame, FrameOrderer

STALL_MS = 30_000
"""A pendant silent this long (hub clock) has its pending suspected falls decided when it
resumes, if the `silent` sweep has not done it already."""

NEAR_FALL_MARGIN = 2.0
"""A dismissed impact is a near-fall when its score (a logit) came within this of the fall
threshold: a stumble caught, a fall undone by getting straight back up — not a sit-down."""

STARTUP_PRE_S = 1.0
"""Signal (s) a detector needs before an impact right after its stream (re)started (see
`FallDetector`'s ``startup_pre_s``): a restarted hub hears a pendant from the frames the
broker queued while it was down, which may begin only 1-1.5 s before the impact."""


@dataclass
class _DeviceState:
    orderer: FrameOrderer
    detector: FallDetector
    clock: DeviceClock
    last_frame_ms: int | None = None  # hub clock
    flushed: bool = False
    bad_values: bool = False  # the last frame held NaN/inf (reported once per run)
    selftest: int | None = None  # the last self-test frames were heard in (its deadline)
    selftest_span: tuple[int, int] | None = None  # hub ms those frames covered
    drop_taken: bool = False  # that self-test's drop was found
    last_fall_ms: float | None = None  # impact of the last fall confirmed (stream time)


class FallWatch:
    def __init__(
        self, sensitivity: float = 0.5, device_clock: Callable[[], DeviceClock] = DeviceClock
    ) -> None:
        """`device_clock` makes each pendant's clock guard (the contract's tolerances)."""
        self._sensitivity = sensitivity
        self._device_clock = device_clock
        self._devices: dict[str, _DeviceState] = {}
        self._notices: deque[Notice] = deque(maxlen=256)
        self._near_falls = 0

    @property
    def sensitivity(self) -> float:
        return self._sensitivity

    def set_sensitivity(self, sensitivity: float) -> None:
        """A new care plan: detectors restart with the new threshold (rare)."""
        if sensitivity != self._sensitivity:
            self._sensitivity = sensitivity
            self._devices.clear()

    def take_notices(self) -> list[Notice]:
        """The notices since the last call, oldest first, for the shell to log (at most the
        last 256 are kept if nobody asks)."""
        out = list(self._notices)
        self._notices.clear()
        return out

    def push(
        self, device_id: str, frame: ImuFrame, now_ms: int, selftest: int | None = None
    ) -> list[FallEvent]:
        """Falls decided with this frame (usually none); `now_ms` is the hub's clock;
        `selftest` names the self-test covering the pendant now (its deadline), if any.

        Event times are hub-clock ms: a replayed frame (``frame.replayed``, sent late after an
        outage) is still run through the detector, so its fall comes late rather than never.
        """
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = self._new_state()
        events: list[FallEvent] = []
        replayed = bool(getattr(frame, "replayed", False))
        last = state.last_frame_ms
        if last is not None and now_ms - last > STALL_MS and not state.flushed:
            events += state.detector.flush()
            self._note(device_id, f"pendant stream resumed after {(now_ms - last) / 1000:.0f} s")
        state.last_frame_ms, state.flushed = now_ms, False
        if selftest is not None and selftest != state.selftest:  # a new self-test, a new drop
            state.selftest, state.selftest_span, state.drop_taken = selftest, None, False
        stamp = state.clock.stamp(frame.t0, now_ms, replayed)
        if stamp.change is not None:
            self._note(device_id, f"pendant {stamp.change.value} (offset {stamp.offset_ms} ms)")
        if stamp.drop or stamp.guessed:  # a guessed time could put stale samples mid-fall
            return events
        acc = np.asarray(frame.acc, dtype=float)
        gyr = None if frame.gyr is None else np.asarray(frame.gyr, dtype=float)
        hz = float(frame.hz)
        shaped = acc.ndim == 2 and acc.shape[1:] == (3,) and len(acc) > 0
        if not (shaped and 0 < hz < np.inf and np.isfinite(acc).all()):
            if not state.bad_values:  # refused by the contract: only if one slips through
                self._note(device_id, "pendant frame with malformed or non-finite values dropped")
            state.bad_values = True
            return events
        state.bad_values = False
        if selftest is not None and not replayed:  # replayed: sampled before, maybe long before
            end = stamp.hub_ms + round(len(acc) * 1000 / hz)
            lo, hi = state.selftest_span or (stamp.hub_ms, end)
            state.selftest_span = (min(lo, stamp.hub_ms), max(hi, end))
        ready = state.orderer.push(Frame(float(stamp.hub_ms), hz, acc, gyr), replayed)
        if state.orderer.restarted is not None:
            if state.orderer.rewound:  # the old timeline is over: decide it, start afresh
                events += state.detector.restart()
            self._note(device_id, f"pendant {state.orderer.restarted}; fall detector restarted")
        for f in ready:
            events += state.detector.push(int(f.t0_ms), f.hz, f.acc, f.gyr)
        return events

    def take_near_falls(self) -> int:
        """Impacts the detectors judged and dismissed since the last call (near-falls for the
        daily summary: a stumble caught, a knock; not the rebounds of a confirmed fall)."""
        n, self._near_falls = self._near_falls, 0
        return n

    def take_selftest_drop(self, device_id: str, fall: FallEvent) -> bool:
        """Whether `fall` is the drop the last self-test asked for: its impact lies in a frame
        heard while that self-test covered the pendant. One drop per self-test (a second fall
        alarms, as a test while the self-test runs). Taking it ends the refractory it began,
        or a real fall in the 30 s after the self-test would pass for the same fall."""
        state = self._devices.get(device_id)
        if state is None or state.selftest_span is None or state.drop_taken:
            return False
        lo, hi = state.selftest_span
        if not lo <= fall.impact_ts_ms <= hi:
            return False
        state.drop_taken = True
        state.detector.end_refractory()
        return True

    def stream_ended(self, device_id: str) -> list[FallEvent]:
        """The pendant went silent or offline right after an impact (a fall can break it or
        tear it off): decide what it was still confirming with the signal there is."""
        state = self._devices.get(device_id)
        if state is None or state.flushed:
            return []
        state.flushed = True
        return state.detector.flush()

    def silent(
        self, now_ms: int, after_ms: int, heard_since_ms: int | None = None
    ) -> list[tuple[str, FallEvent]]:
        """`stream_ended` for every pendant silent for `after_ms` (hub clock), silence counted
        from `heard_since_ms` at the earliest: when the hub last (re)connected to its broker,
        since before that no pendant could be heard, whatever it sent."""
        return [
            (device_id, event)
            for device_id, state in list(self._devices.items())
            if not state.flushed
            and state.last_frame_ms is not None
            and now_ms - max(state.last_frame_ms, heard_since_ms or 0) > after_ms
            for event in self.stream_ended(device_id)
        ]

    def forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)

    def _new_state(self) -> _DeviceState:
        settings = FallSettings(sensitivity=self._sensitivity)
        state = _DeviceState(FrameOrderer(), FallDetector(settings), self._device_clock())

        def judged(c: CandidateImpact) -> None:
            """Every candidate impact the detector judged (its decisions are the same with
            this hook: `edge.fall_detection`); one dismissed near the threshold is a
            near-fall, unless it is the rebound of a fall just confirmed."""
            if c.is_fall:
                state.last_fall_ms = c.impact_ts_ms
            elif c.score > settings.threshold() - NEAR_FALL_MARGIN and (
                state.last_fall_ms is None
                or c.impact_ts_ms - state.last_fall_ms > 1000 * settings.refractory_s
            ):
                self._near_falls += 1

        state.detector = FallDetector(settings, on_candidate=judged, startup_pre_s=STARTUP_PRE_S)
        return state

    def _note(self, device_id: str, text: str) -> None:
        self._notices.append(Notice(device_id, text))
