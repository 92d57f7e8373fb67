"""Evaluate :class:`edge.vital_signs.VitalsDetector` on a dataset in the generic vitals format.

* **Stable recordings** → false alarms: critical and warning alarms per monitored hour and per
  elder-day (targets: ≤ 1 critical per 30 elder-days, ≤ 1 warning per 7 elder-days).
* **Deterioration recordings** → detection and delay. A critical kind (hypoxaemia,
  tachycardia, bradycardia, tachypnoea) is detected by a *critical* alarm at or after
  ``onset_s``; fever (tuned to the warning level) by any alarm. The delay is measured from
  ``level_s``, when the true signal reached the NEWS2 level the kind is tuned for (red
  sub-score; fever: temp ≥ 39.1 °C) — from the index if given, else estimated as the first
  time after onset that the 60-s rolling median of the recorded signal reaches it — and
  also from ``onset_s``. Alarms before onset count as pre-onset false alarms.

Monitored hours are the 10-s epochs that hold at least one sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import median_filter

from edge.vital_signs import VitalsDetector, VitalsSettings
from evaluation.vitals_dataset import (
    RecordingInfo,
    VitalsRecording,
    load_index,
    load_recording,
)

__all__ = [
    "RecordingResult",
    "evaluate_dataset",
    "evaluate_recording",
    "format_report",
    "summarize",
]

CRITICAL_KINDS = frozenset({"hypoxaemia", "tachycardia", "bradycardia", "tachypnoea", "sepsis"})


def kind_of(label: str) -> str:
    """The kind of a recording label (``hypoxaemia/oscillating`` → ``hypoxaemia``)."""
    return label.split("/", 1)[0]


T0_MS = 1_700_000_000_000
"""Arbitrary epoch offset for recording time 0 (the detector only uses differences and
hours since the epoch)."""


@dataclass(frozen=True)
class RecordingResult:
    """What the detector did on one recording; times in s from the recording's start."""

    info: RecordingInfo
    duration_s: float
    monitored_s: float
    alarms: tuple[tuple[float, str], ...]
    """(time, severity) of each raised alarm (an escalation warning → critical is a second one)."""
    faults: int
    level_s: float | None


def _estimate_level_s(rec: VitalsRecording) -> float | None:
    """First time after onset the 60-s rolling median of the relevant signal reaches the
    NEWS2 level of its kind (used when the index has no ``level_s``)."""
    info = rec.info
    if info.onset_s is None:
        return None
    column, test = {
        "hypoxaemia": ("spo2", lambda x: x < (83.5 if info.spo2_scale2 else 91.5)),
        "tachycardia": ("hr", lambda x: x >= 130.5),
        "bradycardia": ("hr", lambda x: x < 40.5),
        "tachypnoea": ("rr", lambda x: x >= 24.5),
        "fever": ("temp", lambda x: x >= 39.05),
    }.get(kind_of(info.label), ("", None))  # type: ignore[assignment]
    if test is None or column not in rec.columns:
        return None
    x = rec.columns[column]
    ok = ~np.isnan(x)
    t, x = rec.t_s[ok], x[ok]
    if t.size < 60:
        return None
    smooth = median_filter(x, size=61, mode="nearest")
    hit = np.flatnonzero((t >= info.onset_s) & test(smooth))
    return float(t[hit[0]]) if hit.size else None


