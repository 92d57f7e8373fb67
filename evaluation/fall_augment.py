"""Make young subjects' falls look like elderly falls, and one device look like another.

The development data has no elderly falls (SisFall's elderly subjects performed ADLs only),
yet elderly falls are slower and softer: muscles brake the descent, the trunk folds, the
impact is damped by a hand, a hip, a knee. ``elderly_like`` turns a recorded fall into such
a fall by physics rather than by copying any file:

* the signal is split into a *posture* part (gravity in the sensor frame: 1 g along the
  direction of a running median, which a 60 ms impact spike cannot move) and a *dynamic*
  part (what is left, including the sag below 1 g while the body drops);
* the descent and impact (``SPAN_S`` around the peak) are **time-stretched** by ``stretch``
  (a slower descent), the dynamic part is **scaled** by ``soften`` (less free-fall depth,
  lower impact) and **low-passed** over ``blur_s`` (a damped impact: longer, lower peak);
* the posture part keeps its orientation change, only stretched in time, so the trunk ends
  turned as it was.

Velocity at impact scales roughly with ``soften × stretch`` (less deficit, for longer); the
defaults draw the stretch (1.2-1.8) and that speed ratio (0.55-0.9) and derive the soften
(0.3-0.75), so the copies hit 10-45 % slower, over a longer descent, with impact peaks
lower by half or more: the direction the held-out elderly subject differs in.

``perturbed`` makes a recording look like another lab's device: any orientation (a uniform
random rotation), per-axis gain and offset errors of a cheap MEMS accelerometer, noise.

Used only in evaluation: augmented falls of *training* subjects may be added to a fit, and
augmented falls of *held-out* subjects give the separate "elderly-like" sensitivity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d
from scipy.spatial.transform import Rotation

from evaluation.recordings import Recording, RecordingInfo

SPAN_S = (-2.5, 1.0)
"""Part of a fall (s around its peak acceleration) that is slowed and softened."""

POSTURE_MEDIAN_S = 0.5
"""Running-median length (s) that separates posture (gravity) from motion."""


@dataclass(frozen=True)
class ElderlyParams:
    """How much slower and softer (see module docstring)."""

    stretch: float  # descent and impact take this many times longer (≥ 1)
    soften: float  # dynamic acceleration multiplied by this (0..1); speed × soften·stretch
    blur_s: float  # impact low-passed over this many seconds


def draw_elderly_params(rng: np.random.Generator) -> ElderlyParams:
    """Random parameters in the range argued for in docs/fall-detection.md."""
    stretch = float(rng.uniform(1.2, 1.8))
    speed = float(rng.uniform(0.55, 0.9))  # speed at impact relative to the young fall
    return ElderlyParams(
        stretch=stretch, soften=speed / stretch, blur_s=float(rng.uniform(0.04, 0.12))
    )


def elderly_like(rec: Recording, params: ElderlyParams) -> Recording:
    """A slower, softer version of the fall in ``rec`` (acc only; the gyroscope is dropped)."""
    hz = rec.hz
    acc = np.asarray(rec.acc, dtype=float)
    if len(acc) < int(4 * hz):
        return replace(rec, gyr=None)
    svm = np.linalg.norm(acc, axis=1)
    peak = int(np.argmax(svm))
    lo = max(0, peak + int(SPAN_S[0] * hz))
    hi = min(len(acc), peak + int(SPAN_S[1] * hz))
    k = max(3, int(POSTURE_MEDIAN_S * hz) | 1)
    # gravity is always 1 g: the median gives its direction, everything else is motion
    # (a free fall lasting longer than half the median would otherwise pass for posture)
    direction = median_filter(acc, size=(k, 1), mode="nearest")
    norms = np.linalg.norm(direction, axis=1, keepdims=True)
    posture = direction / np.maximum(norms, 1e-6)
    dynamic = acc - posture
    # stretch [lo, hi) by `stretch`: new samples read the old signal at slower times
    n_new = int(round((hi - lo) * params.stretch))
    src = lo + np.arange(n_new) / params.stretch
    idx = np.arange(len(acc))

    def stretched(x: np.ndarray) -> np.ndarray:
        mid = np.column_stack([np.interp(src, idx, x[:, j]) for j in range(3)])
        return np.vstack([x[:lo], mid, x[hi:]])

    posture_s, dynamic_s = stretched(posture), stretched(dynamic)
    # soften: scale the dynamic part over the stretched span, tapering in and out over 0.3 s
    gain = np.ones(len(dynamic_s))
    taper = max(1, int(0.3 * hz))
    ramp = np.linspace(1.0, params.soften, taper)
    gain[lo : lo + n_new] = params.soften
    gain[max(0, lo - taper) : lo] = ramp[: lo - max(0, lo - taper)]
    end = lo + n_new
    gain[end : end + taper] = ramp[::-1][: len(gain[end : end + taper])]
    blur = max(1, int(round(params.blur_s * hz)))
    dynamic_s = uniform_filter1d(dynamic_s, blur, axis=0, mode="nearest") * gain[:, None]
    info = replace(rec.info, activity=f"{rec.info.activity}~elderly")
    return Recording(info, hz, posture_s + dynamic_s, None)


def perturbed(rec: Recording, rng: np.random.Generator) -> Recording:
    """``rec`` as another device would record it: random orientation, gain ±3 %, offset
    ±0.04 g per axis, 0.01 g white noise (acc only)."""
    rotation = Rotation.random(random_state=rng).as_matrix()
    gain = rng.uniform(0.97, 1.03, 3)
    offset = rng.uniform(-0.04, 0.04, 3)
    acc = (np.asarray(rec.acc, dtype=float) @ rotation.T) * gain + offset
    acc = acc + rng.normal(0.0, 0.01, acc.shape)
    return Recording(rec.info, rec.hz, acc, None)


def relabelled(info: RecordingInfo, suffix: str) -> RecordingInfo:
    """The same recording under another activity name (to report it separately)."""
    return replace(info, activity=f"{info.activity}{suffix}")
