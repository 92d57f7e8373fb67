"""Typer commands for the vital-sign evaluation (registered by ``cli.main``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

# The evaluation and the simulator load scipy; they are imported inside the commands so
# that every other `carehub` command (the hub above all) starts without them.

__all__ = ["eval_vitals", "generate_vitals"]


def eval_vitals(
    dataset: Path | None = typer.Option(
        None, "--dataset", help="Folder in the generic vitals format."
    ),
    rr_dir: Path | None = typer.Option(
        None,
        "--rr-dir",
        help="Folder of RR-interval recordings (*_rr_secs.txt.xz, e.g. ../shared/datasets/"
        "rr-dev): real heart rate, simulated other channels, evaluated per fold of people.",
    ),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of figures."),
    values_only: bool = typer.Option(
        False, "--values-only", help="Ignore the wearable's motion/quality columns (ablation)."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes to use."),
    folds: int = typer.Option(2, "--folds", min=1, help="--rr-dir: folds of people."),
    stable_days: int = typer.Option(
        2, "--stable-days", min=0, help="--rr-dir: stable days per person (other wearables)."
    ),
    people: int | None = typer.Option(
        None, "--people", min=1, help="--rr-dir: first n people of each fold (quick runs)."
    ),
    hours: float | None = typer.Option(
        None, "--hours", min=1.0, help="--rr-dir: shorten the stable days (quick runs)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="--rr-dir: added to every seed."),
) -> None:
    """Alarms per monitored hour on stable recordings; detection rate and delay on the others."""
    from evaluation.vitals_dataset import DatasetFormatError
    from evaluation.vitals_eval import evaluate_dataset, format_report

    if (dataset is None) == (rr_dir is None):
        typer.echo("error: give exactly one of --dataset and --rr-dir", err=True)
        raise typer.Exit(code=2)
    try:
        if rr_dir is not None:
            from evaluation.rr_vitals import evaluate_rr_dir, format_rr_report

            result = evaluate_rr_dir(
                rr_dir,
                values_only=values_only,
                workers=workers,
                folds=folds,
                stable_days=stable_days,
                people=people,
                hours=hours,
                seed=seed,
            )
            typer.echo(format_rr_report(result))
            if as_json:
                typer.echo(json.dumps(result, sort_keys=True))
            return
        assert dataset is not None
        summary = evaluate_dataset(dataset, values_only=values_only, workers=workers)
    except DatasetFormatError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(format_report(summary))
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))


def generate_vitals(
    out: Path = typer.Option(..., "--out", help="Folder to write (created)."),
    elders: int = typer.Option(10, "--elders", min=1, help="Simulated elders (one seed each)."),
    days: float = typer.Option(3.0, "--days", min=0.01, help="Days of stable recording per elder."),
    seed: int = typer.Option(1000, "--seed", min=0, help="Seed of the first elder."),
    deteriorations: int = typer.Option(
        5, "--deteriorations", min=0, help="8-h deterioration recordings per elder."
    ),
    device_columns: bool = typer.Option(
        True, "--device-columns/--no-device-columns", help="Write motion and quality columns."
    ),
) -> None:
    """Write a simulated dataset in the generic vitals format."""
    from evaluation.vitals_dataset import write_dataset

    write_dataset(
        out,
        elders=elders,
        days=days,
        seed=seed,
        deteriorations=deteriorations,
        device_columns=device_columns,
    )
    typer.echo(
        f"wrote {out}: {elders} elders x {days:g} days stable"
        f" + {elders * deteriorations} deteriorations"
    )
