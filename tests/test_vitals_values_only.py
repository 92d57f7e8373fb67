"""The vital-signs detector on wearables without motion or quality channels: artefacts that
mimic emergencies (falsely low scattered SpO2, a halved or doubled heart rate) raise none,
and every deterioration shape still raises one within two minutes of its NEWS2 level."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.vital_signs import VitalsDetector, VitalsEvent, VitalsSample, VitalsSettings
from firmware_sim.vitals_model import SCENARIOS, Deterioration, ElderVitalsModel

T0 = 1_700_000_000_000
VALUES_ONLY = frozenset({"hr", "spo2", "rr", "temp"})
"""A wearable that reports values only: no motion, no quality index."""


def _steady(rng: np.random.Generator, hr: float = 72.0, spo2: float = 96.5) -> dict[str, Any]:
    return {
        "hr": round(hr + rng.normal(0, 1.5)),
        "spo2": min(round(spo2 + rng.normal(0, 0.6)), 100),
        "rr": round(16 + rng.normal(0, 1.0)),
        "temp": round(36.7 + rng.normal(0, 0.05), 1),
    }


def _run(episode: Any, *, episode_s: int, seed: int = 0) -> list[tuple[float, VitalsEvent]]:
    """1 h of a steady elder, then ``episode(t, rng)`` for ``episode_s`` s, then 20 min steady;
    the wearable reports values only (its quality index, if it had one, would be ignored)."""
    det = VitalsDetector(VitalsSettings(channels=VALUES_ONLY))
    rng = np.random.default_rng(seed)
    events: list[tuple[float, VitalsEvent]] = []
    start = 3600
    for t in range(start + episode_s + 1200):
        fields = _steady(rng)
        if start <= t < start + episode_s:
            fields = episode(t - start, rng)
        fields["quality"] = 0.99  # a quality the care plan says the device does not have
        for e in det.push(VitalsSample(T0 + t * 1000, **fields)):
            events.append((float(t), e))
    return events


def _alarms(events: list[tuple[float, VitalsEvent]]) -> list[tuple[float, str | None]]:
    return [(t, e.severity) for t, e in events if e.kind == "alarm"]


def _loose_strap(rng: np.random.Generator) -> dict[str, Any]:
    """Poor contact: SpO2 falsely low and scattered, the skin under the strap cooler."""
    return {
        "hr": round(72 + rng.normal(0, 6.0)),
        "spo2": round(88.5 + rng.normal(0, 2.5)),
        "rr": round(16 + rng.normal(0, 2.0)),
        "temp": round(35.4 + rng.normal(0, 0.05), 1),
    }


def test_falsely_low_scattered_spo2_raises_no_emergency() -> None:
    events = _run(lambda t, rng: _loose_strap(rng), episode_s=40 * 60)
    assert _alarms(events) == []


@pytest.mark.parametrize("factor", [0.5, 2.0], ids=["halved", "doubled"])
def test_a_halved_or_doubled_heart_rate_during_poor_contact_raises_no_emergency(
    factor: float,
) -> None:
    def episode(t: float, rng: np.random.Generator) -> dict[str, Any]:
        fields = _loose_strap(rng)
        if 300 <= t < 300 + 8 * 60:  # the PPG locks onto half / twice the pulse for 8 min
            fields["hr"] = round(72 * factor + rng.normal(0, 2.0))
        return fields

    events = _run(episode, episode_s=30 * 60)
    assert _alarms(events) == []


def test_the_same_halved_rate_on_a_clean_signal_is_a_heart_block() -> None:
    """The octave alone is not dismissed: with steady SpO2 and a warm wrist it is real."""

    def episode(t: float, rng: np.random.Generator) -> dict[str, Any]:
        return {**_steady(rng), "hr": round(36 + rng.normal(0, 1.0))}

    events = _run(episode, episode_s=10 * 60)
    [(t, severity)] = _alarms(events)
    assert severity == "critical" and 3600 < t <= 3600 + 120


@pytest.mark.parametrize("backed", [True, False], ids=["pulse-and-breathing-up", "alone"])
def test_a_long_low_spo2_in_doubt_still_alarms_later(backed: bool) -> None:
    """Persistently low SpO2 with a cold hand: weaker evidence, longer persistence, never
    ignored. With pulse and respiration risen (hypoxaemia rarely leaves them alone) it takes
    ``weak_persistence_s``; with nothing to back it, ``doubtful_persistence_s``."""

    def episode(t: float, rng: np.random.Generator) -> dict[str, Any]:
        fields = _steady(rng, spo2=86.0, hr=88.0 if backed else 72.0)
        fields["rr"] = round((22 if backed else 16) + rng.normal(0, 1.0))
        fields["temp"] = round(35.6 + rng.normal(0, 0.05), 1)  # a cold hand
        return fields

    events = _run(episode, episode_s=45 * 60)
    [(t, severity)] = _alarms(events)
    s = VitalsSettings()
    wait = s.weak_persistence_s if backed else s.doubtful_persistence_s
    assert severity == "critical"
    assert 3600 + wait * 0.75 <= t <= 3600 + wait + 120


def _first_alarm_delay(kind: str, shape: str, seed: int) -> float | None:
    """Delay (s) of the first alarm that counts (critical; fever: any) after the NEWS2 level,
    on a simulated wearable (artefacts included) read values only; None if none came."""
    onset = 2 * 3600.0
    model = ElderVitalsModel(
        seed,
        deterioration=Deterioration(kind, onset, shape=shape),  # type: ignore[arg-type]
    )
    d = model.deterioration
    assert d is not None and d.ramp_s is not None
    level = model.level_reached_s(onset + d.ramp_s + 1800)
    assert level is not None
    start = onset - 1800
    rec = model.simulate(level + 900 - start, start_s=start)
    p = rec.present
    det = VitalsDetector(VitalsSettings(spo2_scale2=model.profile.spo2_scale2))
    ts = T0 + (rec.t_s[p] * 1000).astype(np.int64)
    events = det.push_many(ts, **{c: getattr(rec, c)[p] for c in ("hr", "spo2", "rr", "temp")})
    wanted = [
        (e.ts_ms - T0) / 1000
        for e in events
        if e.kind == "alarm" and (e.severity == "critical" or kind == "fever")
    ]
    assert not wanted or wanted[0] >= onset, "an alarm before the deterioration began"
    return wanted[0] - level if wanted else None


@pytest.mark.parametrize(("kind", "shape"), SCENARIOS, ids=["/".join(k) for k in SCENARIOS])
def test_every_deterioration_shape_alarms_in_time_without_motion_or_quality(
    kind: str, shape: str
) -> None:
    """Three elders per shape: every one alarms, the median delay after the NEWS2 level is at
    most 120 s (fever, a warning-level kind: 10 min) and none waits over 5 min."""
    delays = [_first_alarm_delay(kind, shape, seed) for seed in (4242, 4243, 4244)]
    assert all(d is not None for d in delays), delays
    found = [d for d in delays if d is not None]
    limit = 600.0 if kind == "fever" else 120.0
    assert float(np.median(found)) <= limit and max(found) <= 300 + limit, delays


def test_the_care_plan_channel_set_ignores_channels_the_device_does_not_have() -> None:
    """A device said to report no quality: a stray quality value does not blind the
    detector (with quality in the set, the same stream raises nothing)."""

    def stream(det: VitalsDetector) -> list[VitalsEvent]:
        rng = np.random.default_rng(3)
        out: list[VitalsEvent] = []
        for t in range(900):
            fields = _steady(rng, spo2=86.0 if t >= 300 else 96.5)
            out += det.push(VitalsSample(T0 + t * 1000, quality=0.1, **fields))
        return [e for e in out if e.kind == "alarm"]

    assert stream(VitalsDetector(VitalsSettings())) == []
    [alarm] = stream(VitalsDetector(VitalsSettings(channels=VALUES_ONLY)))
    assert alarm.severity == "critical" and "spo2" in alarm.reason
