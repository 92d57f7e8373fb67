"""The generic vitals dataset format, the evaluation and the ``eval vitals`` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from evaluation.vitals_cli import eval_vitals, generate_vitals
from evaluation.vitals_dataset import (
    DatasetFormatError,
    RecordingInfo,
    load_index,
    load_recording,
    write_dataset,
)
from evaluation.vitals_eval import (
    RecordingResult,
    evaluate_dataset,
    evaluate_recording,
    summarize,
)

JSON_KEYS = {
    "stable_hours",
    "false_alarms_per_hour",
    "detected",
    "events",
    "delay_s_median",
    "delay_s_p95",
}


def _app(command: Callable[..., Any]) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vitals") / "sim"
    write_dataset(
        out,
        elders=2,
        days=0.5,
        seed=4242,
        deteriorations=3,
        deterioration_hours=5.0,
        kinds=("hypoxaemia", "tachycardia", "bradycardia", "tachypnoea", "fever"),
    )
    return out


def test_generated_dataset_follows_the_generic_format(simulated: Path) -> None:
    infos = load_index(simulated)
    assert len(infos) == 2 * (1 + 3)
    assert {i.label for i in infos} == {
        "stable",
        "hypoxaemia",
        "tachycardia",
        "bradycardia",
        "tachypnoea",
        "fever",
    }
    for info in infos:
        assert (info.onset_s is None) == (info.label == "stable")
        rec = load_recording(simulated, info)
        assert set(rec.columns) == {"hr", "spo2", "rr", "temp", "motion", "quality"}
        assert (np.diff(rec.t_s) > 0).all()
    header = (simulated / infos[0].path).read_text().splitlines()[0]
    assert header == "t_s,hr,spo2,rr,temp,motion,quality"


def test_generation_is_deterministic(simulated: Path, tmp_path: Path) -> None:
    again = write_dataset(
        tmp_path / "again",
        elders=1,
        days=0.5,
        seed=4242,
        deteriorations=1,
        deterioration_hours=5.0,
        kinds=("hypoxaemia",),
    )
    name = load_index(again)[0].path
    assert (again / name).read_bytes() == (simulated / name).read_bytes()


def test_eval_command_reports_and_ends_with_one_json_line(simulated: Path) -> None:
    result = CliRunner().invoke(_app(eval_vitals), ["--dataset", str(simulated), "--json"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    figures = json.loads(lines[-1])
    assert JSON_KEYS <= set(figures)
    assert "detected" in result.output and "per kind" in result.output
    assert figures["stable_hours"] > 20
    assert figures["events"] == 5  # critical kinds; fever is reported per kind
    assert figures["detected"] == figures["events"]
    assert figures["false_alarms_per_hour"] == 0
    assert figures["delay_s_median"] is not None and figures["delay_s_median"] <= 180
    assert figures["per_kind"]["fever"]["events"] == 1


def test_a_minimal_generic_dataset_with_a_subset_of_columns(tmp_path: Path) -> None:
    """What a third party would write: no level_s, only pulse and SpO2, gaps as empty cells."""
    rng = np.random.default_rng(0)
    t = np.arange(4 * 3600)
    spo2 = np.round(96 + rng.normal(0, 0.6, t.size))
    spo2[t >= 7200] = np.round(86 + rng.normal(0, 0.8, (t >= 7200).sum()))
    hr = np.round(70 + rng.normal(0, 1.5, t.size))
    (tmp_path / "a.csv").write_text(
        "t_s,hr,spo2\n"
        + "".join(
            f"{ti},{'' if ti % 50 == 0 else int(h)},{int(s)}\n"
            for ti, h, s in zip(t, hr, spo2, strict=True)
        )
    )
    (tmp_path / "b.csv").write_text(
        "t_s,hr,spo2\n"
        + "".join(f"{ti},{int(h)},{96 + ti % 2}\n" for ti, h in zip(t, hr, strict=True))
    )
    (tmp_path / "index.csv").write_text(
        "path,subject,label,onset_s\na.csv,S1,hypoxaemia,7200\nb.csv,S1,stable,\n"
    )
    s = evaluate_dataset(tmp_path)
    assert s["events"] == 1 and s["detected"] == 1
    assert s["stable_hours"] == pytest.approx(4.0, abs=0.01)
    assert s["false_alarms_per_hour"] == 0
    assert 0 <= s["delay_s_median"] <= 150  # level estimated from the recorded SpO2


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no index.csv"),
        ({"index.csv": "path,label\n"}, "header must start with"),
        ({"index.csv": "path,subject,label,onset_s\n"}, "lists no recordings"),
        ({"index.csv": "path,subject,label,onset_s\nx.csv,S,stable,\n"}, "does not exist"),
        (
            {"index.csv": "path,subject,label,onset_s\nx.csv,S,stable,30\n", "x.csv": "t_s,hr\n"},
            "onset_s must be empty exactly for 'stable'",
        ),
        (
            {"index.csv": "path,subject,label,onset_s\nx.csv,S,fever,\n", "x.csv": "t_s,hr\n"},
            "onset_s must be empty exactly for 'stable'",
        ),
        (
            {"index.csv": "path,subject,label,onset_s\nx.csv,S,fever,soon\n", "x.csv": ""},
            "is not a number",
        ),
        (
            {"index.csv": "path,subject,label,onset_s\nx.csv,S,stable,\n", "x.csv": "t,hr\n0,1\n"},
            "header must be t_s followed by",
        ),
        (
            {"index.csv": "path,subject,label,onset_s\nx.csv,S,stable,\n", "x.csv": "t_s,ax\n"},
            "header must be t_s followed by",
        ),
        (
            {
                "index.csv": "path,subject,label,onset_s\nx.csv,S,stable,\n",
                "x.csv": "t_s,hr\n0,70\n1,fast\n",
            },
            "not a number",
        ),
        (
            {
                "index.csv": "path,subject,label,onset_s\nx.csv,S,stable,\n",
                "x.csv": "t_s,hr,spo2\n0,70\n1,71,97\n",
            },
            "every row must have 3 fields",
        ),
        (
            {
                "index.csv": "path,subject,label,onset_s\nx.csv,S,stable,\n",
                "x.csv": "t_s,hr\n5,70\n1,71\n",
            },
            "non-decreasing",
        ),
    ],
)
def test_malformed_datasets_are_refused_with_a_clear_message(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DatasetFormatError, match=message):
        evaluate_dataset(tmp_path)
    result = CliRunner().invoke(_app(eval_vitals), ["--dataset", str(tmp_path), "--json"])
    assert result.exit_code == 2
    assert message.split("'")[0] in result.output


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(eval_vitals), ["--dataset", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_summary_counts_detection_delay_and_false_alarms() -> None:
    def res(label: str, onset: float | None, alarms: tuple[tuple[float, str], ...], level=None):  # type: ignore[no-untyped-def]
        return RecordingResult(
            RecordingInfo(f"{label}.csv", "S", label, onset, level),
            86400.0,
            86400.0,
            alarms,
            0,
            level,
        )

    s = summarize(
        [
            res("stable", None, ((100.0, "critical"), (200.0, "warning"))),
            res("hypoxaemia", 1000.0, ((1100.0, "warning"), (1200.0, "critical")), 1150.0),
            res("tachycardia", 1000.0, ((900.0, "critical"),), 1100.0),  # before onset: missed
            res("fever", 1000.0, ((5000.0, "warning"),), 4000.0),
        ]
    )
    assert s["stable_hours"] == 24.0
    assert s["false_alarms_per_hour"] == pytest.approx(1 / 24)
    assert s["false_warnings_per_hour"] == pytest.approx(1 / 24)
    assert (s["events"], s["detected"], s["pre_onset_alarms"]) == (2, 1, 1)
    assert s["delay_s_median"] == 50.0
    assert s["per_kind"]["hypoxaemia"]["earlier_warning_lead_s_median"] == 100.0
    assert s["per_kind"]["fever"]["detected"] == 1
    assert s["per_kind"]["fever"]["delay_s_median"] == 1000.0


def test_evaluate_recording_ignores_device_columns_on_request(simulated: Path) -> None:
    info = next(i for i in load_index(simulated) if i.label == "stable")
    rec = load_recording(simulated, info)
    r = evaluate_recording(rec, values_only=True)
    assert r.monitored_s > 0.9 * 12 * 3600 * 0.8


def test_sim_command_writes_a_dataset(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        _app(generate_vitals),
        ["--out", str(out), "--elders", "1", "--days", "0.05", "--deteriorations", "0"],
    )
    assert result.exit_code == 0, result.output
    [info] = load_index(out)
    assert info.label == "stable" and load_recording(out, info).t_s.size > 3000
