"""NEWS2 sub-scores against the published chart (RCP 2017): every band edge, both SpO2 scales."""

from __future__ import annotations

import pytest

from edge.news2 import (
    news2_scores,
    score_pulse,
    score_respiration_rate,
    score_spo2,
    score_systolic_bp,
    score_temperature,
)

# (value, score) on both sides of every edge of the chart's rows
RESPIRATION = [
    (0, 3),
    (8, 3),
    (9, 1),
    (11, 1),
    (12, 0),
    (20, 0),
    (21, 2),
    (24, 2),
    (25, 3),
    (60, 3),
]
SPO2_SCALE1 = [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SPO2_SCALE2_AIR = [(50, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0)]
SPO2_SCALE2_AIR += [(93, 0), (97, 0), (100, 0)]
SPO2_SCALE2_OXYGEN = [(83, 3), (84, 2), (86, 1), (88, 0), (92, 0), (93, 1), (94, 1), (95, 2)]
SPO2_SCALE2_OXYGEN += [(96, 2), (97, 3), (100, 3)]
SYSTOLIC = [(50, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)]
PULSE = [(25, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2)]
PULSE += [(130, 2), (131, 3), (250, 3)]
TEMPERATURE = [(30.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1)]
TEMPERATURE += [(39.0, 1), (39.1, 2), (42.0, 2)]


@pytest.mark.parametrize(("rr", "score"), RESPIRATION)
def test_respiration_rate_bands(rr: float, score: int) -> None:
    assert score_respiration_rate(rr) == score


@pytest.mark.parametrize(("spo2", "score"), SPO2_SCALE1)
def test_spo2_scale1_bands(spo2: float, score: int) -> None:
    assert score_spo2(spo2) == score
    assert score_spo2(spo2, on_oxygen=True) == score  # scale 1: oxygen only adds the o2 row


@pytest.mark.parametrize(("spo2", "score"), SPO2_SCALE2_AIR)
def test_spo2_scale2_on_air(spo2: float, score: int) -> None:
    assert score_spo2(spo2, scale2=True) == score


@pytest.mark.parametrize(("spo2", "score"), SPO2_SCALE2_OXYGEN)
def test_spo2_scale2_on_oxygen(spo2: float, score: int) -> None:
    assert score_spo2(spo2, scale2=True, on_oxygen=True) == score


@pytest.mark.parametrize(("sbp", "score"), SYSTOLIC)
def test_systolic_bands(sbp: float, score: int) -> None:
    assert score_systolic_bp(sbp) == score


@pytest.mark.parametrize(("hr", "score"), PULSE)
def test_pulse_bands(hr: float, score: int) -> None:
    assert score_pulse(hr) == score


@pytest.mark.parametrize(("temp", "score"), TEMPERATURE)
def test_temperature_bands(temp: float, score: int) -> None:
    assert score_temperature(temp) == score


@pytest.mark.parametrize(
    ("fn", "value", "score"),
    [
        (score_pulse, 90.49, 0),  # charted as 90
        (score_pulse, 90.5, 1),  # charted as 91 (half up)
        (score_pulse, 40.5, 1),
        (score_respiration_rate, 20.5, 2),
        (score_respiration_rate, 8.49, 3),
        (score_spo2, 95.5, 0),
        (score_spo2, 91.49, 3),
        (score_systolic_bp, 110.5, 0),
        (score_temperature, 38.04, 0),
        (score_temperature, 38.05, 1),
        (score_temperature, 35.04, 3),
        (score_temperature, 39.05, 2),
    ],
)
def test_fractional_values_are_charted_half_up(fn: object, value: float, score: int) -> None:
    assert fn(value) == score  # type: ignore[operator]


def test_aggregate_scores_only_what_is_measured() -> None:
    assert news2_scores() == {"total": 0}
    s = news2_scores(hr=135, rr=22, spo2=93, temp=38.5)
    assert s == {"hr": 3, "rr": 2, "spo2": 2, "temp": 1, "total": 8}
    s = news2_scores(spo2=87, spo2_scale2=True, on_oxygen=True, sbp=120)
    assert s == {"spo2": 1, "sbp": 0, "o2": 2, "total": 3}
