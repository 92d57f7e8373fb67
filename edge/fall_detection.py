"""Streaming, per-device fall detection from pendant accelerometer frames.

How it decides (details and measured results in ``docs/fall-detection.md``):

1. Every frame is resampled onto a 50 Hz grid (``INTERNAL_HZ``) and its signal vector
   magnitude (SVM, g) is compared with ``FallSettings.trigger_g``. That is the only work done
   for most frames, so one core keeps up with thousands of streams.
2. A sample above the trigger opens a *candidate impact* at the highest peak within
   ``merge_s``. When ``POST_S`` seconds (2.5 s) have followed it, the candidate is described by
   a few orientation-independent features (``edge.fall_features``) and scored by a logistic
   model whose coefficients are fitted offline on SisFall (``FALL_MODEL``).
3. A score above the threshold set by ``sensitivity`` makes it a *suspected* fall, unless the
   body is still moving like walking 1-2.5 s later (``max_post_std_g``), or the event merely
   undid an earlier posture change (it ends in an orientation held in the 10 s before).
4. A suspected fall is confirmed ``confirm_s`` (7 s) after the impact unless the trunk came
   back to its orientation before the event meanwhile (sat up again, rolled back, stood up).
   Later impacts within ``refractory_s`` of a confirmed fall belong to the same fall.

The decision is causal and comes 7-8 s after the impact with 1 s frames; ``flush`` decides
what is pending when a stream ends. The gyroscope is accepted but unused: acceleration alone
carries the evidence, and pendants without a gyroscope must behave the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge.fall_features import (
    CONFIRM_S,
    INTERNAL_HZ,
    LOOKBACK_S,
    POSTURE_CHANGE_DEG,
    ImpactFeatures,
    LogisticModel,
    first_match,
    held_before,
    impact_features,
    post_activity_g,
    window_bounds,
    window_directions,
)

FALL_MODEL = LogisticModel(
    mean=(0.7974, -2.3641, 0.4157, -2.8850, -1.3266),
    scale=(0.4531, 0.5403, 0.4413, 1.5026, 0.5472),
    weight=(0.6422, 0.1411, 3.4506, 0.2953, 1.2727),
    bias=-2.7010,
)
"""Fitted by ``evaluation.fall_eval.fit_detector`` on all sisfall-dev subjects, replayed at
50 Hz and as a 20 Hz device in any orientation, with one elderly-like (slower, softer) copy
of every fall; lying down and being cancelled only by sitting up again counts against it.
Its bias includes the logit threshold (+0.25) chosen as the sensitivity margin, so
``FallSettings.sensitivity`` 0.5 is that threshold. ``carehub eval fall --fit`` prints it."""

_PERIOD_MS = 1000.0 / INTERNAL_HZ
_MIN_HZ, _MAX_HZ = 1.0, 5000.0  # outside this a frame is malformed and ignored (Hz)
_MAX_ABS_G = 100.0  # beyond any pendant's range: such a sample is a fault, like NaN (g)
_EVENT_PRE_S, _EVENT_POST_S = 2.0, 5.0
_HISTORY_END_S = 2.0  # the look-back for held postures ends this long before the peak (s)
_REWIND_MS = 10_000.0  # a frame ending this far before what was consumed starts a new timeline


@dataclass(frozen=True)
class FallSettings:
    """Per-elder tunables of the fall detector.

    ``sensitivity`` (0..1, default 0.5) moves the decision threshold on the model's score
    (a logit): each 0.1 above 0.5 lowers it by ``score_span / 10`` logit units, so more
    borderline impacts — softer falls, but also hard sit-downs — raise an alarm; below 0.5
    it asks for more evidence. It never changes what the features measure.
    """

    sensitivity: float = 0.5
    trigger_g: float = 1.4
    """SVM (g) above which a sample opens a candidate impact. SisFall's young falls peak
    ≥ 1.68 g, their slower, softer elderly-like copies down to ~1.4 g (docs/fall-detection.md)."""
    merge_s: float = 1.0
    """Peaks closer than this (s) are one candidate, described at the highest peak."""
    refractory_s: float = 30.0
    """After a fall is reported, impacts within this many seconds are the same fall (s)."""
    gap_ms: float = 1000.0
    """A jump forward in stream time beyond this (ms) resets the short-term buffers."""
    score_span: float = 4.0
    """Logit units swept by ``sensitivity`` from 0 to 1."""
    max_post_std_g: float = 0.4
    """Veto (g): an SVM standard deviation 1-2.5 s after the impact above this is someone
    striding or running on (stairs, jogging: 0.4-1.5 g), not lying after a fall (< 0.1 g)."""
    confirm_s: float = CONFIRM_S
    """A suspected fall is reported this long after its impact (s, at least ``POST_S``) unless
    the trunk returned to its orientation before the event meanwhile."""
    strong_margin: float = 3.5
    """Logit units above the fitted threshold (score 0, i.e. sensitivity 0.5, whatever this
    elder's sensitivity) from which a fall is reported even if the trunk came back (the
    posture-reversal rules are waived): someone who falls hard and is up again within
    seconds (an agile faller, a break-fall) has still fallen, and can cancel on the hub. On
    sisfall-dev no lying down, rolling over or sitting up scores this high (the highest 3.0);
    80 % of its falls at 50 Hz do (docs/fall-detection.md). Fixed rather than moved with the
    sensitivity: how sure a fall is does not depend on how cautious the care plan is."""

    def threshold(self) -> float:
        """Logit above which a candidate impact is a fall, for this sensitivity."""
        s = min(max(self.sensitivity, 0.0), 1.0) if math.isfinite(self.sensitivity) else 0.5
        return (0.5 - s) * self.score_span

    def is_strong(self, score: float) -> bool:
        """A fall beyond doubt: reported even if the posture-reversal rules say it was undone.
        Never below this elder's threshold, so a strong candidate is always a fall."""
        margin = self.strong_margin if math.isfinite(self.strong_margin) else math.inf
        return score > max(margin, self.threshold())

    def is_fall(self, features: ImpactFeatures, score: float) -> bool:
        """The decision on one scored candidate impact (before the posture-reversal rules)."""
        return score > self.threshold() and features.post_std_g <= self.max_post_std_g


