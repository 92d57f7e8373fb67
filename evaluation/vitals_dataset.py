"""The generic vital-signs dataset format: read it, and write one from the simulator.

A dataset is a folder with ``index.csv`` (header ``path,subject,label,onset_s``, optionally
followed by ``level_s`` and ``spo2_scale2``) and one CSV per recording. ``label`` is
``stable`` or the kind of deterioration (``hypoxaemia``, ``tachycardia``, ``bradycardia``,
``tachypnoea``, ``fever``, …); ``onset_s`` is empty for stable recordings. ``level_s`` is
when the true signal reached the NEWS2 level the deterioration is tuned for (empty if
unknown); ``spo2_scale2`` is 1 if the elder's care plan uses SpO2 scale 2.

A recording CSV has header ``t_s`` followed by any of ``hr,spo2,rr,temp`` (bpm, %, /min,
°C) and optionally ``sbp,motion,quality`` (mmHg, 0..1, 0..1); empty cell = not measured.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from firmware_sim.vitals_model import (
    DETERIORATION_KINDS,
    Deterioration,
    ElderProfile,
    ElderVitalsModel,
)

__all__ = [
    "INDEX_COLUMNS",
    "SIGNAL_COLUMNS",
    "DatasetFormatError",
    "RecordingInfo",
    "VitalsRecording",
    "load_index",
    "load_recording",
    "write_dataset",
]

INDEX_COLUMNS = ("path", "subject", "label", "onset_s")
OPTIONAL_INDEX_COLUMNS = ("level_s", "spo2_scale2")
SIGNAL_COLUMNS = ("hr", "spo2", "rr", "temp", "sbp", "motion", "quality")
_FORMATS = {
    "hr": "%.0f",
    "spo2": "%.0f",
    "rr": "%.0f",
    "temp": "%.1f",
    "sbp": "%.0f",
    "motion": "%.2f",
    "quality": "%.2f",
}


class DatasetFormatError(ValueError):
    """The folder is not a vital-signs dataset in the generic format; the message says why."""


@dataclass(frozen=True)
class RecordingInfo:
    """One row of ``index.csv``; times in s from the recording's start."""

    path: str
    subject: str
    label: str
    onset_s: float | None
    level_s: float | None = None
    spo2_scale2: bool = False


@dataclass(frozen=True)
class VitalsRecording:
    """A loaded recording: ``t_s`` (s) and one float array per column present (NaN = missing)."""

    info: RecordingInfo
    t_s: NDArray[np.float64]
    columns: dict[str, NDArray[np.float64]]


