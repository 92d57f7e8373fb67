"""Load labelled IMU recordings (SisFall or the generic CSV layout) for offline evaluation.

Two folder layouts are understood, detected from the folder itself:

* **SisFall**: ``index.csv`` (path, activity, is_fall, subject, ...) and
  ``SisFall_dataset/<SUBJECT>/<CODE>_<SUBJECT>_R<nn>.txt[.xz]`` at 200 Hz, raw ADC counts.
* **generic**: ``index.csv`` with columns ``path,is_fall,subject,activity,hz`` and one CSV
  per recording with header ``t_s,ax,ay,az[,gx,gy,gz]`` (s, g, °/s).

Parsing SisFall's xz text is slow (~50 ms per file), so parsed arrays are cached as ``.npy``
under ``~/.cache/carehub/recordings`` (or ``$CAREHUB_CACHE``), keyed by path, mtime and size.
"""

from __future__ import annotations

import csv
import hashlib
import io
import lzma
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SISFALL_HZ = 200.0
SISFALL_ACC_G_PER_COUNT = 1.0 / 256.0  # ADXL345, ±16 g, 13 bit
SISFALL_GYR_DPS_PER_COUNT = 4000.0 / 65536.0  # ITG3200, ±2000 °/s, 16 bit
GENERIC_INDEX_COLUMNS = ("path", "is_fall", "subject", "activity", "hz")


class DatasetFormatError(ValueError):
    """The folder is neither SisFall nor generic CSV; the message says what was expected."""


@dataclass(frozen=True)
class RecordingInfo:
    """One labelled recording, before its samples are read."""

    path: Path
    is_fall: bool
    subject: str
    activity: str
    hz: float


@dataclass(frozen=True)
class Recording:
    """Samples of one recording: ``acc`` (N, 3) in g, ``gyr`` (N, 3) in °/s or None, at ``hz``."""

    info: RecordingInfo
    hz: float
    acc: np.ndarray
    gyr: np.ndarray | None


@dataclass(frozen=True)
class Dataset:
    """A recognised dataset folder: its format name and recordings (in index order)."""

    root: Path
    kind: str  # "sisfall" or "generic"
    recordings: tuple[RecordingInfo, ...]

    def load(self, info: RecordingInfo) -> Recording:
        """Read (or fetch from cache) the samples of one recording of this dataset."""
        if self.kind == "sisfall":
            return _load_sisfall(info)
        return _load_generic(info)

    def __iter__(self) -> Iterator[Recording]:
        return (self.load(info) for info in self.recordings)


def open_dataset(root: Path) -> Dataset:
    """Recognise the layout of ``root`` and index its recordings, or raise DatasetFormatError."""
    root = Path(root)
    index = root / "index.csv"
    expected = (
        f"expected {root} to hold index.csv plus either SisFall_dataset/<SUBJECT>/*.txt[.xz] "
        f"(SisFall) or one CSV per recording with index columns {','.join(GENERIC_INDEX_COLUMNS)}"
    )
    if not root.is_dir() or not index.is_file():
        raise DatasetFormatError(f"not a dataset folder: {expected}")
    with index.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = set(rows[0].keys()) if rows else set()
    if (root / "SisFall_dataset").is_dir() and {"path", "is_fall", "subject"} <= columns:
        infos = tuple(_sisfall_info(root, row) for row in rows)
        return Dataset(root, "sisfall", infos)
    if set(GENERIC_INDEX_COLUMNS) <= columns:
        try:
            infos = tuple(
                RecordingInfo(
                    path=root / row["path"],
                    is_fall=_as_bool(row["is_fall"]),
                    subject=row["subject"],
                    activity=row["activity"],
                    hz=float(row["hz"]),
                )
                for row in rows
            )
        except ValueError as exc:
            raise DatasetFormatError(f"bad row in {index}: {exc}; {expected}") from exc
        return Dataset(root, "generic", infos)
    raise DatasetFormatError(f"unrecognised index.csv columns {sorted(columns)}: {expected}")