@dataclass(frozen=True)
class FallEvent:
    """A decided fall. Times are stream time (epoch ms of samples), never wall clock."""

    impact_ts_ms: int
    decided_ts_ms: int
    peak_g: float
    score: float
    window_hz: float
    window_t0_ms: int
    window_acc: list[list[float]] = field(repr=False)
    """Acceleration (g) from 2 s before the impact to at most 5 s after, at ``window_hz``."""


@dataclass(frozen=True)
class CandidateImpact:
    """A candidate impact, fall or not, for evaluation (activity-vetoed ones are not reported).

    ``posture_reversed``: the event undid an earlier posture change or was undone within
    ``confirm_s`` (see ``edge.fall_features``); such a candidate is never a fall. A strong
    candidate (``FallSettings.is_strong``) is never reversed, though its flags say what the
    rules saw.
    ``held_before``: the first of these (rule A, ends in a posture held before).
    ``return_s``: when the trunk came back to its orientation before the event (rule B), in
    seconds after the impact, if it did within ``confirm_s``; the evaluation replays with a
    long ``confirm_s`` and re-decides for shorter ones from this.
    """

    impact_ts_ms: int
    decided_ts_ms: int
    features: ImpactFeatures
    score: float
    is_fall: bool
    posture_reversed: bool = False
    held_before: bool = False
    return_s: float | None = None


@dataclass
class _Suspect:
    """A scored candidate waiting ``confirm_s`` for the trunk to stay down (or not)."""

    k: int  # absolute grid index of the peak in ``epoch``
    epoch: int
    t_impact: float  # ms
    check_from_ms: float  # window ends from here on are checked for a return (ms)
    deadline_ms: float
    features: ImpactFeatures
    score: float
    window: np.ndarray  # event window known at scoring time, in case the buffer is reset
    window_t0: float  # ms
    held: bool = False  # ended in a posture held before (rule A): kept if strong or evaluating
    reversed: bool = False
    returned_ms: float | None = None  # end of the first 1 s window back in the old posture