def _optional_float(text: str, what: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise DatasetFormatError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise DatasetFormatError(f"{what}: {text!r} is not a finite number")
    return v


def load_index(root: Path) -> list[RecordingInfo]:
    """Read ``root/index.csv``; raise :class:`DatasetFormatError` if it is not this format."""
    root = Path(root)
    index = root / "index.csv"
    if not root.is_dir():
        raise DatasetFormatError(f"{root} is not a folder")
    if not index.is_file():
        raise DatasetFormatError(
            f"{root} has no index.csv: not a vital-signs dataset "
            "(create one with `carehub sim vitals-dataset --out DIR`)"
        )
    with index.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(c.strip() for c in rows[0][:4]) != INDEX_COLUMNS:
        got = ",".join(rows[0]) if rows else "nothing"
        raise DatasetFormatError(
            f"{index}: header must start with {','.join(INDEX_COLUMNS)}, got {got!r} "
            "(is this a fall dataset?)"
        )
    header = [c.strip() for c in rows[0]]
    infos: list[RecordingInfo] = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 4:
            raise DatasetFormatError(f"{index} line {n}: expected at least 4 fields")
        cells = dict(zip(header, row, strict=False))
        path, subject, label = (
            cells["path"].strip(),
            cells["subject"].strip(),
            cells["label"].strip(),
        )
        if not path or not label:
            raise DatasetFormatError(f"{index} line {n}: empty path or label")
        onset = _optional_float(cells["onset_s"], f"{index} line {n} onset_s")
        if (label == "stable") != (onset is None):
            raise DatasetFormatError(
                f"{index} line {n}: onset_s must be empty exactly for 'stable' recordings"
            )
        if not (root / path).is_file():
            raise DatasetFormatError(f"{index} line {n}: {path} does not exist")
        level = _optional_float(cells.get("level_s", ""), f"{index} line {n} level_s")
        scale2 = cells.get("spo2_scale2", "").strip() in ("1", "true", "True")
        infos.append(RecordingInfo(path, subject, label, onset, level, scale2))
    if not infos:
        raise DatasetFormatError(f"{index} lists no recordings")
    return infos


def load_recording(root: Path, info: RecordingInfo) -> VitalsRecording:
    """Read one recording CSV (fast path: one float parse over the whole file)."""
    path = Path(root) / info.path
    text = path.read_text(encoding="utf-8")
    header_line, _, body = text.partition("\n")
    header = [c.strip() for c in header_line.strip().split(",")]
    unknown = [c for c in header[1:] if c not in SIGNAL_COLUMNS]
    if not header or header[0] != "t_s" or unknown or len(set(header)) != len(header):
        raise DatasetFormatError(
            f"{path}: header must be t_s followed by columns from {','.join(SIGNAL_COLUMNS)}, "
            f"got {header_line.strip()!r}"
        )
    body = body.strip().replace("\r", "")
    ncol = len(header)
    if not body:
        data = np.zeros((0, ncol))
    else:
        cells = body.replace("\n", ",").split(",")
        if len(cells) % ncol:
            raise DatasetFormatError(f"{path}: every row must have {ncol} fields")
        try:
            data = np.array([c if c else "nan" for c in cells], dtype=float).reshape(-1, ncol)
        except ValueError:
            raise DatasetFormatError(f"{path}: a cell is not a number") from None
    t = data[:, 0]
    if np.isnan(t).any() or (t.size > 1 and (np.diff(t) < 0).any()):
        raise DatasetFormatError(f"{path}: t_s must be present and non-decreasing")
    return VitalsRecording(info, t, {c: data[:, i] for i, c in enumerate(header) if i})


def _write_csv(
    path: Path, t_s: NDArray[np.float64], columns: dict[str, NDArray[np.float64]]
) -> None:
    texts = [[f"{v:.0f}" for v in t_s.tolist()]]
    for name, values in columns.items():
        spec = _FORMATS[name]
        texts.append([("" if v != v else spec % v) for v in values.tolist()])
    header = ",".join(["t_s", *columns])
    body = "\n".join(map(",".join, zip(*texts, strict=True)))
    path.write_text(header + "\n" + body + "\n", encoding="utf-8")


def write_dataset(
    out: Path,
    *,
    elders: int,
    days: float,
    seed: int,
    deteriorations: int,
    deterioration_hours: float = 8.0,
    device_columns: bool = True,
    kinds: Sequence[str] = DETERIORATION_KINDS,
) -> Path:
    """Simulate ``elders`` elders (seeds ``seed`` … ``seed + elders - 1``): one stable recording
    of ``days`` days each, plus ``deteriorations`` recordings of ``deterioration_hours`` h each
    with a deterioration starting 3–4.5 h in (kinds taken in turn). ``device_columns`` adds the
    wearable's ``motion`` and ``quality``. Returns ``out``."""
    if elders < 1 or days <= 0 or deteriorations < 0 or seed < 0:
        raise ValueError("need elders >= 1, days > 0, deteriorations >= 0 and seed >= 0")
    if deterioration_hours < 5:
        raise ValueError("deterioration recordings need at least 5 h (onset at 3-4.5 h)")
    out = Path(out)
    (out / "recordings").mkdir(parents=True, exist_ok=True)
    cols = ["hr", "spo2", "rr", "temp"] + (["motion", "quality"] if device_columns else [])
    index: list[list[str]] = []
    k = 0
    for i in range(elders):
        elder_seed = seed + i
        rng = np.random.default_rng([elder_seed, 7])
        profile = ElderProfile.random(np.random.default_rng([elder_seed, 0]))
        subject = f"E{elder_seed:05d}"
        duration = days * 86400.0
        # 30 % of the long recordings end with a flat battery, 10 min to 2 h before the end
        flat = rng.random() < 0.3 and duration >= 4 * 3600
        battery = duration - float(rng.uniform(600, 7200)) if flat else None
        model = ElderVitalsModel(
            elder_seed * 100,
            profile,
            start_hour=float(rng.uniform(0, 24)),
            battery_dies_at_s=battery,
        )
        recs = [("stable", model, duration)]
        for j in range(deteriorations):
            kind = kinds[k % len(kinds)]
            k += 1
            onset = float(rng.uniform(3.0, 4.5)) * 3600.0
            det = Deterioration(kind, onset)  # type: ignore[arg-type]
            m = ElderVitalsModel(
                elder_seed * 100 + 1 + j,
                profile,
                start_hour=float(rng.uniform(0, 24)),
                deterioration=det,
            )
            recs.append((kind, m, deterioration_hours * 3600.0))
        for n, (label, m, dur) in enumerate(recs):
            rec = m.simulate(dur)
            p = rec.present
            name = f"recordings/{subject}_{n:02d}_{label}.csv"
            _write_csv(out / name, rec.t_s[p], {c: getattr(rec, c)[p] for c in cols})
            onset_s = "" if m.deterioration is None else f"{m.deterioration.onset_s:.0f}"
            level = m.level_reached_s(dur) if m.deterioration is not None else None
            level_s = "" if level is None else f"{level:.0f}"
            index.append([name, subject, label, onset_s, level_s, str(int(profile.spo2_scale2))])
    with (out / "index.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*INDEX_COLUMNS, *OPTIONAL_INDEX_COLUMNS])
        w.writerows(index)
    return out
