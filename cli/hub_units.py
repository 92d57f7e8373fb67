"""`carehub hub units`: write the systemd units of the hub and its broker, and the logrotate
snippet, with this machine's paths filled in (docs/install.md)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import typer

from carehub.settings import HubSettings, load
from gateway import units as unit_files
from harness.broker import mosquitto_binary

DEFAULT_CONFIG = Path("/etc/carehub/carehub.toml")


def _carehub_bin() -> Path:
    """The `carehub` script of the environment running us (the venv's, on a hub)."""
    beside = Path(sys.executable).parent / "carehub"
    found = beside if beside.exists() else shutil.which("carehub")
    if found is None:
        raise typer.BadParameter("cannot find the carehub script: pass --carehub-bin")
    return Path(found).absolute()


def units(
    out: Path = typer.Option(
        ..., "--out", help="Directory to write into, e.g. /etc/systemd/system.", file_okay=False
    ),
    config: Path = typer.Option(
        DEFAULT_CONFIG,
        "--config",
        "-c",
        help="The hub's TOML settings file, as the unit will pass it; read now, when it "
        "exists, for the store, log and broker paths.",
    ),
    user: str = typer.Option("carehub", help="System user the hub and broker run as."),
    group: str | None = typer.Option(None, help="Their group [the user's name]."),
    carehub_bin: Path | None = typer.Option(
        None, help="The carehub script [the one beside this Python, e.g. the venv's]."
    ),
    mosquitto: Path | None = typer.Option(
        None, help="The mosquitto binary [found on PATH, else /usr/sbin/mosquitto]."
    ),
) -> None:
    """Write carehub-hub.service, carehub-broker.service, carehub-ble.service (the Bluetooth
    bridge, for a hub with `bluetooth = true`) and carehub-hub.logrotate."""
    settings: HubSettings = load(HubSettings, config if config.is_file() else None)
    broker_dir = Path(getattr(settings, "hub_broker_dir", unit_files.STATE_DIR / "broker"))
    try:
        params = unit_files.UnitParams(
            carehub_bin=(carehub_bin or _carehub_bin()).absolute(),
            config_file=config.absolute(),
            user=user,
            group=group or user,
            mosquitto_bin=mosquitto or Path(mosquitto_binary() or "/usr/sbin/mosquitto"),
            broker_dir=unit_files.STATE_DIR / broker_dir,
            hub_writes=unit_files.hub_writes(settings.hub_db, settings.log_file),
        )
    except ValueError as e:
        typer.echo(f"carehub hub units: {e}", err=True)
        raise typer.Exit(2) from None
    if not config.is_file():
        typer.echo(f"note: {config} does not exist yet; write it before starting the hub")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in unit_files.render(params).items():
        (out / name).write_text(text)
        (out / name).chmod(0o644)
        typer.echo(f"wrote {out / name}")
    typer.echo(
        "next (docs/install.md): put carehub-hub.logrotate in /etc/logrotate.d/carehub-hub, "
        "then systemctl daemon-reload && systemctl enable --now carehub-broker carehub-hub"
        " (and carehub-ble on a hub with Bluetooth health devices: docs/devices.md)"
    )