def evaluate_recording(rec: VitalsRecording, *, values_only: bool = False) -> RecordingResult:
    """Run a fresh detector over one recording (vectorised :meth:`VitalsDetector.push_many`).
    ``values_only`` ignores the wearable's ``motion``/``quality`` columns (ablation)."""
    info = rec.info
    det = VitalsDetector(VitalsSettings(spo2_scale2=info.spo2_scale2))
    ts = (np.round(rec.t_s * 1000.0)).astype(np.int64) + T0_MS
    cols = {c: rec.columns.get(c) for c in ("hr", "spo2", "rr", "temp", "sbp")}
    extra = {} if values_only else {c: rec.columns.get(c) for c in ("motion", "quality")}
    events = det.push_many(ts, **cols, **extra)  # type: ignore[arg-type]
    alarms = tuple(
        ((e.ts_ms - T0_MS) / 1000.0, e.severity or "") for e in events if e.kind == "alarm"
    )
    faults = sum(e.kind == "fault" for e in events)
    epochs = np.unique(ts // 10_000).size if ts.size else 0
    duration = float(rec.t_s[-1] - rec.t_s[0] + 1.0) if rec.t_s.size else 0.0
    level = info.level_s if info.level_s is not None else _estimate_level_s(rec)
    return RecordingResult(info, duration, epochs * 10.0, alarms, faults, level)


def _evaluate_path(args: tuple[Path, RecordingInfo, bool]) -> RecordingResult:
    root, info, values_only = args
    return evaluate_recording(load_recording(root, info), values_only=values_only)


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


def summarize(results: Iterable[RecordingResult]) -> dict[str, Any]:
    """The evaluation's figures as a JSON-able dict (times in s, rates per hour / per days)."""
    results = list(results)
    stable = [r for r in results if r.info.label == "stable"]
    others = [r for r in results if r.info.label != "stable"]
    stable_hours = sum(r.monitored_s for r in stable) / 3600.0
    stable_days = sum(r.duration_s for r in stable) / 86400.0
    n_crit = sum(sev == "critical" for r in stable for _, sev in r.alarms)
    n_warn = sum(sev == "warning" for r in stable for _, sev in r.alarms)
    faults = sum(r.faults for r in stable)

    per_kind: dict[str, dict[str, Any]] = {}
    delays: list[float] = []
    delays_onset: list[float] = []
    detected = events = pre_onset = 0
    fever_events = fever_detected = 0
    for label in sorted({r.info.label for r in others}):
        kind = kind_of(label)
        rs = [r for r in others if r.info.label == label]
        k_delays: list[float] = []
        k_onset: list[float] = []
        k_det = 0
        k_warn_first: list[float] = []
        for r in rs:
            onset = r.info.onset_s or 0.0
            pre_onset += sum(t < onset for t, _ in r.alarms)
            wanted = [
                t
                for t, sev in r.alarms
                if t >= onset and (sev == "critical" or kind not in CRITICAL_KINDS)
            ]
            any_after = [t for t, _ in r.alarms if t >= onset]
            if any_after and wanted and any_after[0] < wanted[0]:
                k_warn_first.append(wanted[0] - any_after[0])
            if not wanted:
                continue
            k_det += 1
            k_onset.append(wanted[0] - onset)
            if r.level_s is not None:
                k_delays.append(wanted[0] - r.level_s)
        no_level = sum(r.level_s is None for r in rs)
        if kind == "fever":
            fever_events += len(rs)
            fever_detected += k_det
        per_kind[label] = {
            "events": len(rs),
            "detected": k_det,
            "needs": "critical" if kind in CRITICAL_KINDS else "any alarm",
            "delay_s_median": _quantile(k_delays, 0.5),
            "delay_s_p95": _quantile(k_delays, 0.95),
            "delay_from_onset_s_median": _quantile(k_onset, 0.5),
            "earlier_warning_lead_s_median": _quantile(k_warn_first, 0.5),
            "without_level": no_level,
        }
        if kind in CRITICAL_KINDS:
            events += len(rs)
            detected += k_det
            delays += k_delays
            delays_onset += k_onset

    def per(n: int, days: float, span: float) -> float | None:
        return n / days * span if days > 0 else None

    summary: dict[str, Any] = {
        "recordings": len(results),
        "stable_recordings": len(stable),
        "stable_hours": round(stable_hours, 2),
        "stable_elder_days": round(stable_days, 2),
        "false_alarms_per_hour": n_crit / stable_hours if stable_hours else None,
        "false_warnings_per_hour": n_warn / stable_hours if stable_hours else None,
        "false_critical": n_crit,
        "false_warnings": n_warn,
        "false_critical_per_30_elder_days": per(n_crit, stable_days, 30.0),
        "false_warnings_per_7_elder_days": per(n_warn, stable_days, 7.0),
        "sensor_faults_per_elder_day": faults / stable_days if stable_days else None,
        "events": events,
        "detected": detected,
        "detection_rate": detected / events if events else None,
        "delay_s_median": _quantile(delays, 0.5),
        "delay_s_p95": _quantile(delays, 0.95),
        "delay_from_onset_s_median": _quantile(delays_onset, 0.5),
        "delay_from_onset_s_p95": _quantile(delays_onset, 0.95),
        "pre_onset_alarms": pre_onset,
        "fever_events": fever_events,
        "fever_detected": fever_detected,
        "per_kind": per_kind,
    }
    fc, fw = summary["false_critical_per_30_elder_days"], summary["false_warnings_per_7_elder_days"]
    rate, med = summary["detection_rate"], summary["delay_s_median"]
    kind_medians = [
        k["delay_s_median"]
        for label, k in per_kind.items()
        if kind_of(label) in CRITICAL_KINDS and k["events"]
    ]
    summary["targets"] = {
        "false_critical_per_30_elder_days<=1": None if fc is None else fc <= 1.0,
        "false_warnings_per_7_elder_days<=1": None if fw is None else fw <= 1.0,
        "detection_rate>=0.99": None if rate is None else rate >= 0.99,
        "delay_s_median<=120": None if med is None else med <= 120.0,
        "every_kind_delay_s_median<=120": (
            None if not kind_medians else all(m is not None and m <= 120.0 for m in kind_medians)
        ),
        "fever_detected>=0.95": (
            None if not fever_events else fever_detected / fever_events >= 0.95
        ),
    }
    return summary


def evaluate_dataset(root: Path, *, values_only: bool = False, workers: int = 1) -> dict[str, Any]:
    """Load and evaluate every recording of ``root`` (``workers`` processes)."""
    root = Path(root)
    infos = load_index(root)
    jobs = [(root, info, values_only) for info in infos]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_evaluate_path, jobs, chunksize=1))
    else:
        results = [_evaluate_path(j) for j in jobs]
    summary = summarize(results)
    summary["dataset"] = str(root)
    summary["values_only"] = values_only
    return summary


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_report(s: dict[str, Any]) -> str:
    """Human-readable report of :func:`summarize`'s figures."""
    lines = [
        f"dataset: {s.get('dataset', '?')}{' (values only)' if s.get('values_only') else ''}",
        f"stable: {s['stable_recordings']} recordings, {s['stable_elder_days']} elder-days, "
        f"{s['stable_hours']} monitored h",
        f"  critical alarms: {s['false_critical']} "
        f"({_fmt(s['false_critical_per_30_elder_days'], '.2f')} per 30 elder-days, "
        f"{_fmt(s['false_alarms_per_hour'], '.5f')}/h)   target <= 1 per 30 elder-days",
        f"  warnings:        {s['false_warnings']} "
        f"({_fmt(s['false_warnings_per_7_elder_days'], '.2f')} per 7 elder-days, "
        f"{_fmt(s['false_warnings_per_hour'], '.5f')}/h)   target <= 1 per 7 elder-days",
        f"  sensor_not_worn faults: {_fmt(s['sensor_faults_per_elder_day'], '.2f')} per elder-day",
        f"critical deteriorations: {s['detected']}/{s['events']} detected "
        f"({_fmt(None if s['detection_rate'] is None else 100 * s['detection_rate'])} %)",
        f"  delay after NEWS2 level: median {_fmt(s['delay_s_median'])} s, "
        f"p95 {_fmt(s['delay_s_p95'])} s   target median <= 120 s",
        f"  delay after onset:       median {_fmt(s['delay_from_onset_s_median'])} s, "
        f"p95 {_fmt(s['delay_from_onset_s_p95'])} s",
        f"  alarms before onset: {s['pre_onset_alarms']}",
        f"fever: {s.get('fever_detected', 0)}/{s.get('fever_events', 0)} detected (any alarm)"
        "   target >= 95 %",
        "per kind (detected/events, delay after level median / p95, after onset median):",
    ]
    for kind, k in s["per_kind"].items():
        lines.append(
            f"  {kind:<26} {k['detected']:>3}/{k['events']:<3} ({k['needs']:<9})  "
            f"{_fmt(k['delay_s_median']):>6} / {_fmt(k['delay_s_p95']):>6} s  "
            f"onset+{_fmt(k['delay_from_onset_s_median'])} s"
        )
    met = [f"{t}: {'met' if ok else 'MISSED'}" for t, ok in s["targets"].items() if ok is not None]
    lines.append("targets: " + ", ".join(met))
    return "\n".join(lines)
