"""Real-heart-rate elder days (evaluation/rr_vitals.py) and `carehub eval vitals --rr-dir`."""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from evaluation.rr_vitals import (
    Subject,
    evaluate_subject,
    find_subjects,
    heart_rate_per_second,
    load_beats,
    person_folds,
    subject_recordings,
)
from evaluation.vitals_cli import eval_vitals
from evaluation.vitals_dataset import DatasetFormatError
from firmware_sim.vitals_model import RealHeart

REPO_ROOT = Path(__file__).resolve().parents[1]


def rr_dev_root() -> Path:
    """``$CAREHUB_RR_DEV``, else ``../shared/datasets/rr-dev`` beside the repository (or beside
    the folder of worktrees)."""
    env = os.environ.get("CAREHUB_RR_DEV")
    if env:
        return Path(env)
    for up in (REPO_ROOT.parent, REPO_ROOT.parent.parent):
        candidate = up / "shared" / "datasets" / "rr-dev"
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "datasets" / "rr-dev"


def write_rr(path: Path, hours: float, seed: int) -> None:
    """A synthetic RR file: ~70 bpm by day, ~58 by night, an ectopic beat now and then and one
    20-s recording gap (the format of rr-dev)."""
    rng = np.random.default_rng(seed)
    rr: list[float] = []
    t = 0.0
    while t < hours * 3600:
        night = (t // 3600) % 24 < 3
        x = 60.0 / (58 if night else 70) + rng.normal(0, 0.03)
        if rng.random() < 0.01:
            rr += [0.6 * x, 1.4 * x]  # an ectopic beat and its compensatory pause
        else:
            rr.append(x)
        t += rr[-1]
    rr[len(rr) // 2] = 20.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt") as f:
        f.write("\n".join(f"{v:.4f}" for v in [1.5, *rr]) + "\n")


@pytest.fixture
def rr_dir(tmp_path: Path) -> Path:
    root = tmp_path / "rr"
    for i, db in enumerate(("aaadb", "aaadb", "bbbdb", "bbbdb")):
        write_rr(root / db / f"{db[:3]}{i:03d}_rr_secs.txt.xz", hours=3.2, seed=i)
    return root


@pytest.fixture
def two_people(tmp_path: Path) -> Path:
    root = tmp_path / "rr2"
    for i, db in enumerate(("aaadb", "bbbdb")):
        write_rr(root / db / f"{db[:3]}{i:03d}_rr_secs.txt.xz", hours=3.2, seed=i)
    return root


def test_heart_rate_per_second_follows_the_beats_and_keeps_gaps() -> None:
    beats = np.concatenate([np.arange(0, 600, 1.0), np.arange(630, 1200, 0.5)])
    hr = heart_rate_per_second(beats)
    assert hr.size == 1200
    assert np.nanmedian(hr[10:590]) == pytest.approx(60.0)
    assert np.nanmedian(hr[640:1190]) == pytest.approx(120.0)
    assert np.isnan(hr[610:628]).all()  # the recording's gap stays a gap


def test_subjects_are_found_and_folded_by_person_across_databases(rr_dir: Path) -> None:
    subjects = find_subjects(rr_dir)
    assert [s.name for s in subjects] == ["aaa000", "aaa001", "bbb002", "bbb003"]
    folds = person_folds(subjects, 2)
    assert [[s.name for s in f] for f in folds] == [["aaa000", "bbb002"], ["aaa001", "bbb003"]]
    assert {s.database for s in folds[0]} == {"aaadb", "bbbdb"}


def test_a_folder_without_rr_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no \\*_rr_secs"):
        find_subjects(tmp_path)
    bad = tmp_path / "x_rr_secs.txt.xz"
    bad.write_bytes(b"not xz")
    with pytest.raises(DatasetFormatError, match="not an xz file"):
        load_beats(bad)


def test_real_heart_gives_activity_sleep_and_a_clock(rr_dir: Path) -> None:
    hr = heart_rate_per_second(load_beats(find_subjects(rr_dir)[0].path))
    heart = RealHeart(hr)
    assert 0 <= heart.activity.min() and heart.activity.max() <= 1
    assert heart.awake[: 2 * 3600].mean() < heart.awake[2 * 3600 + 1800 :].mean()  # 58 bpm
    assert 0 <= heart.start_hour < 24


def test_recordings_carry_the_real_rate_and_the_deteriorations(rr_dir: Path) -> None:
    subject = find_subjects(rr_dir)[0]
    recs = subject_recordings(subject, seed=1, stable_days=1)
    (stable, model), *others = recs
    assert stable.info.label == "stable"
    true = model.simulate(float(model.real.duration_s)).true_hr  # type: ignore[union-attr]
    assert 50 < np.nanmedian(true) < 80
    assert {"spo2", "rr", "temp", "motion", "quality"} <= set(stable.columns)
    labels = [r.info.label for r, _ in others]
    assert "hypoxaemia/oscillating" in labels and "bradycardia/intermittent" in labels
    assert all(r.info.level_s is not None and r.info.onset_s is not None for r, _ in others)


def test_eval_command_reports_every_fold_and_the_per_kind_table(two_people: Path) -> None:
    app = typer.Typer()
    app.command()(eval_vitals)
    for extra in ([], ["--values-only"]):
        res = CliRunner().invoke(
            app, ["--rr-dir", str(two_people), "--stable-days", "1", "--json", *extra]
        )
        assert res.exit_code == 0, res.output
        assert "fold 1 of 2 (tuning)" in res.output and "fold 2 of 2 (held out)" in res.output
        assert "hypoxaemia/staircase" in res.output and "per 30 elder-days" in res.output
        result = json.loads(res.output.strip().splitlines()[-1])
        assert result["values_only"] == bool(extra)
        assert [f["role"] for f in result["folds"]] == ["tuning", "held out"]
        everyone = result["all"]
        assert everyone["events"] == 2 * 11 and everyone["fever_events"] == 2 * 2
        assert everyone["detected"] >= 21  # a synthetic rate: nothing to hide behind


def test_eval_command_needs_exactly_one_source(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(eval_vitals)
    assert CliRunner().invoke(app, []).exit_code == 2
    assert CliRunner().invoke(app, ["--rr-dir", str(tmp_path)]).exit_code == 2


@pytest.mark.dataset
def test_rr_dev_subject_gives_plausible_days_and_detected_deteriorations() -> None:
    root = rr_dev_root()
    if not root.is_dir():
        pytest.skip(f"{root} not present (set CAREHUB_RR_DEV)")
    subjects = find_subjects(root)
    assert len(subjects) >= 2
    subject: Subject = subjects[0]
    hr = heart_rate_per_second(load_beats(subject.path))
    assert hr.size > 20 * 3600 and 40 < np.nanmedian(hr) < 120
    results = evaluate_subject((subject, 7, 1, True, 6.0))
    critical = [r for r in results if r.info.label.split("/")[0] != "fever"][1:]
    detected = [r for r in critical if any(sev == "critical" for _, sev in r.alarms)]
    assert len(detected) == len(critical)
