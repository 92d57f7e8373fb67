"""`carehub sim summaries`: post days of simulated daily summaries as a hub would
(`carehub.api_contract.DailySummary` to ``SUMMARIES_PATH``, with the hub's bearer token), for
the review page and its tests. The days come from the pure, seeded `cli.summary_days`.

Plain `urllib`: the simulator's install has no HTTP client library.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import typer

from carehub.api_contract import SUMMARIES_PATH, DailySummary
from cli.summary_days import home_days


def post_summary(server: str, token: str, summary: DailySummary, timeout_s: float = 20) -> bool:
    """POST one summary; True when the server stored it, False when it had it already.
    A refusal raises `urllib.error.HTTPError`, an unreachable server `URLError`."""
    request = urllib.request.Request(
        server.rstrip("/") + SUMMARIES_PATH,
        data=summary.model_dump_json().encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (http/https only)
        return bool(json.loads(response.read())["created"])


def _yesterday(time_zone: str) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(time_zone)).date() - timedelta(days=1)


def sim_summaries(
    hub_token: str = typer.Option(
        ...,
        "--hub-token",
        envvar="CAREHUB_HUB_TOKEN",
        help="The hub's bearer token [CAREHUB_HUB_TOKEN]: the days are this hub's elder's.",
        show_default=False,
    ),
    server: str = typer.Option(
        "http://127.0.0.1:8000", "--server", envvar="CAREHUB_SERVER_URL", help="Server base URL."
    ),
    days: int = typer.Option(90, "--days", min=1, max=400, help="How many days, ending --until."),
    until: str = typer.Option(
        "", "--until", help="The last day, YYYY-MM-DD (default: yesterday in --time-zone)."
    ),
    time_zone: str = typer.Option("Asia/Shanghai", "--time-zone", help="The centre's time zone."),
    seed: int = typer.Option(1, "--seed", help="The same seed gives the same home and days."),
    deteriorate: bool = typer.Option(
        False,
        "--deteriorate",
        help="The home's last three weeks drift: resting heart rate up, more time below 90 %"
        " SpO2, fewer active minutes, more nights up, more near-falls, the wearable left off.",
    ),
) -> None:
    """Post `--days` days of plausible daily summaries for the hub's elder (exit 1 when the
    server refuses one)."""
    try:
        last = date.fromisoformat(until) if until else _yesterday(time_zone)
    except ValueError:
        raise typer.BadParameter("use YYYY-MM-DD", param_hint="--until") from None
    created = 0
    summaries = home_days(days, last, seed, deteriorate)
    for summary in summaries:
        try:
            created += post_summary(server, hub_token, summary)
        except urllib.error.HTTPError as e:
            why = e.read().decode(errors="replace")[:300]
            typer.echo(f"carehub sim summaries: {summary.day} refused ({e.code}): {why}", err=True)
            raise typer.Exit(1) from None
        except (urllib.error.URLError, OSError) as e:
            typer.echo(f"carehub sim summaries: cannot reach {server}: {e}", err=True)
            raise typer.Exit(1) from None
    typer.echo(
        f"{len(summaries)} days {summaries[0].day} … {summaries[-1].day}"
        f"{' (deteriorating)' if deteriorate else ''}: {created} stored,"
        f" {len(summaries) - created} already there"
    )
