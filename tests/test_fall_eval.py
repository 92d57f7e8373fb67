"""Offline evaluation: dataset loaders, the replay and the ``eval fall`` command."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edge.fall_detection import FALL_MODEL, FallSettings
from evaluation.fall_cli import eval_fall
from evaluation.fall_eval import (
    Condition,
    cross_validate,
    decisions_from_events,
    decisions_from_model,
    replay_dataset,
    subject_folds,
    summarize,
)
from evaluation.recordings import DatasetFormatError, open_dataset
from tests.test_fall_detector import FALL, HARD_SIT, JOG, WALK, Signal


def _write_recording(path: Path, signal: Signal, hz: float, seconds: float, gyro: bool) -> None:
    """One generic CSV with jittered timestamps (±2 ms), as a phone logger would write it."""
    rng = np.random.default_rng(len(path.name))
    t = np.arange(int(seconds * hz)) / hz
    t_jittered = t + rng.uniform(-0.002, 0.002, len(t))
    acc = signal(t) + rng.normal(0, 0.01, (len(t), 3))
    columns = [t_jittered, acc[:, 0], acc[:, 1], acc[:, 2]]
    header = "t_s,ax,ay,az"
    if gyro:
        columns += [rng.normal(0, 5, len(t))] * 3
        header += ",gx,gy,gz"
    np.savetxt(
        path, np.column_stack(columns), delimiter=",", header=header, comments="", fmt="%.5f"
    )


@pytest.fixture
def generic_dataset(tmp_path: Path) -> Path:
    rows = ["path,is_fall,subject,activity,hz"]
    plan = [
        ("fall", FALL, 1, "FALL"),
        ("walk", WALK, 0, "WALK"),
        ("jog", JOG, 0, "JOG"),
        ("sit", HARD_SIT, 0, "SIT"),
    ]
    for subject, hz in (("S1", 100.0), ("S2", 50.0), ("S3", 25.0)):
        for name, signal, is_fall, activity in plan:
            rel = f"{subject}/{name}.csv"
            (tmp_path / subject).mkdir(exist_ok=True)
            _write_recording(tmp_path / rel, signal, hz, 20.0, gyro=subject == "S1")
            rows.append(f"{rel},{is_fall},{subject},{activity},{hz:g}")
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(eval_fall)
    return app


def test_generic_loader_resamples_jittered_timestamps(generic_dataset: Path) -> None:
    ds = open_dataset(generic_dataset)
    assert ds.kind == "generic" and len(ds.recordings) == 12
    rec = ds.load(ds.recordings[0])
    assert rec.hz == 100.0 and rec.acc.shape[1] == 3 and rec.gyr is not None
    assert abs(len(rec.acc) - 2000) <= 1
    assert ds.load(ds.recordings[-1]).gyr is None


def test_sisfall_layout_plain_text_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREHUB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "sisfall"
    (root / "SisFall_dataset" / "SA01").mkdir(parents=True)
    lines = [" 17,-256,  -99,-18,-504,-352,  76,-697,-279;"] * 400
    (root / "SisFall_dataset" / "SA01" / "D07_SA01_R01.txt").write_text("\r\n".join(lines) + "\r\n")
    (root / "index.csv").write_text(
        "path,activity,is_fall,subject,group,trial,n_samples,duration_s\n"
        "SisFall_dataset/SA01/D07_SA01_R01.txt.xz,D07,0,SA01,SA,1,400,2.0\n"
    )
    ds = open_dataset(root)
    assert ds.kind == "sisfall"
    first = ds.load(ds.recordings[0])
    again = ds.load(ds.recordings[0])  # from the .npy cache
    assert first.hz == 200.0 and first.acc.shape == (400, 3) and first.gyr is not None
    assert np.allclose(first.acc[0], [17 / 256, -1.0, -99 / 256])
    assert np.allclose(first.gyr[0], np.array([-18, -504, -352]) * 4000 / 65536)
    assert np.array_equal(first.acc, again.acc)
    assert list((tmp_path / "cache").rglob("*.npy"))


def test_eval_on_generic_dataset(generic_dataset: Path) -> None:
    results = replay_dataset(open_dataset(generic_dataset), 50.0)
    summary = summarize(decisions_from_events(results))
    assert summary["falls"] == 3 and summary["recordings"] == 12
    assert summary["sensitivity"] == 1.0 and summary["specificity"] == 1.0
    delay = summary["delay_s_p95"]
    assert isinstance(delay, float) and 0 < delay <= 10
    cv = cross_validate([Condition("50 Hz", results)], k=3)
    assert cv["folds"] == 3
    only_s1_falls = [r for r in results if r.info.subject == "S1" or not r.info.is_fall]
    cv = cross_validate([Condition("50 Hz", only_s1_falls)], k=3)
    assert cv["folds"] == 2  # holding S1 out leaves no fall to fit on
    per_fold = cv["per_fold"]
    assert isinstance(per_fold, list) and "skipped" in per_fold[0]


def test_eval_command_json_last_line(generic_dataset: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["--dataset", str(generic_dataset), "--hz", "25", "--acc-only", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    shipped = report["25 Hz other device"]
    for key in ("recordings", "falls", "sensitivity", "specificity", "false_alarms_per_hour"):
        assert key in shipped
    assert shipped["recordings"] == 12 and shipped["delay_s_p95"] <= 10
    assert shipped["elderly_like_sensitivity"] is not None
    cv = report["cross_validation"]["25 Hz other device"]
    assert [row["confirm_s"] for row in cv["confirm_table"]][0] == 2.5
    assert "sensitivity" in result.output.splitlines()[3]


def test_decisions_re_derived_for_a_shorter_confirmation_match_a_replay(
    generic_dataset: Path,
) -> None:
    """One replay confirming at 10 s answers for 7 s exactly as a replay at 7 s does."""
    ds = open_dataset(generic_dataset)
    late = replay_dataset(ds, 50.0, settings=FallSettings(confirm_s=10.0))
    direct = replay_dataset(ds, 50.0, settings=FallSettings(confirm_s=7.0))
    derived = decisions_from_model(late, FALL_MODEL, FallSettings(confirm_s=7.0))
    assert [d.alarms_t_s for d in derived] == [d.alarms_t_s for d in decisions_from_events(direct)]


@pytest.mark.parametrize("content", [None, "a,b\n1,2\n"])
def test_bad_folder_is_refused_with_a_clear_message(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "index.csv").write_text(content)
    with pytest.raises(DatasetFormatError, match="expected"):
        open_dataset(tmp_path)
    result = CliRunner().invoke(_app(), ["--dataset", str(tmp_path)])
    assert result.exit_code == 2
    assert "index.csv" in result.output


def test_subject_folds_are_disjoint_and_complete() -> None:
    subjects = [f"S{i}" for i in range(10)] * 3
    folds = subject_folds(subjects, 4)
    flat = [s for f in folds for s in f]
    assert sorted(flat) == sorted(set(subjects)) and len(flat) == len(set(flat))


REPO_ROOT = Path(__file__).resolve().parents[1]


def sisfall_root() -> Path:
    """``$CAREHUB_SISFALL``, else ``../shared/datasets/sisfall-dev`` from the repository root."""
    env = os.environ.get("CAREHUB_SISFALL")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT / ".." / "shared" / "datasets" / "sisfall-dev").resolve()


@pytest.fixture
def sisfall() -> Path:
    root = sisfall_root()
    if not (root / "index.csv").is_file():
        pytest.skip(f"SisFall not found at {root} (set CAREHUB_SISFALL to its folder)")
    return root


def test_sisfall_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_SISFALL", "/nowhere/sisfall")
    assert sisfall_root() == Path("/nowhere/sisfall")
    monkeypatch.delenv("CAREHUB_SISFALL")
    assert sisfall_root() == REPO_ROOT.parent / "shared" / "datasets" / "sisfall-dev"


@pytest.mark.dataset
def test_eval_on_a_few_sisfall_recordings(sisfall: Path) -> None:
    ds = open_dataset(sisfall)
    assert ds.kind == "sisfall"
    short = [r for r in ds.recordings if r.subject == "SA02" and r.activity >= "D07"]
    picked = [r for r in short if r.is_fall][::5] + [r for r in short if not r.is_fall][::5]
    results = replay_dataset(replace(ds, recordings=tuple(picked)), 50.0, acc_only=True)
    summary = summarize(decisions_from_events(results))
    assert summary["falls"] == 15 and summary["adls"] == 13
    assert isinstance(summary["sensitivity"], float) and summary["sensitivity"] >= 0.9
    assert isinstance(summary["specificity"], float) and summary["specificity"] >= 0.9


@pytest.mark.dataset
def test_lying_down_and_rolling_over_raise_no_alarm(sisfall: Path) -> None:
    """D13 (lie down quickly, sit up again) and D14 (roll over and back) of one subject whose
    recordings alarmed before the posture-reversal rules; most must stay quiet now."""
    ds = open_dataset(sisfall)
    picked = [r for r in ds.recordings if r.subject == "SA08" and r.activity in ("D13", "D14")]
    results = replay_dataset(replace(ds, recordings=tuple(picked)), 25.0, acc_only=True)
    summary = summarize(decisions_from_events(results))
    assert summary["adls"] == len(picked) >= 5
    assert isinstance(summary["specificity"], float) and summary["specificity"] >= 0.9
