"""Features of one candidate impact and the logistic model that turns them into fall evidence.

Everything here works on the detector's internal grid (``INTERNAL_HZ``) and on the signal
vector magnitude (SVM, ``|acc|`` in g) or on the gravity direction, so the pendant may be worn
in any orientation. A window is indexed so that the candidate's peak is at ``peak``; it holds
up to ``PRE_S`` seconds before (at least ``MIN_PRE_S``) and ``POST_S`` seconds after it.

Why these features (Bourke 2007/2008, Kangas 2008, Sucerquia 2017/2018):

* ``peak_g`` – a fall ends with an impact; log-scaled because impacts vary from 1.8 g
  (slow slump onto a mat) to 8 g.
* ``drop_gs`` – the speed gained in free fall before the impact: the largest sum of
  ``(1 g - SVM)`` over a run of samples in the 1.5 s before the peak, in g·s (×9.81 = m/s).
  Falls have one; stumbles and sit-downs much less (jumps have one: the tilt tells them).
* ``tilt_deg`` – angle between the gravity direction before the event and after it: a fall
  ends on the floor with the trunk turned by 40–90°, a sit-down or a stumble barely turns it.
* ``post_std_g`` – activity level once the body settled (1–2.5 s after the peak): walking and
  jogging continue, a fallen person lies almost still (log-scaled).
* ``impact_gs`` – the area of ``|SVM - 1 g|`` within ±0.5 s of the peak, which is less
  sensitive to the sample rate than the single peak sample.

Besides the model's inputs, two rules about *posture reversal* (``held_before`` and
``returns_to``) use the gravity direction in the pendant's own frame, so they need no
knowledge of how it is worn: a fall leaves the trunk in a new orientation for good, whereas
lying down and sitting up again, or rolling onto one side and back, undoes a posture change
within seconds. A candidate that turned the trunk by ``POSTURE_CHANGE_DEG`` or more is a
*reversal* if the trunk ends within ``SAME_POSTURE_DEG`` of an orientation it held in the
``LOOKBACK_S`` before the event, or comes back within ``SAME_POSTURE_DEG`` of its orientation
before the event in the ``CONFIRM_S`` after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INTERNAL_HZ = 50.0
"""The detector resamples every stream to this rate (Hz) before looking at it."""

PRE_S = 3.0
"""Seconds of signal used before a peak (posture before the event)."""

MIN_PRE_S = 1.5
"""Seconds that must precede a peak; less only happens right after a stream (re)starts."""

POST_S = 2.5
"""Seconds of signal needed after a peak before deciding (posture and stillness after)."""

CONFIRM_S = 7.0
"""Seconds after a peak in which a return to the posture before it cancels the candidate
(SisFall: lying down and sitting up again, rolling over and back take 3.5-7.5 s)."""

LOOKBACK_S = 10.0
"""Seconds before a peak searched for an orientation the trunk held earlier."""

POSTURE_CHANGE_DEG = 45.0
"""Tilt (°) from which a candidate is a posture change that the reversal rules may undo."""

SAME_POSTURE_DEG = 30.0
"""Two 1 s mean gravity directions closer than this (°) are the same posture."""

POSTURE_WINDOW_S = 1.0
"""Length (s) of the mean that gives a gravity direction (walking averages out over 1 s)."""

PRE_POSTURE_S = (-2.5, -1.0)
POST_POSTURE_S = (1.0, POST_S)
FREE_FALL_S = (-1.5, 0.0)
IMPACT_S = (-0.5, 0.5)

FEATURE_NAMES = ("log_peak_g", "log_drop_gs", "sin_tilt", "log_post_std_g", "log_impact_gs")
"""Model inputs. Logs turn the linear model into a product of powers, so a fall needs all the
evidence together (an AND), and tilt beyond 90° counts as 90° (face-down is no more a fall)."""

DROP_FLOOR_GS = 0.02
"""Added to ``drop_gs`` before the log (g·s): a 0.2 m/s drop is noise, not free fall."""


@dataclass(frozen=True)
class ImpactFeatures:
    """Physically meaningful description of a candidate impact (see module docstring)."""

    peak_g: float
    drop_gs: float
    tilt_deg: float
    post_std_g: float
    impact_gs: float
    pre_up: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Unit gravity direction before the event (pendant frame), 2.5-1 s before the peak."""
    post_up: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Unit gravity direction after the event (pendant frame), 1-2.5 s after the peak."""

    def vector(self) -> list[float]:
        """Model inputs in the order of ``FEATURE_NAMES``."""
        return [
            math.log(max(self.peak_g, 1e-3)),
            math.log(max(self.drop_gs, 0.0) + DROP_FLOOR_GS),
            math.sin(math.radians(min(self.tilt_deg, 90.0))),
            math.log(max(self.post_std_g, 1e-3)),
            math.log(max(self.impact_gs, 1e-3)),
        ]


@dataclass(frozen=True)
class LogisticModel:
    """``score = bias + Σ weight·(x - mean)/scale``; a fall when the score exceeds a threshold.

    The score is a log-odds (logit); 0 means 50 % fall probability under the training prior.
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weight: tuple[float, ...]
    bias: float

    def score(self, x: Sequence[float]) -> float:
        """Logit of one feature vector (order of ``FEATURE_NAMES``)."""
        terms = zip(x, self.mean, self.scale, self.weight, strict=True)
        return self.bias + sum(w * (v - m) / s for v, m, s, w in terms)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Logits of rows of features ``x`` (n, len(FEATURE_NAMES))."""
        z = (np.asarray(x, dtype=float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return np.asarray(z @ np.asarray(self.weight) + self.bias)


def _samples(seconds: float) -> int:
    return int(round(seconds * INTERNAL_HZ))


def window_bounds() -> tuple[int, int, int]:
    """Samples wanted before, required before, and required after a peak."""
    return _samples(PRE_S), _samples(MIN_PRE_S), _samples(POST_S)


def _span(span: tuple[float, float]) -> tuple[int, int]:
    """Sample offsets [lo, hi) from the peak covering ``span`` (s), both ends included."""
    return _samples(span[0]), _samples(span[1]) + 1


_FREE_FALL, _PRE_POSTURE, _POST_POSTURE, _IMPACT = (
    _span(FREE_FALL_S),
    _span(PRE_POSTURE_S),
    _span(POST_POSTURE_S),
    _span(IMPACT_S),
)
_DT = 1.0 / INTERNAL_HZ


def _std(x: np.ndarray) -> float:
    centred = x - x.sum() / len(x)
    return math.sqrt(float(centred @ centred) / len(x))


def post_activity_g(acc: np.ndarray, peak: int) -> float:
    """``post_std_g`` alone (g): the cheap first check on a candidate, see ``impact_features``."""
    post = acc[peak + _POST_POSTURE[0] : peak + _POST_POSTURE[1]]
    return _std(np.sqrt(np.einsum("ij,ij->i", post, post)))


def impact_features(acc: np.ndarray, peak: int) -> ImpactFeatures:
    """Describe the candidate impact at index ``peak`` of ``acc`` ((N, 3) in g at INTERNAL_HZ).

    ``acc`` must hold ``MIN_PRE_S`` before and ``POST_S`` after ``peak``; windows reaching
    further back are clipped to what there is. Values must be finite. Runs only for candidate
    impacts, yet is kept to a few numpy calls (~30 µs) since walking makes one every step.
    """
    _, min_before, after = window_bounds()
    assert peak >= min_before and peak + after < len(acc), "window does not cover the peak"
    svm = np.sqrt(np.einsum("ij,ij->i", acc, acc))

    def sl(span: tuple[int, int]) -> slice:
        return slice(max(0, peak + span[0]), peak + span[1])

    deficit = np.empty(_FREE_FALL[1] - _FREE_FALL[0] + 1)
    deficit[0] = 0.0
    np.cumsum(1.0 - svm[sl(_FREE_FALL)], out=deficit[1:])
    drop_gs = float((deficit - np.minimum.accumulate(deficit)).max()) * _DT
    pre_up = _unit(acc[sl(_PRE_POSTURE)].sum(axis=0).tolist())
    post_up = _unit(acc[sl(_POST_POSTURE)].sum(axis=0).tolist())
    cos = sum(p * q for p, q in zip(pre_up, post_up, strict=True))
    tilt_deg = math.degrees(math.acos(max(-1.0, min(1.0, cos))))
    post_std_g = _std(svm[sl(_POST_POSTURE)])
    impact_gs = float(np.abs(svm[sl(_IMPACT)] - 1.0).sum()) * _DT
    return ImpactFeatures(
        float(svm[peak]), drop_gs, tilt_deg, post_std_g, impact_gs, pre_up, post_up
    )


def _unit(v: list[float]) -> tuple[float, float, float]:
    norm = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    if norm < 1e-9:
        return (0.0, 0.0, 0.0)  # no direction: matches nothing, see ``_SAME_COS``
    return (v[0] / norm, v[1] / norm, v[2] / norm)


_WINDOW = _samples(POSTURE_WINDOW_S)
_SAME_COS = math.cos(math.radians(SAME_POSTURE_DEG))


def window_directions(acc: np.ndarray) -> np.ndarray:
    """Sums of ``acc`` ((N, 3), g) over each run of ``POSTURE_WINDOW_S``, one per window end.

    Row j covers ``acc[j : j + window]``: (N - window + 1, 3), unnormalised (only the
    direction matters), empty when ``acc`` is shorter than a window.
    """
    if len(acc) < _WINDOW:
        return np.empty((0, 3))
    cs = np.cumsum(acc, axis=0)
    out = cs[_WINDOW - 1 :].copy()
    out[1:] -= cs[: len(acc) - _WINDOW]
    return out


def matches(sums: np.ndarray, up: Sequence[float]) -> bool:
    """Whether any row of ``sums`` (window_directions) is within SAME_POSTURE_DEG of ``up``."""
    return first_match(sums, up) >= 0


def first_match(sums: np.ndarray, up: Sequence[float]) -> int:
    """Index of the first row of ``sums`` within SAME_POSTURE_DEG of ``up``, else -1."""
    if not len(sums) or sum(u * u for u in up) < 0.25:
        return -1
    dots = sums @ np.asarray(up, dtype=float)
    norms = np.sqrt(np.einsum("ij,ij->i", sums, sums))
    hits = np.flatnonzero(dots >= _SAME_COS * norms)
    return int(hits[0]) if len(hits) else -1


def held_before(history: np.ndarray, features: ImpactFeatures) -> bool:
    """Backward reversal rule: the event turned the trunk by ``POSTURE_CHANGE_DEG`` or more
    into an orientation it already held (1 s mean) in ``history`` ((N, 3) g at INTERNAL_HZ,
    the ``LOOKBACK_S`` up to 2 s before the peak): sitting up again after lying down, rolling
    back after rolling over. A fall ends in a new posture."""
    if features.tilt_deg < POSTURE_CHANGE_DEG:
        return False
    return matches(window_directions(history), features.post_up)
