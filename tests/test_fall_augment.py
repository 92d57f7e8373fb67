"""Elderly-like falls and another device, made from a recording (evaluation only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.fall_augment import ElderlyParams, draw_elderly_params, elderly_like, perturbed
from evaluation.recordings import Recording, RecordingInfo
from tests.test_fall_detector import FALL

HZ = 200.0


def _fall_recording() -> Recording:
    t = np.arange(int(15 * HZ)) / HZ
    info = RecordingInfo(Path("F01_SA01_R01.txt"), True, "SA01", "F01", HZ)
    return Recording(info, HZ, FALL(t), None)


def _descent_deficit(acc: np.ndarray) -> float:
    """Integral of the sag below 1 g (g·s): the speed the body gained while dropping."""
    return float(np.clip(1.0 - np.linalg.norm(acc, axis=1), 0.0, None).sum() / HZ)


def test_elderly_like_is_slower_and_softer_but_ends_in_the_same_posture() -> None:
    rec = _fall_recording()
    soft = elderly_like(rec, ElderlyParams(stretch=1.5, soften=0.5, blur_s=0.08))
    assert soft.info.activity == "F01~elderly" and soft.info.is_fall
    peak, soft_peak = np.linalg.norm(rec.acc, axis=1).max(), np.linalg.norm(soft.acc, axis=1).max()
    assert soft_peak < 0.6 * peak  # a damped landing
    assert len(soft.acc) == len(rec.acc) + int(round(3.5 * HZ * 0.5))  # 3.5 s span, 1.5×
    assert _descent_deficit(soft.acc) < _descent_deficit(rec.acc)  # slower at impact
    end, soft_end = rec.acc[-200:].mean(axis=0), soft.acc[-200:].mean(axis=0)
    assert np.allclose(end, soft_end, atol=0.02)  # the trunk ends turned as it was


def test_drawn_parameters_stay_in_the_documented_ranges() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = draw_elderly_params(rng)
        assert 1.2 <= p.stretch <= 1.8 and 0.04 <= p.blur_s <= 0.12
        assert 0.55 - 1e-9 <= p.soften * p.stretch <= 0.9 + 1e-9  # speed ratio at impact


def test_another_device_keeps_the_magnitude_up_to_its_calibration() -> None:
    rec = _fall_recording()
    other = perturbed(rec, np.random.default_rng(1))
    svm, other_svm = np.linalg.norm(rec.acc, axis=1), np.linalg.norm(other.acc, axis=1)
    assert not np.allclose(rec.acc, other.acc, atol=0.1)  # turned
    assert np.median(np.abs(other_svm - svm)) < 0.08  # gain 3 %, offset 0.04 g, noise
