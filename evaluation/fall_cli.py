"""``carehub eval fall``: replay a labelled dataset through the fall detector and report."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import typer

from edge.fall_detection import FallSettings
from evaluation.recordings import DatasetFormatError, open_dataset


def _pct(value: object) -> str:
    return f"{100 * value:.2f} %" if isinstance(value, float) else "n/a"


def _num(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"


def _sec(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, float) else "n/a"


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when attached to a terminal, else nothing."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "replaying",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def eval_fall(
    dataset: Path = typer.Option(
        ...,
        "--dataset",
        help="Folder with index.csv: SisFall (SisFall_dataset/…) or generic CSV recordings.",
    ),
    hz: int = typer.Option(50, "--hz", help="Rate the recordings are down-sampled to (Hz)."),
    acc_only: bool = typer.Option(False, "--acc-only", help="Do not send the gyroscope."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all figures."),
    sensitivity: float = typer.Option(0.5, "--sensitivity", help="FallSettings.sensitivity."),
    subjects: str = typer.Option("", "--subjects", help="Only these subjects (comma list)."),
    folds: int = typer.Option(7, "--folds", help="Folds of the leave-subjects-out CV."),
    show_fit: bool = typer.Option(
        False, "--fit", help="Also print the model refitted on this dataset (for maintainers)."
    ),
) -> None:
    """Replay every recording through the streaming FallDetector in 1 s frames and score it."""
    # scipy-heavy: imported here so that `carehub hub` (same CLI) does not load it
    from evaluation.fall_eval import (
        cross_validate,
        decisions_from_events,
        fit_model,
        per_subject,
        replay_dataset,
        summarize,
    )

    try:
        ds = open_dataset(dataset)
    except DatasetFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if subjects:
        wanted = {s.strip() for s in subjects.split(",") if s.strip()}
        ds = replace(ds, recordings=tuple(r for r in ds.recordings if r.subject in wanted))
    if not ds.recordings:
        typer.echo(f"error: no recordings in {dataset} (subjects filter: {subjects!r})", err=True)
        raise typer.Exit(2)
    if not 1 <= hz <= 1000:
        typer.echo("error: --hz must be between 1 and 1000", err=True)
        raise typer.Exit(2)
    settings = FallSettings(sensitivity=sensitivity)
    try:
        with _progress(sys.stdout.isatty() and not as_json) as progress:
            results = replay_dataset(
                ds, float(hz), acc_only=acc_only, settings=settings, progress=progress
            )
    except DatasetFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    decisions = decisions_from_events(results)
    summary = summarize(decisions)
    cv = cross_validate(results, settings, folds)
    subjects_report = per_subject(decisions)
    report: dict[str, object] = {
        "dataset": str(dataset),
        "format": ds.kind,
        "hz": hz,
        "acc_only": acc_only,
        "sensitivity_setting": sensitivity,
        **summary,
        "cross_validation": cv,
        "per_subject": subjects_report,
    }
    if show_fit:
        report["refitted_model"] = fit_model(results).__dict__

    echo = typer.echo
    sensors = "acc only" if acc_only else "acc+gyro"
    echo(f"Fall detection on {dataset} ({ds.kind}), {hz} Hz, {sensors}")
    echo(
        f"  recordings {summary['recordings']}: falls {summary['falls']}, ADLs {summary['adls']}"
        f" ({summary['adl_hours']:.2f} h)"
    )
    echo(f"  sensitivity            {_pct(summary['sensitivity'])}")
    echo(f"  specificity            {_pct(summary['specificity'])}")
    echo(f"  false alarms per hour  {_num(summary['false_alarms_per_hour'])}")
    echo(
        f"  delay after peak       median {_sec(summary['delay_s_median'])},"
        f" p95 {_sec(summary['delay_s_p95'])}, max {_sec(summary['delay_s_max'])}"
    )
    per_activity = summary["per_activity"]
    assert isinstance(per_activity, dict)
    errors = {a: v for a, v in per_activity.items() if v["errors"]}
    if errors:
        echo("  errors per activity (missed falls / alarmed ADLs):")
        for activity, v in errors.items():
            kind = "missed" if v["is_fall"] else "alarmed"
            echo(f"    {activity}: {v['errors']}/{v['recordings']} {kind}")
    pooled = cv["pooled"]
    assert isinstance(pooled, dict)
    echo(
        f"  leave-subjects-out CV ({cv['folds']} folds, model refitted without held-out subjects):"
    )
    echo(
        f"    sensitivity {_pct(pooled['sensitivity'])}, specificity {_pct(pooled['specificity'])},"
        f" false alarms/h {_num(pooled['false_alarms_per_hour'])}"
    )
    per_fold = cv["per_fold"]
    assert isinstance(per_fold, list)
    for fold in per_fold:
        held = ",".join(fold["subjects"])
        if "skipped" in fold:
            echo(f"    {held}: skipped ({fold['skipped']})")
        else:
            echo(f"    {held}: sens {_pct(fold['sensitivity'])}, spec {_pct(fold['specificity'])}")
    if show_fit:
        echo(f"  refitted model: {report['refitted_model']}")
    if as_json:
        echo(json.dumps(report, default=float))
