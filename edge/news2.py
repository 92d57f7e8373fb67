"""NEWS2 sub-scores (Royal College of Physicians, 2017) for the parameters a wearable measures.

The published chart works on charted numbers: whole breaths/min, %, mmHg and beats/min,
and temperature to 0.1 °C. Wearables report fractions (a 10-s median of 90.6 bpm), so each
value is first rounded half-up to the chart's resolution and then scored with the chart's
integer bands; every band edge below is the chart's own.

Two chart rows are not measured at home and are therefore not scored here:

* consciousness (ACVPU) — assumed "alert" (0). A confused elder is *not* detected;
* air or oxygen — unknown unless the care plan says the elder is on supplemental oxygen.
  With ``on_oxygen=True`` the "air or oxygen" row adds 2 and SpO2 scale 2 scores the
  high-saturation bands; otherwise the elder is assumed to breathe air.

SpO2 scale 2 is only for elders with confirmed hypercapnic respiratory failure (e.g. COPD),
whose target range (88–92 %) a clinician sets in the care plan.
"""

from __future__ import annotations

import math

__all__ = [
    "AGGREGATE_MEDIUM",
    "AGGREGATE_HIGH",
    "news2_scores",
    "score_pulse",
    "score_respiration_rate",
    "score_spo2",
    "score_systolic_bp",
    "score_temperature",
]

AGGREGATE_MEDIUM = 5
"""Aggregate NEWS2 from which the chart asks for an urgent clinical review."""
AGGREGATE_HIGH = 7
"""Aggregate NEWS2 from which the chart asks for an emergency response."""


def _round_half_up(x: float, decimals: int = 0) -> float:
    scale = 10.0**decimals
    return math.floor(x * scale + 0.5) / scale


def score_respiration_rate(rr_per_min: float) -> int:
    """Respiration rate (breaths/min): ≤8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥25 → 3."""
    v = _round_half_up(rr_per_min)
    if v <= 8:
        return 3
    if v <= 11:
        return 1
    if v <= 20:
        return 0
    if v <= 24:
        return 2
    return 3


def score_spo2(spo2_pct: float, *, scale2: bool = False, on_oxygen: bool = False) -> int:
    """SpO2 (%). Scale 1: ≤91 → 3, 92–93 → 2, 94–95 → 1, ≥96 → 0.

    Scale 2: ≤83 → 3, 84–85 → 2, 86–87 → 1, 88–92 → 0; ≥93 scores 0 on air, and on
    oxygen 93–94 → 1, 95–96 → 2, ≥97 → 3 (over-oxygenation risks CO2 retention).
    """
    v = _round_half_up(spo2_pct)
    if not scale2:
        if v <= 91:
            return 3
        if v <= 93:
            return 2
        if v <= 95:
            return 1
        return 0
    if v <= 83:
        return 3
    if v <= 85:
        return 2
    if v <= 87:
        return 1
    if v <= 92 or not on_oxygen:
        return 0
    if v <= 94:
        return 1
    if v <= 96:
        return 2
    return 3


def score_systolic_bp(sbp_mmhg: float) -> int:
    """Systolic blood pressure (mmHg): ≤90 → 3, 91–100 → 2, 101–110 → 1, 111–219 → 0, ≥220 → 3."""
    v = _round_half_up(sbp_mmhg)
    if v <= 90:
        return 3
    if v <= 100:
        return 2
    if v <= 110:
        return 1
    if v <= 219:
        return 0
    return 3


def score_pulse(hr_bpm: float) -> int:
    """Pulse (beats/min): ≤40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥131 → 3."""
    v = _round_half_up(hr_bpm)
    if v <= 40:
        return 3
    if v <= 50:
        return 1
    if v <= 90:
        return 0
    if v <= 110:
        return 1
    if v <= 130:
        return 2
    return 3


def score_temperature(temp_c: float) -> int:
    """Temperature (°C, 0.1 resolution): ≤35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0,
    38.1–39.0 → 1, ≥39.1 → 2."""
    v = _round_half_up(temp_c, 1)
    if v <= 35.0:
        return 3
    if v <= 36.0:
        return 1
    if v <= 38.0:
        return 0
    if v <= 39.0:
        return 1
    return 2


def news2_scores(
    *,
    hr: float | None = None,
    rr: float | None = None,
    spo2: float | None = None,
    temp: float | None = None,
    sbp: float | None = None,
    spo2_scale2: bool = False,
    on_oxygen: bool = False,
) -> dict[str, int]:
    """Sub-scores of the measured parameters plus ``"total"``; ``None`` parameters are left out.

    Keys: ``hr``, ``rr``, ``spo2``, ``temp``, ``sbp``, ``o2`` (only when ``on_oxygen``), ``total``.
    The total is therefore a lower bound of the full chart's aggregate.
    """
    scores: dict[str, int] = {}
    if hr is not None:
        scores["hr"] = score_pulse(hr)
    if rr is not None:
        scores["rr"] = score_respiration_rate(rr)
    if spo2 is not None:
        scores["spo2"] = score_spo2(spo2, scale2=spo2_scale2, on_oxygen=on_oxygen)
    if temp is not None:
        scores["temp"] = score_temperature(temp)
    if sbp is not None:
        scores["sbp"] = score_systolic_bp(sbp)
    if on_oxygen:
        scores["o2"] = 2
    scores["total"] = sum(scores.values())
    return scores