def box_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Moving average over k rows, edges padded with the nearest row (as
    ``scipy.ndimage.uniform_filter1d(mode="nearest")``, without loading scipy on the hub)."""
    if k <= 1 or len(a) == 0:
        return a
    left = k // 2
    padded = np.concatenate([np.repeat(a[:1], left, 0), a, np.repeat(a[-1:], k - 1 - left, 0)])
    c = np.concatenate([np.zeros((1, a.shape[1])), np.cumsum(padded, axis=0)])
    return (c[k:] - c[:-k]) / k


class FallDetector:
    """Stateful detector for one device; feed it frames in stream order with ``push``."""

    def __init__(
        self,
        settings: FallSettings | None = None,
        *,
        model: LogisticModel = FALL_MODEL,
        on_candidate: Callable[[CandidateImpact], None] | None = None,
        startup_pre_s: float | None = None,
    ) -> None:
        """``startup_pre_s`` (s, below ``MIN_PRE_S``; None: off): an impact with less than
        ``MIN_PRE_S`` of signal before it, which only happens right after the stream (re)starts,
        is still judged if it has this much, the missing start padded with the first sample
        (the posture the stream starts in). The hub sets it: after a hub restart its detectors
        start from the frames the broker queued, 1-2 s before an impact at worst. The fitted
        figures (``evaluation.fall_eval``) are measured without it."""
        self.settings = settings or FallSettings()
        self._model = model
        self._on_candidate = on_candidate
        self._before, self._min_before, self._after = window_bounds()
        self._merge = max(1, int(round(self.settings.merge_s * INTERNAL_HZ)))
        self._lookback = int(round(LOOKBACK_S * INTERNAL_HZ))
        self._history_end = int(round(_HISTORY_END_S * INTERNAL_HZ))
        self._startup_before = (
            self._min_before
            if startup_pre_s is None or not math.isfinite(startup_pre_s)
            else min(self._min_before, max(1, int(round(startup_pre_s * INTERNAL_HZ))))
        )
        self._event_pre = int(_EVENT_PRE_S * INTERNAL_HZ)
        self._event_post = int(_EVENT_POST_S * INTERNAL_HZ)
        self._keep = max(self._lookback, self._before) + self._after + self._merge
        self._keep = max(self._keep, self._event_pre + self._event_post + self._merge)
        self._acc = np.empty((self._keep + 4 * int(INTERNAL_HZ), 3))
        self._t = np.empty(len(self._acc))
        self._offsets = np.arange(4 * int(INTERNAL_HZ)) * _PERIOD_MS
        self._trigger_sq = self.settings.trigger_g**2
        confirm_s = self.settings.confirm_s
        confirm_s = confirm_s if math.isfinite(confirm_s) else CONFIRM_S
        self._confirm_ms = 1000.0 * max(confirm_s, self._after / INTERNAL_HZ)
        self._quiet_until_ms = -np.inf
        self._latest_ms: float | None = None  # time of the newest grid sample, across resets
        self._suspects: list[_Suspect] = []
        self._epoch = 0
        self._reset()

    def _reset(self) -> None:
        """Forget the short-term signal (after a gap or bad samples), keep the refractory state
        and the suspected falls (their return check goes on with the new signal)."""
        self._epoch += 1
        self._n = 0  # rows used in _acc/_t
        self._k0 = 0  # absolute index of row 0
        self._last_t: float | None = None  # ms of the last input sample consumed
        self._last_v: np.ndarray | None = None
        self._next_ms = 0.0  # ms of the next grid sample to produce
        self._pending: list[tuple[int, float]] = []  # (absolute index, peak g)

    def push(
        self, t0_ms: int, hz: float, acc: np.ndarray, gyr: np.ndarray | None = None
    ) -> list[FallEvent]:
        """acc (N,3) in g, gyr (N,3) in °/s, sample i at t0_ms + i*1000/hz.

        Returns the falls decided during this frame (usually none).

        Samples at or before what was already consumed are ignored, a forward jump beyond
        ``gap_ms`` or a non-finite sample restarts the buffers, malformed frames are ignored.
        A whole frame more than 10 s before what was consumed means the stream's clock went
        back: the suspected falls are decided as by ``flush`` and the detector starts afresh
        on the new timeline (one bad far-future frame must not silence it).
        """
        del gyr  # accepted for the contract, not needed by the method (see module docstring)
        try:
            a = np.asarray(acc, dtype=float)
            t0, rate = float(t0_ms), float(hz)
        except (TypeError, ValueError):
            return []
        n = a.shape[0] if a.ndim == 2 and a.shape[1] == 3 else 0
        if not (n and math.isfinite(t0) and math.isfinite(rate) and _MIN_HZ <= rate <= _MAX_HZ):
            return []
        period = 1000.0 / rate
        start = 0
        decided: list[FallEvent] = []
        if self._last_t is not None and t0 + (n - 1) * period < self._last_t - _REWIND_MS:
            decided = self.restart()
        if self._last_t is not None:  # drop what was already consumed (duplicates, late frames)
            start = max(0, math.ceil((self._last_t + 0.5 * period - t0) / period))
            if start >= n:
                return []
        if not float(np.abs(a[start:]).max()) <= _MAX_ABS_G:  # NaN, inf or a broken sensor
            ok = (np.abs(a) <= _MAX_ABS_G).all(axis=1)
            ok[:start] = True
            start = int(np.flatnonzero(~ok)[-1]) + 1
            self._reset()
            if start >= n:
                return decided
        t_first = t0 + start * period
        if self._last_t is not None and t_first - self._last_t > self.settings.gap_ms:
            self._reset()
        new_acc, new_t = self._to_grid(a[start:] if start else a, t_first, period, rate)
        if not len(new_acc):
            return decided
        first = self._append(new_acc, new_t)
        self._find_candidates(first)
        self._score_candidates()
        if not self._suspects:
            return decided
        self._check_returns(first)
        return decided + self._confirm(float(self._t[self._n - 1]))

    def restart(self) -> list[FallEvent]:
        """Start afresh on a new timeline (the stream's clock went back): decide the suspected
        falls now, as ``flush`` does, then forget everything timed on the old timeline,
        including the refractory period. Returns the falls so decided."""
        decided = self.flush()
        self._suspects = []
        self._quiet_until_ms = -np.inf
        self._latest_ms = None
        self._reset()
        return decided

    def end_refractory(self) -> None:
        """The fall just reported was no one's (the installer dropped the pendant for the
        self-test): judge the impacts after it afresh rather than as the same fall."""
        self._quiet_until_ms = -np.inf

    def flush(self) -> list[FallEvent]:
        """The stream has ended (device offline, recording over): decide the suspected falls
        now with the signal there is. A fallen person stays down, so each suspected fall whose
        trunk has not come back by now is reported; candidates with less than ``POST_S`` of
        signal after them cannot be judged yet. They are kept: if the stream resumes where it
        stopped (a pendant replaying what it buffered while its broker was down, whose last
        will said "offline"), they are judged then; a gap in the stream drops them."""
        if self._latest_ms is None or not self._suspects:
            return []
        return self._confirm(self._latest_ms, final=True)

    def _to_grid(
        self, a: np.ndarray, t_first: float, period: float, rate: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Resample to INTERNAL_HZ; a 50 Hz frame that follows on in time is taken as is."""
        last_t = self._last_t
        m = len(a)
        if abs(rate - INTERNAL_HZ) < 1e-6 and (
            last_t is None or abs(t_first - last_t - _PERIOD_MS) < 0.25 * _PERIOD_MS
        ):
            times = t_first + (
                self._offsets[:m] if m <= len(self._offsets) else np.arange(m) * period
            )
            self._last_t, self._last_v = float(times[-1]), a[-1]
            self._next_ms = float(times[-1]) + _PERIOD_MS
            return a, times
        times = t_first + np.arange(m) * period
        if rate > 1.5 * INTERNAL_HZ:  # anti-alias: average over one internal period
            a = box_mean(a, int(round(rate / INTERNAL_HZ)))
        if last_t is None or self._last_v is None:
            xp, fp, start = times, a, float(times[0])
        else:
            xp = np.concatenate(([last_t], times))
            fp = np.vstack((self._last_v, a))
            start = self._next_ms
        self._last_t, self._last_v = float(times[-1]), a[-1]
        if xp[-1] < start:
            return a[:0], times[:0]
        grid = start + _PERIOD_MS * np.arange(int((xp[-1] - start) // _PERIOD_MS) + 1)
        self._next_ms = float(grid[-1]) + _PERIOD_MS
        out = np.column_stack([np.interp(grid, xp, fp[:, k]) for k in range(3)])
        return out, grid

    def _append(self, new_acc: np.ndarray, new_t: np.ndarray) -> int:
        """Append rows, dropping old ones; return the absolute index of the first new row."""
        m = len(new_acc)
        if self._n + m > len(self._acc):
            drop = max(0, self._n - self._keep)
            self._acc[: self._n - drop] = self._acc[drop : self._n]
            self._t[: self._n - drop] = self._t[drop : self._n]
            self._n -= drop
            self._k0 += drop
            if self._n + m > len(self._acc):
                size = self._n + m + self._keep
                self._acc = np.concatenate((self._acc[: self._n], np.empty((size - self._n, 3))))
                self._t = np.concatenate((self._t[: self._n], np.empty(size - self._n)))
        self._acc[self._n : self._n + m] = new_acc
        self._t[self._n : self._n + m] = new_t
        first = self._k0 + self._n
        self._n += m
        self._latest_ms = float(new_t[-1])
        return first

    def _find_candidates(self, first: int) -> None:
        """Open or update candidate impacts from the new rows (from absolute index ``first``)."""
        rows = self._acc[first - self._k0 : self._n]
        squared = np.einsum("ij,ij->i", rows, rows)
        if squared.max() <= self._trigger_sq:  # the common case: nothing to look at
            return
        above = np.flatnonzero(squared > self._trigger_sq)
        peaks: list[tuple[int, float]] = []  # the highest sample of each run above the trigger
        prev = -2
        for j, sq in zip(above.tolist(), squared[above].tolist(), strict=True):
            if j == prev + 1 and sq <= peaks[-1][1]:
                pass
            elif j == prev + 1:
                peaks[-1] = (j, sq)
            else:
                peaks.append((j, sq))
            prev = j
        for j, sq in peaks:
            k, peak = first + j, math.sqrt(sq)
            if self._pending and k - self._pending[-1][0] < self._merge:
                if peak > self._pending[-1][1]:
                    self._pending[-1] = (k, peak)
            else:
                self._pending.append((k, peak))

    def _score_candidates(self) -> None:
        """Score the candidates that now have POST_S of signal after them; suspects wait."""
        last = self._k0 + self._n - 1
        evaluating = self._on_candidate is not None
        while self._pending and self._pending[0][0] + self._after <= last:
            k, _ = self._pending.pop(0)
            i = k - self._k0
            t_impact = float(self._t[i])
            quiet = t_impact < self._quiet_until_ms
            if i < self._startup_before or (quiet and not evaluating):
                continue
            acc, j = self._acc, i  # j: the peak's index in acc
            if i < self._min_before:  # the stream (re)started just before: pad its start
                pad = self._min_before - i
                acc, j = (
                    np.vstack((np.repeat(self._acc[:1], pad, 0), self._acc[: self._n])),
                    i + pad,
                )
            if post_activity_g(acc, j) > self.settings.max_post_std_g:
                continue  # still walking or jogging: vetoed whatever the other features say
            w0 = max(0, j - self._before)
            feats = impact_features(acc[w0 : j + self._after + 1], j - w0)
            score = float(self._model.score(feats.vector()))
            if not evaluating and not self.settings.is_fall(feats, score):
                continue
            h0, h1 = max(0, i - self._lookback), max(0, i - self._history_end)
            held = held_before(self._acc[h0:h1], feats)
            if held and not evaluating and not self.settings.is_strong(score):
                continue
            decided = float(self._t[i + self._after])
            lo = max(0, i - self._event_pre)
            self._suspects.append(
                _Suspect(
                    k=k,
                    epoch=self._epoch,
                    t_impact=t_impact,
                    check_from_ms=decided,
                    deadline_ms=t_impact + self._confirm_ms,
                    features=feats,
                    score=score,
                    window=self._acc[lo : i + self._after + 1].copy(),
                    window_t0=float(self._t[lo]),
                    held=held,
                )
            )

    def _check_returns(self, first: int) -> None:
        """Mark suspects whose trunk came back to its orientation before the event, looking at
        the 1 s windows that end in the new rows (from absolute index ``first``)."""
        j0 = first - self._k0
        w = int(round(INTERNAL_HZ))
        rows = self._acc[max(0, j0 - w + 1) : self._n]
        sums = window_directions(rows)
        if not len(sums):
            return
        ends = self._t[self._n - len(sums) : self._n]
        for s in self._suspects:
            if s.returned_ms is not None or s.features.tilt_deg < POSTURE_CHANGE_DEG:
                continue  # a candidate that did not turn the trunk cannot return
            lo = int(np.searchsorted(ends, s.check_from_ms - 0.5 * _PERIOD_MS))
            hi = int(np.searchsorted(ends, s.deadline_ms + 0.5 * _PERIOD_MS))
            hit = first_match(sums[lo:hi], s.features.pre_up) if hi > lo else -1
            if hit >= 0:
                s.returned_ms = float(ends[lo + hit])
                s.reversed = not self.settings.is_strong(s.score)  # a hard fall stays a fall

    def _confirm(self, now_ms: float, final: bool = False) -> list[FallEvent]:
        """Resolve the suspects that returned or whose confirmation time has come (all when
        ``final``); report confirmed falls outside the refractory period."""
        events: list[FallEvent] = []
        waiting: list[_Suspect] = []
        for s in self._suspects:
            if not (s.reversed or final or now_ms >= s.deadline_ms):
                waiting.append(s)
                continue
            decided = now_ms if final or s.reversed else self._time_at(s.deadline_ms, now_ms)
            undone = s.reversed or (s.held and not self.settings.is_strong(s.score))
            is_fall = (
                not undone
                and s.t_impact >= self._quiet_until_ms
                and self.settings.is_fall(s.features, s.score)
            )
            if self._on_candidate is not None:
                returned = None if s.returned_ms is None else (s.returned_ms - s.t_impact) / 1e3
                self._report(
                    s.t_impact,
                    decided,
                    s.features,
                    s.score,
                    is_fall,
                    undone,
                    held=s.held,
                    returned=returned,
                )
            if not is_fall:
                continue
            self._quiet_until_ms = s.t_impact + 1000.0 * self.settings.refractory_s
            t0, window = self._event_window(s)
            events.append(
                FallEvent(
                    impact_ts_ms=int(round(s.t_impact)),
                    decided_ts_ms=int(round(decided)),
                    peak_g=round(s.features.peak_g, 3),
                    score=round(s.score, 3),
                    window_hz=INTERNAL_HZ,
                    window_t0_ms=int(round(t0)),
                    window_acc=np.round(window, 4).tolist(),
                )
            )
        self._suspects = waiting
        return events

    def _time_at(self, t_ms: float, now_ms: float) -> float:
        """Time of the first buffered sample at or after ``t_ms`` (ms), else ``now_ms``."""
        times = self._t[: self._n]
        j = int(np.searchsorted(times, t_ms - 0.5 * _PERIOD_MS))
        return float(times[j]) if j < self._n else now_ms

    def _event_window(self, s: _Suspect) -> tuple[float, np.ndarray]:
        """(t0 ms, rows) from ``_EVENT_PRE_S`` before to ``_EVENT_POST_S`` after the impact."""
        i = s.k - self._k0
        if s.epoch != self._epoch or i - self._event_pre < 0:
            return s.window_t0, s.window  # the buffer was reset since: what was seen then
        lo = i - self._event_pre
        hi = min(self._n, i + self._event_post + 1)
        return float(self._t[lo]), self._acc[lo:hi]

    def _report(
        self,
        t_impact: float,
        decided: float,
        feats: ImpactFeatures,
        score: float,
        is_fall: bool,
        reversed_: bool,
        *,
        held: bool = False,
        returned: float | None = None,
    ) -> None:
        assert self._on_candidate is not None
        self._on_candidate(
            CandidateImpact(
                int(round(t_impact)),
                int(round(decided)),
                feats,
                score,
                is_fall,
                reversed_,
                held_before=held,
                return_s=returned,
            )
        )
