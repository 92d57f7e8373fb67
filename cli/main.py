"""The `carehub` command: one entry point for every process and tool.

Every setting can also come from ``CAREHUB_*`` environment variables or the TOML file named
by ``--config`` / ``CAREHUB_CONFIG`` (see `carehub.settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import typer

from carehub import logs
from carehub.settings import HubSettings, MqttSettings, ServerSettings, load

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
app.add_typer(sim_app, name="sim")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")

ConfigOpt = typer.Option(
    None, "--config", "-c", help="TOML settings file.", exists=True, dir_okay=False
)
LogOpt = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR.")


@app.command()
def server(
    config: Path | None = ConfigOpt,
    host: str | None = typer.Option(None, help="Listen address [CAREHUB_HOST]."),
    port: int | None = typer.Option(None, help="Listen port [CAREHUB_PORT]."),
    database_url: str | None = typer.Option(None, help="SQLAlchemy URL [CAREHUB_DATABASE_URL]."),
    directory: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Teams/doctors/elders/hubs/devices file to load (upsert).",
    ),
    log_level: str = LogOpt,
) -> None:
    """Run the dispatch server: hub API, dispatcher, SMS (migrates the database first)."""
    from server.main import serve

    logs.setup(log_level, "server")
    settings = load(ServerSettings, config, host=host, port=port, database_url=database_url)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, directory))


@app.command()
def hub(
    config: Path | None = ConfigOpt,
    server_url: str | None = typer.Option(None, help="Server base URL [CAREHUB_SERVER_URL]."),
    mqtt_host: str | None = typer.Option(None, help="Broker host [CAREHUB_MQTT_HOST]."),
    mqtt_port: int | None = typer.Option(None, help="Broker port [CAREHUB_MQTT_PORT]."),
    hub_db: Path | None = typer.Option(None, help="Durable store file [CAREHUB_HUB_DB]."),
    log_level: str = LogOpt,
) -> None:
    """Run the hub gateway (the token comes from CAREHUB_HUB_TOKEN or the config file)."""
    from gateway.main import run_hub

    logs.setup(log_level, "hub")
    settings = load(
        HubSettings,
        config,
        server_url=server_url,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        hub_db=hub_db,
    )
    if not settings.hub_token.get_secret_value():
        typer.echo(
            "carehub hub: set CAREHUB_HUB_TOKEN (or hub_token in [hub]) to this hub's token",
            err=True,
        )
        raise typer.Exit(2)
    from gateway.store import SchemaTooNew

    try:
        asyncio.run(run_hub(settings))
    except SchemaTooNew as e:
        typer.echo(f"carehub hub: {e}", err=True)
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
) -> None:
    """One press, end to end: broker, server, hub and a simulated home; prints a timeline."""
    from cli.demo import run_demo

    raise typer.Exit(run_demo(keep=keep, broker_kind=broker_kind))


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
