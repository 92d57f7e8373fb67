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
        "--sisfall-dir",
        "--dataset",
        help="Folder with index.csv: SisFall (SisFall_dataset/…) or generic CSV recordings.",
    ),
    hz: list[int] = typer.Option(
        [50, 20], "--hz", help="Rates to replay at (Hz), repeat the option for several."
    ),
    same_device: bool = typer.Option(
        False,
        "--same-device",
        help="Replay rates other than 50 Hz as recorded (default: as another device, with a "
        "random orientation, gain and offset errors and noise).",
    ),
    elderly: int = typer.Option(
        1, "--elderly", help="Elderly-like (slower, softer) copies of each fall, 0 for none."
    ),
    seed: int = typer.Option(13, "--seed", help="Seed of the augmentation and the device."),
    acc_only: bool = typer.Option(False, "--acc-only", help="Kept for old scripts: no effect."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all figures."),
    sensitivity: float = typer.Option(0.5, "--sensitivity", help="FallSettings.sensitivity."),
    confirm_s: float = typer.Option(
        FallSettings.confirm_s, "--confirm-s", help="FallSettings.confirm_s (2.5-10 s)."
    ),
    subjects: str = typer.Option("", "--subjects", help="Only these subjects (comma list)."),
    folds: int = typer.Option(7, "--folds", help="Folds of the leave-subjects-out CV."),
    show_fit: bool = typer.Option(
        False, "--fit", help="Also print the detector fitted on all subjects (for maintainers)."
    ),
) -> None:
    """Replay every recording through the streaming FallDetector in 1 s frames and score it:
    the shipped detector on everything, then leave-subjects-out CV (model and threshold
    fitted without the held-out subjects), per rate, with elderly-like falls, lying down
    and staying down, and what each second of confirmation buys."""
    # scipy-heavy: imported here so that `carehub hub` (same CLI) does not load it
    from edge.fall_detection import FALL_MODEL
    from evaluation.fall_eval import (
        EVAL_CONFIRM_S,
        cross_validate,
        decisions_from_model,
        fit_detector,
        per_subject,
        replay_conditions,
        summarize,
    )

    del acc_only
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
    if not hz or not all(1 <= h <= 1000 for h in hz):
        typer.echo("error: --hz must be between 1 and 1000", err=True)
        raise typer.Exit(2)
    if not 2.5 <= confirm_s <= EVAL_CONFIRM_S or elderly < 0:
        typer.echo("error: --confirm-s must be 2.5-10 s and --elderly ≥ 0", err=True)
        raise typer.Exit(2)
    settings = FallSettings(sensitivity=sensitivity, confirm_s=confirm_s)
    rates = [
        (f"{h} Hz" if same_device or h == 50 else f"{h} Hz other device", float(h), h != 50)
        for h in dict.fromkeys(hz)
    ]
    rates = [(name, rate, other and not same_device) for name, rate, other in rates]
    try:
        with _progress(sys.stdout.isatty() and not as_json) as progress:
            conditions = replay_conditions(
                ds,
                rates,
                settings=settings,
                elderly_per_fall=elderly,
                seed=seed,
                progress=progress,
            )
    except DatasetFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    cv = cross_validate(conditions, settings, folds)
    report: dict[str, object] = {
        "dataset": str(dataset),
        "format": ds.kind,
        "sensitivity_setting": sensitivity,
        "confirm_s": confirm_s,
        "cross_validation": cv,
    }
    echo = typer.echo
    echo(f"Fall detection on {dataset} ({ds.kind}), confirmation {confirm_s:g} s")
    for c in conditions:
        decisions = decisions_from_model(c.real, FALL_MODEL, settings)
        summary = summarize(decisions)
        elderly_summary = summarize(decisions_from_model(c.elderly, FALL_MODEL, settings))
        report[c.name] = {
            **summary,
            "elderly_like_sensitivity": elderly_summary["sensitivity"],
            "per_subject": per_subject(decisions),
        }
        _print_condition(echo, c.name, summary, elderly_summary, cv)
    pooled_folds = cv["per_fold"]
    assert isinstance(pooled_folds, list)
    echo("  per fold of the CV (held-out subjects: logit threshold chosen on the others):")
    for fold in pooled_folds:
        held = ",".join(fold["subjects"])
        if "skipped" in fold:
            echo(f"    {held}: skipped ({fold['skipped']})")
            continue
        parts = [
            f"{c.name} sens {_pct(fold[c.name]['sensitivity'])}"
            f" spec {_pct(fold[c.name]['specificity'])}"
            for c in conditions
        ]
        echo(f"    {held}: threshold {fold['threshold']:+.2f}; " + "; ".join(parts))
    if show_fit:
        model, threshold = fit_detector(
            [r for c in conditions for r in c.real],
            [r for c in conditions for r in c.elderly],
            settings,
        )
        report["refitted_model"] = model.__dict__
        echo(f"  fitted on all subjects (threshold {threshold:+.2f} folded into bias): {model}")
    if as_json:
        echo(json.dumps(report, default=float))


