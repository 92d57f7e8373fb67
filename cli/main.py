"""The `carehub` command: one entry point for every process and tool.

Every setting can also come from ``CAREHUB_*`` environment variables or the TOML file named
by ``--config`` / ``CAREHUB_CONFIG`` (see `carehub.settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import typer

from carehub import logs
from carehub.settings import ServerSettings, load
from cli import sim_commands
from cli.admin_commands import admin_app
from cli.hub_commands import ConfigOpt, LogOpt, hub_app
from cli.lazy import lazy_group

app = typer.Typer(
    help=(
        "CareHub: emergency assistance for elders at home.\n\n"
        "Settings come from options, CAREHUB_* environment variables (e.g. "
        "CAREHUB_DATABASE_URL, CAREHUB_HUB_TOKEN, CAREHUB_MQTT_PORT, CAREHUB_TWILIO_API_BASE) "
        "and the TOML file named by --config or CAREHUB_CONFIG "
        "(\\[server], \\[hub], \\[mqtt] tables)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Evaluation and benchmark commands live with their code, whose imports (numpy, paho,
# scipy) a server's or a hub's install may not have: loaded only when one of them runs.
sim_app = typer.Typer(
    help="Simulated devices that speak the public MQTT contract.",
    no_args_is_help=True,
    cls=lazy_group(
        {
            "vitals-dataset": "evaluation.vitals_cli:generate_vitals",
            "summaries": "cli.summary_sim:sim_summaries",
        }
    ),
)
eval_app = typer.Typer(
    help="Evaluate the edge detectors on recorded datasets.",
    no_args_is_help=True,
    cls=lazy_group(
        {"fall": "evaluation.fall_cli:eval_fall", "vitals": "evaluation.vitals_cli:eval_vitals"}
    ),
)
bench_app = typer.Typer(
    help="Benchmarks that print figures beside a same-run baseline.",
    no_args_is_help=True,
    cls=lazy_group(
        {
            "edge": "bench.edge_bench:bench_edge",
            "hub": "bench.hub_load:bench_hub",
            "e2e": "bench.e2e_bench:bench_e2e",
            "chaos": "bench.chaos_bench:bench_chaos",
            "server": "bench.server_bench:bench_server",
            "voice": "bench.voice_bench:bench_voice",
        }
    ),
)
report_app = typer.Typer(help="Reports read from the server's database.", no_args_is_help=True)
directory_app = typer.Typer(
    help="The directory file (teams, elders, hubs …).", no_args_is_help=True
)
app.add_typer(sim_app, name="sim")
app.add_typer(report_app, name="report")
app.add_typer(directory_app, name="directory")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
user_app = typer.Typer(help="Console accounts (dispatchers, doctors, installers, admins).")
app.add_typer(user_app, name="user")
app.add_typer(hub_app, name="hub")
app.add_typer(admin_app, name="admin")
sim_app.command("press")(sim_commands.press)
sim_app.command("home")(sim_commands.home)


@app.command()
def server(
    config: Path | None = ConfigOpt,
    host: str | None = typer.Option(None, help="Listen address [CAREHUB_HOST, 127.0.0.1]."),
    port: int | None = typer.Option(None, help="Listen port [CAREHUB_PORT, 8000]."),
    database_url: str | None = typer.Option(
        None,
        help="SQLAlchemy URL: sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB"
        " [CAREHUB_DATABASE_URL, sqlite+aiosqlite:///carehub-server.db].",
    ),
    directory: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Directory file (teams, members, policies, elders, hubs, devices) to load: an"
        " upsert, see docs/operations.md.",
    ),
    notifier: str | None = typer.Option(
        None, help="console (log the SMS) or twilio [CAREHUB_NOTIFIER, console]."
    ),
    public_base_url: str | None = typer.Option(
        None,
        help="The server's address as phones and Twilio see it; accept links and webhook"
        " signatures use it [CAREHUB_PUBLIC_BASE_URL, http://127.0.0.1:8000].",
    ),
    sqlite_synchronous: str | None = typer.Option(
        None,
        help="FULL (fsync each commit) or NORMAL (survives process crashes only)"
        " [CAREHUB_SQLITE_SYNCHRONOUS, FULL].",
    ),
    log_level: str = LogOpt,
) -> None:
    """Run the dispatch server: hub API, escalation worker, SMS (migrates the database first).

    Read only from the environment or the \\[server] table of --config:

    CAREHUB_ADMIN_TOKEN: bearer token of the admin API.

    CAREHUB_SECRET_KEY: seals key-safe codes, derives accept links; the same on every
    process; keep it with the backups.

    CAREHUB_TWILIO_ACCOUNT_SID, CAREHUB_TWILIO_AUTH_TOKEN, CAREHUB_TWILIO_FROM (sender),
    CAREHUB_TWILIO_API_BASE (replaces https://api.twilio.com, for tests).

    CAREHUB_HUB_OFFLINE_AFTER_S (90), CAREHUB_LONG_POLL_MAX_S (25).

    PostgreSQL connections per process: CAREHUB_PG_POOL_SIZE (5) kept open, up to
    CAREHUB_PG_MAX_OVERFLOW (10) more under load, plus one for LISTEN.

    Enrollment: CAREHUB_ENROLL_CODE_TTL_S (1800), CAREHUB_ENROLL_MAX_ATTEMPTS_PER_CLIENT (10
    per IPv4 address or IPv6 /64) and CAREHUB_ENROLL_MAX_ATTEMPTS_PER_HOUSEHOLD (20, with its
    used or expired codes) within CAREHUB_ENROLL_WINDOW_S (600).

    CAREHUB_TRUSTED_PROXIES (none): comma-separated addresses or networks of the reverse
    proxies whose X-Forwarded-For is believed.

    CAREHUB_SMS_MAX_PER_NUMBER (4 texts per number per 15 min, then merged),
    CAREHUB_SMS_LEASE_S (30: a send claimed by a dead process is retried after it),
    CAREHUB_REPLY_CODE_HOLD_H (12: a reply code keeps meaning its alarm this long).

    CAREHUB_HUB_AUTH_TTL_S (1: hub tokens are kept in memory; a token revoked by another
    server process works here for at most about this long).

    HTTP limits (docs/operations.md): CAREHUB_HTTP_HEADER_TIMEOUT_S (10),
    CAREHUB_HTTP_BODY_TIMEOUT_S (60), CAREHUB_HTTP_KEEP_ALIVE_S (5),
    CAREHUB_HTTP_MAX_HEADER_BYTES (65536), CAREHUB_HTTP_MAX_BODY_BYTES (1048576).

    CAREHUB_MERGE_REPEATS (true: an alarm raised again by the same device while its alarm
    of that kind is open joins that alarm as a repeat).

    Alarms first: CAREHUB_ALARMS_FIRST (true: under overload heartbeats, fault reports,
    daily summaries, config and console reads get 503 + Retry-After, alarms never),
    overload when more than CAREHUB_MAINTENANCE_MAX_IN_FLIGHT (16) are in flight or the
    event loop lags over
    CAREHUB_OVERLOAD_LOOP_LAG_MS (150, held CAREHUB_OVERLOAD_HOLD_S 5); Retry-After from
    CAREHUB_MAINTENANCE_RETRY_AFTER_S (20) to twice it.

    Console: CAREHUB_CONSOLE_INSECURE_COOKIES (false; true only for local http),
    CAREHUB_CONSOLE_SESSION_HOURS (12), CAREHUB_CONSOLE_LOGIN_MAX_FAILURES (5 per address
    within CAREHUB_CONSOLE_LOGIN_WINDOW_S, 300; a username's failures past it delay its
    tries from new addresses, up to CAREHUB_CONSOLE_LOGIN_DELAY_MAX_S, 30);
    CAREHUB_CONSOLE_TIME_ZONE (Asia/Shanghai: the centre's times and KPI days);
    CAREHUB_CONSOLE_INCIDENT_WINDOW_S (300: an elder's alarms this close are one incident).

    Voice calls (docs/voice.md): CAREHUB_VOICE_ICE_SERVERS (JSON list of STUN/TURN servers
    for the console's browser), CAREHUB_VOICE_CONSOLE_ICE_POLICY (all; relay = TURN only).

    The family doctor's review (docs/health-review.md): CAREHUB_REVIEW_THRESHOLDS (JSON
    object of the trend flags' windows and thresholds, e.g. {"resting_hr_rise_bpm": 8});
    CAREHUB_SUMMARY_KEEP_DAYS (400: the hubs' daily summaries older than this are deleted).
    """

    from server.directory import DirectoryError
    from server.main import serve

    logs.setup(log_level, "server")
    settings = load(
        ServerSettings,
        config,
        host=host,
        port=port,
        database_url=database_url,
        notifier=notifier,
        public_base_url=public_base_url,
        sqlite_synchronous=sqlite_synchronous,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_fast(serve(settings, directory))
    except DirectoryError as e:
        typer.echo(f"carehub server: {e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def broker(
    port: int = typer.Option(1883, help="Port to listen on (127.0.0.1)."),
    kind: str = typer.Option("auto", help="auto (mosquitto if installed), mosquitto or amqtt."),
    data_dir: Path | None = typer.Option(
        None,
        file_okay=False,
        help="Persistence directory, created if missing; keep it across restarts so queued"
        " messages survive [CAREHUB_BROKER_DATA_DIR, default ./carehub-broker].",
    ),
    config: Path | None = ConfigOpt,
    log_level: str = LogOpt,
) -> None:
    """Run an MQTT broker for a hub: mosquitto when installed, else embedded amqtt."""
    from carehub.settings import BrokerSettings
    from harness.broker import run_broker

    logs.setup(log_level, "broker")
    settings = load(BrokerSettings, config, broker_data_dir=data_dir)
    with contextlib.suppress(KeyboardInterrupt):
        run_broker(port, kind, settings.broker_data_dir)


@app.command()
def demo(
    keep: bool = typer.Option(False, help="Keep the temporary directory (logs, databases)."),
    broker_kind: str = typer.Option("auto", "--broker", help="auto, mosquitto or amqtt."),
    database_url: str | None = typer.Option(
        None,
        help="The server's database, e.g. postgresql+asyncpg://postgres@127.0.0.1/demo"
        " (default: SQLite in the temporary directory). It must be empty or a previous demo's.",
    ),
    keep_running: bool = typer.Option(
        False,
        "--keep-running",
        help="Stay up until Ctrl-C: print the console's URL and a dispatcher's sign-in, and"
        " press the call button now and then.",
    ),
    alarm_every: float = typer.Option(
        60.0, min=0.5, help="With --keep-running: seconds between simulated presses."
    ),
) -> None:
    """One press, end to end: broker, server, hub and a simulated home; prints a timeline."""
    from cli.demo import run_demo

    raise typer.Exit(
        run_demo(
            keep=keep,
            broker_kind=broker_kind,
            database_url=database_url,
            keep_running=keep_running,
            alarm_every_s=alarm_every,
        )
    )


@report_app.command("kpi")
def report_kpi(
    since: str = typer.Option(..., help="First day, YYYY-MM-DD (in --time-zone)."),
    until: str | None = typer.Option(None, help="Last day included, YYYY-MM-DD (default: now)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document instead of a table."),
    time_zone: str | None = typer.Option(
        None,
        help="Zone of the dates and of the per-day split "
        "[default: the centre's, CAREHUB_CONSOLE_TIME_ZONE, as the console's KPI page].",
    ),
    database_url: str | None = typer.Option(
        None, help="The server's database [CAREHUB_DATABASE_URL]."
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """Answer and arrival times per team, overall and per day, against the targets
    (97.5 % accepted within 60 s, 99 % within 180 s, arrival within the 20-minute circle)."""
    from cli.report import kpi_command

    settings = load(ServerSettings, config, database_url=database_url)
    zone = time_zone or settings.console_time_zone
    raise typer.Exit(kpi_command(settings.database_url, since, until, zone, as_json))


@directory_app.command("check")
def directory_check(
    file: Path = typer.Argument(..., help="The directory file (.toml or .json)."),
) -> None:
    """Validate a directory file; print each error with its file:LINE (exit 1 on errors)."""
    from server.directory import DirectoryError, read_directory

    if not file.is_file():
        typer.echo(f"{file}: no such file", err=True)
        raise typer.Exit(2)
    try:
        d = read_directory(file)
    except DirectoryError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{file}: ok — {len(d.teams)} teams, {len(d.doctors)} members, {len(d.policies)}"
        f" policies, {len(d.elders)} elders, {len(d.hubs)} hubs, {len(d.devices)} devices"
    )


@user_app.command("add")
def user_add(
    username: str = typer.Option(..., "--username", help="Sign-in name."),
    role: str = typer.Option(..., "--role", help="dispatcher, doctor, installer or admin."),
    team: str | None = typer.Option(None, "--team", help="The team (required for doctors)."),
    language: str = typer.Option("zh", "--language", help="zh or en (switchable later)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input's first line."
    ),
    config: Path | None = ConfigOpt,
    database_url: str | None = typer.Option(None, help="SQLAlchemy URL [CAREHUB_DATABASE_URL]."),
) -> None:
    """Create a console account (the password is prompted for, or read with --password-stdin)."""
    import sys
    import time

    from server.console.accounts import AccountError
    from server.console.console_store import add_account_to

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = load(ServerSettings, config, database_url=database_url)
    try:
        account = asyncio.run(
            add_account_to(
                settings.database_url,
                username,
                password,
                role,
                team,
                language,
                int(time.time() * 1000),
            )
        )
    except AccountError as e:
        typer.echo(f"cannot add {username!r}: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"account {account.username} ({account.role.value}) created")


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """Run the server's event loop on uvloop where it is installed (the server extra has it,
    with httptools, which uvicorn picks by itself): about a third more requests a second
    from one process in `carehub bench server`."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


EXTRA_OF_COMMAND = {
    "server": "server",
    "user": "server",
    "report": "server",
    "directory": "server",
    "admin": "server",
    "hub": "hub",
    "broker": "hub",
    "sim": "sim",
    "eval": "eval",
    "bench": "test",
    "demo": "demo",
}
"""The extra that installs what each command imports (pyproject.toml)."""

OUR_PACKAGES = {
    "carehub", "edge", "gateway", "server", "firmware_sim", "cli", "harness", "bench",
    "evaluation",
}  # fmt: skip


def missing_module(error: ModuleNotFoundError, argv: list[str]) -> str | None:
    """One line for a library this install lacks, naming the extra to install; None when
    the missing module is one of ours (a packaging bug, worth its traceback)."""
    top = (error.name or "").split(".")[0]
    if not top or top in OUR_PACKAGES:
        return None
    command = next((a for a in argv if not a.startswith("-")), "")
    extra = EXTRA_OF_COMMAND.get(command, "test")
    return (
        f"carehub {command}: this install lacks {top!r}, which the command needs:"
        f" pip install 'carehub[{extra}]'"
    )


def main() -> None:
    """The `carehub` entry point: a setting with a bad value ends in one line naming it
    (and exit code 2), not in a traceback; so does a command this role's install cannot run."""
    import sys

    from carehub.settings import SettingsError

    try:
        app()
    except SettingsError as e:
        typer.echo(f"carehub: bad setting: {e}", err=True)
        raise SystemExit(2) from None
    except ModuleNotFoundError as e:
        line = missing_module(e, sys.argv[1:])
        if line is None:
            raise
        typer.echo(line, err=True)
        raise SystemExit(2) from None