def _as_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "fall"):
        return True
    if value in ("0", "false", "no", "adl", ""):
        return False
    raise ValueError(f"is_fall must be 0/1, got {text!r}")


def _sisfall_info(root: Path, row: dict[str, str]) -> RecordingInfo:
    path = root / row["path"]
    if not path.exists() and path.suffix == ".xz":
        path = path.with_suffix("")  # a decompressed copy of the dataset
    activity = row.get("activity") or path.name.split("_")[0]
    return RecordingInfo(path, _as_bool(row["is_fall"]), row["subject"], activity, SISFALL_HZ)


def _cache_dir() -> Path:
    base = os.environ.get("CAREHUB_CACHE") or str(Path.home() / ".cache" / "carehub")
    return Path(base) / "recordings"


def _cache_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}".encode()).hexdigest()


def _parse_sisfall_text(text: str) -> np.ndarray:
    """Raw SisFall text → (N, 6) int16 counts of the ADXL345 and the ITG3200."""
    body = text.strip().rstrip(";").replace(";", ",")
    values = np.fromstring(body, dtype=np.int32, sep=",")  # type: ignore[call-overload]
    if values.size % 9:
        rows = [line.strip().rstrip(";").split(",") for line in io.StringIO(text)]
        values = np.array([int(v) for r in rows if len(r) == 9 for v in r], dtype=np.int32)
    return values.reshape(-1, 9)[:, :6].astype(np.int16)


def _load_sisfall(info: RecordingInfo) -> Recording:
    cache = _cache_dir() / f"{_cache_key(info.path)}.npy"
    raw: np.ndarray | None = None
    if cache.is_file():
        try:
            raw = np.load(cache)
        except (OSError, ValueError):
            raw = None
    if raw is None:
        opener = lzma.open if info.path.suffix == ".xz" else open
        with opener(info.path, "rt") as fh:  # type: ignore[operator]
            raw = _parse_sisfall_text(fh.read())
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, raw)
        tmp.replace(cache)
    acc = raw[:, 0:3].astype(np.float64) * SISFALL_ACC_G_PER_COUNT
    gyr = raw[:, 3:6].astype(np.float64) * SISFALL_GYR_DPS_PER_COUNT
    return Recording(info, SISFALL_HZ, acc, gyr)


def _load_generic(info: RecordingInfo) -> Recording:
    """Read one generic CSV, resampled onto a uniform grid at its stated rate (times jitter)."""
    try:
        with info.path.open(newline="") as fh:
            header = next(csv.reader(fh))
            data = np.loadtxt(fh, delimiter=",", ndmin=2)
    except (OSError, StopIteration, ValueError) as exc:
        raise DatasetFormatError(f"cannot read {info.path}: {exc}") from exc
    cols = {name.strip(): i for i, name in enumerate(header)}
    if not {"t_s", "ax", "ay", "az"} <= cols.keys():
        raise DatasetFormatError(f"{info.path}: header must start t_s,ax,ay,az[,gx,gy,gz]")
    t = data[:, cols["t_s"]] if data.size else np.zeros(0)
    acc = data[:, [cols["ax"], cols["ay"], cols["az"]]] if data.size else np.zeros((0, 3))
    has_gyr = {"gx", "gy", "gz"} <= cols.keys()
    gyr = data[:, [cols["gx"], cols["gy"], cols["gz"]]] if has_gyr and data.size else None
    if t.size >= 2:
        order = np.argsort(t, kind="stable")
        t, acc = t[order], acc[order]
        grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * info.hz)) + 1) / info.hz
        acc = np.column_stack([np.interp(grid, t, acc[:, k]) for k in range(3)])
        if gyr is not None:
            gyr = gyr[order]
            gyr = np.column_stack([np.interp(grid, t, gyr[:, k]) for k in range(3)])
    return Recording(info, info.hz, acc, gyr)
