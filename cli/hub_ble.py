"""`carehub hub ble`: run the Bluetooth bridge on a hub (unit ``carehub-ble``,
docs/devices.md). Loaded only when the command runs (cli/lazy.py): bleak, in the `ble`
extra, is imported only by the bridge itself, so a hub without it runs every other
command."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import typer

from carehub import logs
from carehub.settings import HubSettings, load
from cli.hub_commands import ConfigOpt, LogOpt


def ble(config: Path | None = ConfigOpt, log_level: str = LogOpt) -> None:
    """Publish the readings of the Bluetooth health devices paired with this hub (`hub
    pair` with `bluetooth = true`) on its broker, as each device's `vitals`; follows new
    pairings and removals by itself. Needs the `ble` extra and BlueZ."""
    settings: HubSettings = load(HubSettings, config)
    logs.setup(log_level, "ble", settings.log_file)
    if importlib.util.find_spec("bleak") is None:
        typer.echo(
            "carehub hub ble: the `ble` extra is not installed: pip install 'carehub[hub,ble]'",
            err=True,
        )
        raise typer.Exit(2)
    from gateway.ble.service import run_ble_service
    from gateway.pairing_session import PairingError

    try:
        asyncio.run(run_ble_service(settings))
    except PairingError as e:  # no broker accounts yet
        typer.echo(f"carehub hub ble: {e}", err=True)
        raise typer.Exit(2) from None
