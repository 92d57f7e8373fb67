"""Vital-sign days whose heart rate is real: RR-interval recordings + the simulated wearable.

Each subject of an RR-interval folder (``<db>/<name>_rr_secs.txt.xz``: the time of the first
beat, then one interval per line, s — see ``../shared/datasets/rr-dev/README.md``) becomes
one simulated elder whose *true* heart rate is the recording's (per second: the mean rate of
the beats in the last 5 s, with its ectopy and gaps as they are); activity and sleep are read
from that rate, and SpO2, respiration, temperature, motion and quality are simulated around
them by :class:`firmware_sim.vitals_model.ElderVitalsModel`, with its artefacts (motion,
loose straps, cold hands, octave errors of the heart rate, freezes, garbage values, take-offs)
on top. Per subject: stable days (the whole recording, each with another wearable's
artefacts) and one recording per deterioration scenario (a 3-h stretch of the same real
heart rate, the deterioration starting 60–90 min in).

People, not recordings, are split into folds, so a detector tuned on one fold is reported on
people it has never seen.
"""

from __future__ import annotations

import lzma
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evaluation.vitals_dataset import DatasetFormatError, RecordingInfo, VitalsRecording
from evaluation.vitals_eval import (
    RecordingResult,
    evaluate_recording,
    format_report,
    summarize,
)
from firmware_sim.vitals_model import (
    SCENARIOS,
    Deterioration,
    ElderProfile,
    ElderVitalsModel,
    RealHeart,
)

__all__ = [
    "RR_SUFFIX",
    "Subject",
    "evaluate_rr_dir",
    "evaluate_subject",
    "format_rr_report",
    "find_subjects",
    "heart_rate_per_second",
    "load_beats",
    "person_folds",
    "subject_recordings",
    "subject_seed",
]

RR_SUFFIX = "_rr_secs.txt.xz"
DETERIORATION_HOURS = 3.0
HR_WINDOW_S = 5.0
"""A wearable's heart rate averages the last few beats; per second, the beats of the last 5 s."""


@dataclass(frozen=True)
class Subject:
    """One person's recording: ``name`` (e.g. ``nsr001``), its database folder and path."""

    name: str
    database: str
    path: Path


def find_subjects(rr_dir: Path) -> list[Subject]:
    """Every ``*_rr_secs.txt.xz`` under ``rr_dir`` (one level of database folders, or flat),
    sorted by database and name. Raises :class:`DatasetFormatError` if there is none."""
    root = Path(rr_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"{root} is not a folder (expected an RR-interval folder)")
    paths = sorted(root.glob(f"*{RR_SUFFIX}")) + sorted(root.glob(f"*/*{RR_SUFFIX}"))
    if not paths:
        raise DatasetFormatError(
            f"{root} holds no *{RR_SUFFIX} files (see ../shared/datasets/rr-dev/README.md)"
        )
    subjects = [
        Subject(p.name[: -len(RR_SUFFIX)], p.parent.name if p.parent != root else "", p)
        for p in paths
    ]
    return sorted(subjects, key=lambda s: (s.database, s.name))


def load_beats(path: Path) -> NDArray[np.float64]:
    """Beat times (s from the recording's start) of one RR file."""
    try:
        with lzma.open(path, "rt") as f:
            x = np.loadtxt(f, dtype=float, ndmin=1)
    except (OSError, ValueError, lzma.LZMAError) as e:
        raise DatasetFormatError(f"{path}: not an xz file of numbers ({e})") from None
    if x.size < 3 or not np.isfinite(x).all() or (x[1:] <= 0).any():
        raise DatasetFormatError(f"{path}: needs a start time and positive RR intervals")
    return np.asarray(x[0] + np.concatenate([[0.0], np.cumsum(x[1:])]), dtype=float)


def heart_rate_per_second(beats_s: NDArray[np.float64]) -> NDArray[np.float64]:
    """Heart rate (bpm) at each whole second from 0 to the last beat: the mean rate of the
    beats in the last :data:`HR_WINDOW_S` s; NaN where fewer than 3 beats fell in it (a gap
    of the recording, or before the first beats)."""
    t = np.arange(0, int(beats_s[-1]) + 1, dtype=float)
    hi = np.searchsorted(beats_s, t, side="right")  # beats at or before t
    lo = np.searchsorted(beats_s, t - HR_WINDOW_S, side="right")
    n = hi - lo
    first = beats_s[np.clip(lo, 0, beats_s.size - 1)]
    last = beats_s[np.clip(hi - 1, 0, beats_s.size - 1)]
    span = last - first
    with np.errstate(divide="ignore", invalid="ignore"):
        hr = np.where((n >= 3) & (span > 0), 60.0 * (n - 1) / span, np.nan)
    return np.asarray(hr, dtype=float)


def person_folds(subjects: list[Subject], k: int = 2) -> list[list[Subject]]:
    """``k`` folds of people, each database dealt out in turn (so every fold has healthy and
    heart-failure subjects). Fold 0 is the one the detector was tuned on."""
    if k < 1:
        raise ValueError("need at least one fold")
    folds: list[list[Subject]] = [[] for _ in range(k)]
    by_db: dict[str, list[Subject]] = {}
    for s in subjects:
        by_db.setdefault(s.database, []).append(s)
    i = 0
    for db in sorted(by_db):
        for s in by_db[db]:
            folds[i % k].append(s)
            i += 1
    return folds


