"""`carehub hub`: run the home hub, and the installer's commands that set one up.

`carehub hub` alone runs the gateway; each subcommand (enroll, pair, selftest …) lives in
its own module and is registered on `hub_app` here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import typer

from carehub import logs
from carehub.settings import HubSettings, load
from cli.hub_enroll import enroll
from cli.lazy import lazy_group

ConfigOpt = typer.Option(
    None, "--config", "-c", help="TOML settings file.", exists=True, dir_okay=False
)
LogOpt = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR.")

hub_app = typer.Typer(
    help="Run the home hub (no subcommand), or install and test a home (subcommands).",
    cls=lazy_group({"ble": "cli.hub_ble:ble"}),  # the Bluetooth bridge: bleak, the `ble` extra
)


@hub_app.callback(invoke_without_command=True)
def hub(
    ctx: typer.Context,
    config: Path | None = ConfigOpt,
    server_url: str | None = typer.Option(None, help="Server base URL [CAREHUB_SERVER_URL]."),
    mqtt_host: str | None = typer.Option(None, help="Broker host [CAREHUB_MQTT_HOST]."),
    mqtt_port: int | None = typer.Option(None, help="Broker port [CAREHUB_MQTT_PORT]."),
    hub_db: Path | None = typer.Option(None, help="Durable store file [CAREHUB_HUB_DB]."),
    voice_source: str | None = typer.Option(
        None,
        help="Voice calls' microphone: alsa:DEVICE or an audio file (tests); unset: no calls"
        " [CAREHUB_VOICE_SOURCE].",
    ),
    voice_sink: str | None = typer.Option(
        None, help="Loudspeaker: alsa:DEVICE or a WAV file [CAREHUB_VOICE_SINK]."
    ),
    voice_ice_servers: str | None = typer.Option(
        None,
        help='STUN/TURN servers, JSON: \'[{"urls": "turn:HOST:3478", "username": "u",'
        ' "credential": "p"}]\' [CAREHUB_VOICE_ICE_SERVERS].',
    ),
    log_level: str = LogOpt,
) -> None:
    """Run the hub gateway (the token comes from CAREHUB_HUB_TOKEN, the config file, or the
    credential file `carehub hub enroll` wrote); the subcommands below install and test a home."""
    if ctx.invoked_subcommand is not None:
        return
    from gateway.main import run_hub

    settings = load(
        HubSettings,
        config,
        server_url=server_url,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        hub_db=hub_db,
        voice_source=voice_source,
        voice_sink=voice_sink,
        voice_ice_servers=_json_list(voice_ice_servers),
    )
    logs.setup(log_level, "hub", settings.log_file)
    from gateway.credential import CredentialError, with_credential

    try:
        settings = with_credential(settings)  # the token of `carehub hub enroll`, if not set
    except CredentialError as e:
        typer.echo(f"carehub hub: {e}", err=True)
        raise typer.Exit(2) from None
    from gateway.store import SchemaTooNew

    try:
        asyncio.run(run_hub(settings))
    except SchemaTooNew as e:
        typer.echo(f"carehub hub: {e}", err=True)
        raise typer.Exit(2) from None
    except Exception as e:  # a damaged store that could not be set aside, a bug
        # one clear line on stderr and in the log (with the traceback there): never a hang
        # nor a traceback that only stderr saw; systemd restarts the hub
        logging.getLogger("carehub.hub").error(
            "hub stopped: %s: %s", type(e).__name__, e, exc_info=e
        )
        typer.echo(f"carehub hub: stopped: {type(e).__name__}: {e}", err=True)
        raise typer.Exit(1) from None


def _json_list(text: str | None) -> list[object] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise typer.BadParameter(f"not JSON: {e}") from None
    if not isinstance(value, list):
        raise typer.BadParameter("a JSON list of RTCIceServer objects")
    return value


def _register() -> None:
    """Each installer command lives in its own module; one line each here."""
    from cli import hub_pairing, hub_selftest, hub_units

    hub_app.command("broker-config")(hub_pairing.broker_config)
    hub_app.command("pair")(hub_pairing.pair)
    hub_app.command("devices")(hub_pairing.devices)
    hub_app.command("remove")(hub_pairing.remove)
    hub_app.command("selftest")(hub_selftest.selftest)
    hub_app.command("units")(hub_units.units)
    hub_app.command("enroll")(enroll)


_register()