def _print_condition(
    echo: Callable[[str], None],
    name: str,
    summary: dict[str, object],
    elderly: dict[str, object],
    cv: dict[str, object],
) -> None:
    echo(f"[{name}] shipped detector (fitted on these subjects: optimistic)")
    echo(
        f"  recordings {summary['recordings']}: falls {summary['falls']}, ADLs {summary['adls']}"
        f" ({summary['adl_hours']:.2f} h)"
    )
    echo(f"  sensitivity            {_pct(summary['sensitivity'])}")
    echo(f"  specificity            {_pct(summary['specificity'])}")
    echo(f"  false alarms per hour  {_num(summary['false_alarms_per_hour'])}")
    echo(f"  elderly-like falls     {_pct(elderly['sensitivity'])} ({elderly['falls']})")
    echo(
        f"  delay after peak       median {_sec(summary['delay_s_median'])},"
        f" p95 {_sec(summary['delay_s_p95'])}, max {_sec(summary['delay_s_max'])}"
    )
    per_activity = summary["per_activity"]
    assert isinstance(per_activity, dict)
    errors = {a: v for a, v in per_activity.items() if v["errors"]}
    if errors:
        listed = ", ".join(
            f"{a} {v['errors']}/{v['recordings']} {'missed' if v['is_fall'] else 'alarmed'}"
            for a, v in errors.items()
        )
        echo(f"  errors per activity    {listed}")
    got = cv.get(name)
    if not isinstance(got, dict):
        return
    pooled = got["pooled"]
    echo(
        f"  leave-subjects-out CV ({cv['folds']} folds; model and threshold fitted"
        " without the held-out subjects):"
    )
    echo(
        f"    sensitivity {_pct(pooled['sensitivity'])}, specificity {_pct(pooled['specificity'])},"
        f" false alarms/h {_num(pooled['false_alarms_per_hour'])}"
    )
    echo(
        f"    elderly-like falls {_pct(got['elderly_like_sensitivity'])}"
        f" ({got['elderly_like_falls']}); lying down and staying (D12/D13, no sitting up)"
        f" specificity {_pct(got['lie_down_and_stay_specificity'])} ({got['lie_down_recordings']})"
    )
    echo(
        "    care-plan sensitivity | sensitivity | specificity | elderly-like | lying down, staying"
    )
    for row in got["sensitivity_table"]:
        echo(
            f"    {row['sensitivity_setting']:>21g} | {_pct(row['sensitivity']):>11} |"
            f" {_pct(row['specificity']):>11} | {_pct(row['elderly_like_sensitivity']):>12} |"
            f" {_pct(row['lie_down_and_stay_specificity'])}"
        )
    echo("    confirmation s | sensitivity | specificity | FA/h  | elderly-like | median delay")
    for row in got["confirm_table"]:
        echo(
            f"    {row['confirm_s']:>14g} | {_pct(row['sensitivity']):>11} |"
            f" {_pct(row['specificity']):>11} | {_num(row['false_alarms_per_hour']):>5} |"
            f" {_pct(row['elderly_like_sensitivity']):>12} | {_sec(row['delay_s_median'])}"
        )
