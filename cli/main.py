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
from carehub.settings import MqttSettings, ServerSettings, load
from cli.admin_commands import admin_app
from cli.hub_commands import ConfigOpt, LogOpt, hub_app

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
sim_app = typer.Typer(
    help="Simulated devices that speak the public MQTT contract.", no_args_is_help=True
)
eval_app = typer.Typer(
    help="Evaluate the edge detectors on recorded datasets.", no_args_is_help=True
)
bench_app = typer.Typer(
    help="Benchmarks that print figures beside a same-run baseline.", no_args_is_help=True
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

    Enrollment: CAREHUB_ENROLL_CODE_TTL_S (1800), CAREHUB_ENROLL_MAX_ATTEMPTS_PER_CLIENT (10
    per IPv4 address or IPv6 /64) and CAREHUB_ENROLL_MAX_ATTEMPTS_PER_HOUSEHOLD (20, with its
    used or expired codes) within CAREHUB_ENROLL_WINDOW_S (600).

    CAREHUB_TRUSTED_PROXIES (none): comma-separated addresses or networks of the reverse
    proxies whose X-Forwarded-For is believed.

    CAREHUB_SMS_MAX_PER_NUMBER (4 texts per number per 15 min, then merged),
    CAREHUB_SMS_LEASE_S (30: a send claimed by a dead process is retried after it),
    CAREHUB_REPLY_CODE_HOLD_H (12: a reply code keeps meaning its alarm this long).

    HTTP limits (docs/operations.md): CAREHUB_HTTP_HEADER_TIMEOUT_S (10),
    CAREHUB_HTTP_BODY_TIMEOUT_S (60), CAREHUB_HTTP_KEEP_ALIVE_S (5),
    CAREHUB_HTTP_MAX_HEADER_BYTES (65536), CAREHUB_HTTP_MAX_BODY_BYTES (1048576).

    CAREHUB_MERGE_REPEATS (true: an alarm raised again by the same device while its alarm
    of that kind is open joins that alarm as a repeat).

    Console: CAREHUB_CONSOLE_INSECURE_COOKIES (false; true only for local http),
    CAREHUB_CONSOLE_SESSION_HOURS (12), CAREHUB_CONSOLE_LOGIN_MAX_FAILURES (5 per address
    within CAREHUB_CONSOLE_LOGIN_WINDOW_S, 300; a username's failures past it delay its
    tries from new addresses, up to CAREHUB_CONSOLE_LOGIN_DELAY_MAX_S, 30).
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


@sim_app.command("press")
def sim_press(
    device: str = typer.Option(..., help="Button device id, e.g. btn-1."),
    action: str = typer.Option("press", help="press or cancel."),
    wait: float = typer.Option(15.0, help="Seconds to wait for acks."),
    until: str = typer.Option("dispatched", help="Ack state to wait for."),
    config: Path | None = ConfigOpt,
) -> None:
    """Press a simulated call button once and print the acks it gets."""
    from firmware_sim.button import CallButton

    s = load(MqttSettings, config)
    with CallButton(device, s.mqtt_host, s.mqtt_port, s.base_topic) as button:
        if action not in ("press", "cancel"):
            raise typer.BadParameter("action must be press or cancel", param_hint="--action")
        seq = button.press("press" if action == "press" else "cancel")
        typer.echo(f"{device}: {action} seq {seq}")
        hit = button.acks.wait_for(lambda a: a.seq == seq and a.state.value == until, wait)
        for at, ack in button.acks.entries:
            typer.echo(f"  ack {ack.state.value} alarm {ack.alarm_id} at {at}")
        if hit is None:
            typer.echo(f"no '{until}' ack within {wait} s", err=True)
            raise typer.Exit(1)


@sim_app.command("home")
def sim_home(
    button: str = typer.Option("btn-1"),
    wearable: str = typer.Option("wear-1"),
    pendant: str = typer.Option("pend-1"),
    seconds: float = typer.Option(0, help="Run this long (0 = until Ctrl-C)."),
    config: Path | None = ConfigOpt,
) -> None:
    """Run a simulated home (call button, wearable, fall pendant) publishing the contract."""
    import time

    from firmware_sim.button import CallButton
    from firmware_sim.pendant import FallPendant
    from firmware_sim.wearable import Wearable

    s = load(MqttSettings, config)
    args = (s.mqtt_host, s.mqtt_port, s.base_topic)
    with CallButton(button, *args), Wearable(wearable, *args), FallPendant(pendant, *args):
        typer.echo(f"home running: {button}, {wearable}, {pendant} on {s.mqtt_host}:{s.mqtt_port}")
        deadline = time.monotonic() + seconds if seconds else float("inf")
        with contextlib.suppress(KeyboardInterrupt):
            while time.monotonic() < deadline:
                time.sleep(0.2)


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


def _register_tools() -> None:
    """Evaluation and benchmark commands live with their code; those modules import their
    heavy dependencies (scipy) inside the commands, so `carehub hub` stays small."""
    from bench.chaos_bench import bench_chaos
    from bench.e2e_bench import bench_e2e
    from bench.edge_bench import bench_edge
    from bench.hub_load import bench_hub
    from bench.server_bench import bench_server
    from evaluation.fall_cli import eval_fall
    from evaluation.vitals_cli import eval_vitals, generate_vitals

    eval_app.command("fall")(eval_fall)
    eval_app.command("vitals")(eval_vitals)
    sim_app.command("vitals-dataset")(generate_vitals)
    bench_app.command("edge")(bench_edge)
    bench_app.command("hub")(bench_hub)
    bench_app.command("e2e")(bench_e2e)
    bench_app.command("chaos")(bench_chaos)
    bench_app.command("server")(bench_server)


_register_tools()


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


def main() -> None:
    """The `carehub` entry point: a setting with a bad value ends in one line naming it
    (and exit code 2), not in a traceback."""
    from carehub.settings import SettingsError

    try:
        app()
    except SettingsError as e:
        typer.echo(f"carehub: bad setting: {e}", err=True)
        raise SystemExit(2) from None