def _profile(rng: np.random.Generator) -> ElderProfile:
    """A random elder whose wearable also has cold hands and octave errors."""
    p = ElderProfile.random(rng)
    return replace(
        p,
        cold_hands_per_day=float(rng.uniform(0.2, 1.2)),
        octave_share=float(rng.uniform(0.3, 0.8)),
        loose_strap_per_day=float(rng.uniform(0.3, 1.2)),
    )


def subject_recordings(
    subject: Subject,
    *,
    seed: int,
    stable_days: int = 1,
    scenarios: tuple[tuple[str, str], ...] = SCENARIOS,
    hours: float | None = None,
) -> list[tuple[VitalsRecording, ElderVitalsModel]]:
    """The subject's stable days and deterioration recordings, simulated in memory.

    ``hours`` shortens the stable recordings (development runs)."""
    hr = heart_rate_per_second(load_beats(subject.path))
    if hours is not None:
        hr = hr[: int(hours * 3600)]
    heart = RealHeart(hr)
    base = int(np.random.default_rng([seed, 0]).integers(1 << 30))
    rng = np.random.default_rng([seed, 1])
    profile = _profile(rng)
    out: list[tuple[VitalsRecording, ElderVitalsModel]] = []
    for day in range(stable_days):
        model = ElderVitalsModel(base + day, profile, real_hr=heart)
        out.append((_record(model, subject, "stable", hr.size, None), model))
    length = int(DETERIORATION_HOURS * 3600)
    for j, (kind, shape) in enumerate(scenarios):
        start = int(rng.integers(0, max(hr.size - length, 1)))
        piece = heart.piece(start, length)
        onset = float(rng.uniform(3600, 5400))
        det = Deterioration(kind, onset, shape=shape)  # type: ignore[arg-type]
        model = ElderVitalsModel(base + 1000 + j, profile, real_hr=piece, deterioration=det)
        out.append((_record(model, subject, f"{kind}/{shape}", piece.duration_s, onset), model))
    return out


def _record(
    model: ElderVitalsModel, subject: Subject, label: str, seconds: int, onset: float | None
) -> VitalsRecording:
    rec = model.simulate(float(seconds))
    p = rec.present
    level = model.level_reached_s(float(seconds)) if onset is not None else None
    info = RecordingInfo(
        path=f"{subject.database}/{subject.name}",
        subject=subject.name,
        label=label,
        onset_s=onset,
        level_s=level,
        spo2_scale2=model.profile.spo2_scale2,
    )
    cols = ("hr", "spo2", "rr", "temp", "motion", "quality")
    return VitalsRecording(info, rec.t_s[p], {c: getattr(rec, c)[p] for c in cols})


def evaluate_subject(
    args: tuple[Subject, int, int, bool, float | None],
) -> list[RecordingResult]:
    """Simulate and evaluate one subject: ``(subject, seed, stable_days, values_only, hours)``
    (one picklable argument, for a process pool)."""
    subject, seed, stable_days, values_only, hours = args
    return [
        evaluate_recording(rec, values_only=values_only)
        for rec, _ in subject_recordings(subject, seed=seed, stable_days=stable_days, hours=hours)
    ]


def subject_seed(subject: Subject, seed: int) -> int:
    """A subject's simulation seed: from its name (stable across folders and runs) and ``seed``."""
    return zlib.crc32(f"{subject.database}/{subject.name}".encode()) + seed


def evaluate_rr_dir(
    rr_dir: Path,
    *,
    values_only: bool = False,
    workers: int = 1,
    folds: int = 2,
    stable_days: int = 1,
    people: int | None = None,
    hours: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate the detector on real-heart-rate elder days, per fold of people.

    Returns ``{"folds": [summary, …], "all": summary, …}``; fold 0 is the tuning fold (every
    threshold was set looking at it), the others are people the tuning never saw. ``people``
    keeps the first n subjects of each fold (development runs)."""
    subjects = find_subjects(rr_dir)
    groups = person_folds(subjects, folds)
    if people is not None:
        groups = [g[:people] for g in groups]
    jobs = [(s, subject_seed(s, seed), stable_days, values_only, hours) for g in groups for s in g]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            per_subject = list(pool.map(evaluate_subject, jobs, chunksize=1))
    else:
        per_subject = [evaluate_subject(j) for j in jobs]
    by_name = {j[0].name: r for j, r in zip(jobs, per_subject, strict=True)}
    fold_summaries = []
    for i, g in enumerate(groups):
        summary = summarize([r for s in g for r in by_name[s.name]])
        summary["fold"] = i
        summary["role"] = "tuning" if i == 0 else "held out"
        summary["people"] = [s.name for s in g]
        fold_summaries.append(summary)
    everyone = summarize([r for rs in per_subject for r in rs])
    return {
        "dataset": str(rr_dir),
        "values_only": values_only,
        "stable_days_per_person": stable_days,
        "folds": fold_summaries,
        "all": everyone,
    }


def format_rr_report(result: dict[str, Any]) -> str:
    """One report per fold (tuning first), then everyone together."""
    mode = "values only (no motion, no quality)" if result["values_only"] else "all channels"
    parts = [f"real heart rate from {result['dataset']}, {mode}"]
    for f in result["folds"]:
        parts.append(
            f"\n== fold {f['fold'] + 1} of {len(result['folds'])} ({f['role']}): "
            f"{len(f['people'])} people: {' '.join(f['people'])}"
        )
        parts.append(format_report({**f, "dataset": result["dataset"]}))
    parts.append("\n== everyone")
    parts.append(format_report({**result["all"], "dataset": result["dataset"]}))
    return "\n".join(parts)
