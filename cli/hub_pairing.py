"""`carehub hub broker-config | pair | devices | remove`: securing the hub's broker and
pairing devices with it, as Zigbee2MQTT users know it (see docs/mqtt.md, Pairing)."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from carehub import logs
from carehub.mqtt_contract import PairAnnounce
from carehub.settings import HubSettings, load
from cli.hub_commands import ConfigOpt, LogOpt

if TYPE_CHECKING:
    from gateway.ble.transport import BleRadio


def _settings(config: Path | None, broker_dir: Path | None = None) -> HubSettings:
    from gateway.credential import with_credential_if_enrolled

    settings: HubSettings = load(HubSettings, config, hub_broker_dir=broker_dir)
    return with_credential_if_enrolled(settings)  # registers devices on the server if enrolled


DirOpt = typer.Option(
    None, "--dir", help="The broker's directory [CAREHUB_HUB_BROKER_DIR, /var/lib/carehub/broker]."
)


def broker_config(
    directory: Path | None = DirOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Write DIR/carehub.conf, DIR/passwd, DIR/acl (and DIR/accounts.json, the hub's own
    account): no anonymous clients, each device only its own topics. Run mosquitto with
    `mosquitto -c DIR/carehub.conf`. Existing pairings and passwords are kept."""
    from gateway.broker_auth import Listener
    from gateway.broker_files import CONF, load_accounts, write_all
    from gateway.pairing import (
        HUB_USERNAME,
        OBSERVER_USERNAME,
        ZIGBEE2MQTT_USERNAME,
        BrokerAccounts,
        new_password,
    )

    s = _settings(config, directory)
    d = s.hub_broker_dir
    accounts = load_accounts(d) or BrokerAccounts.new(
        s.mqtt_username or HUB_USERNAME,
        s.mqtt_password.get_secret_value() if s.mqtt_password else None,
    )
    from dataclasses import replace

    from gateway.broker_auth import hash_password

    z2m_password = (
        s.zigbee2mqtt_password.get_secret_value()
        if s.zigbee2mqtt_password
        else accounts.zigbee2mqtt_password or new_password()
    )
    accounts = replace(
        accounts,
        zigbee2mqtt_topic=s.zigbee2mqtt_topic,
        zigbee2mqtt_password=z2m_password if s.zigbee2mqtt_topic else None,
        pairing_password=s.pairing_password.get_secret_value(),
        observer_username=OBSERVER_USERNAME if s.observer_password else None,
        observer_password_hash=(
            hash_password(s.observer_password.get_secret_value()) if s.observer_password else None
        ),
    )
    listener = Listener(
        port=s.hub_broker_port,
        host=s.hub_broker_host,
        certfile=s.hub_broker_tls_certfile,
        keyfile=s.hub_broker_tls_keyfile,
        cafile=s.hub_broker_tls_cafile,
    )
    try:
        write_all(
            d, accounts, s.base_topic, listener, s.hub_broker_run_as, s.hub_broker_max_packet_bytes
        )
    except ValueError as e:  # e.g. a hub username the password file cannot hold
        typer.echo(f"carehub hub broker-config: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {d / CONF}, {d / 'passwd'}, {d / 'acl'}, {d / 'accounts.json'}")
    typer.echo(
        f"hub account {accounts.hub_username}; {len(accounts.devices)} paired devices;"
        f" TLS {'on' if listener.tls else 'off'}; run: mosquitto -c {d / CONF}"
    )
    if accounts.zigbee2mqtt_topic:
        typer.echo(
            f"Zigbee2MQTT logs in as {ZIGBEE2MQTT_USERNAME} (password in {d / 'accounts.json'},"
            f" zigbee2mqtt_password) with base_topic {accounts.zigbee2mqtt_topic}: docs/devices.md"
        )


def pair(
    seconds: float = typer.Option(
        120.0, "--seconds", min=1, help="How long the window stays open."
    ),
    accept_all: bool = typer.Option(
        False, "--accept-all", help="Accept every device that announces itself (scripted installs)."
    ),
    config: Path | None = ConfigOpt,
    log_level: str = LogOpt,
) -> None:
    """Open a pairing window: each device switched on announces itself; confirm it (or
    --accept-all) and it gets its own broker account. Ctrl-C (or SIGTERM) closes the window
    early, as at its end. Exit 1 when nothing was paired."""
    from gateway.pairing_session import PairingError, PairingResult, PairingSession

    logs.setup(log_level, "pair")
    s = _settings(config)

    async def confirm(announce: PairAnnounce) -> bool:
        question = f"pair {announce.kind} {announce.hardware_id}" + (
            f" (firmware {announce.firmware})?" if announce.firmware else "?"
        )
        return await asyncio.to_thread(typer.confirm, question, default=False)

    async def ask(question: str) -> bool:
        return await asyncio.to_thread(typer.confirm, question, default=False)

    async def run(session: PairingSession) -> PairingResult:
        def close() -> None:
            typer.echo("closing the pairing window (after the question asked, if any) …")
            session.close()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, close)
        typer.echo("Ctrl-C closes the window early")
        return await session.pair(seconds, accept_all)

    try:
        radio = _bluetooth_radio(s)
        session = PairingSession(s, confirm, say=typer.echo, ask=ask, bluetooth=radio)
        result = asyncio.run(run(session))
    except PairingError as e:
        typer.echo(f"carehub hub pair: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"paired: {', '.join(sorted(result.accepted)) or 'none'}")
    if result.refused:
        typer.echo(f"refused: {', '.join(result.refused)}")
    if result.not_registered:
        typer.echo(f"not registered on the server: {', '.join(result.not_registered)}", err=True)
    raise typer.Exit(0 if result.accepted else 1)


def _bluetooth_radio(settings: HubSettings) -> BleRadio | None:
    """The radio for the window when the hub pairs Bluetooth devices (`bluetooth = true`)
    and has the `ble` extra; else None, said once."""
    if not settings.bluetooth:
        return None
    if importlib.util.find_spec("bleak") is None:
        typer.echo(
            "Bluetooth is set up but the `ble` extra is not installed"
            " (pip install 'carehub[hub,ble]'): no Bluetooth device can be paired",
            err=True,
        )
        return None
    from gateway.ble.bleak_source import BleakRadio

    return BleakRadio()


def devices(config: Path | None = ConfigOpt) -> None:
    """List the devices paired with this hub."""
    from gateway.pairing_session import PairingError, require_accounts

    try:
        accounts = require_accounts(_settings(config))
    except PairingError as e:
        typer.echo(f"carehub hub devices: {e}", err=True)
        raise typer.Exit(2) from None
    if not accounts.devices and not accounts.zigbee:
        typer.echo("no paired devices")
    for d in (*accounts.devices, *accounts.zigbee):
        at = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.paired_at_ms / 1000))
        typer.echo(f"{d.device_id:<24} {d.kind:<9} hardware {d.hardware_id:<24} paired {at}")


def remove(
    device: str = typer.Argument(..., help="The device id (see `carehub hub devices`)."),
    config: Path | None = ConfigOpt,
    log_level: str = LogOpt,
) -> None:
    """Revoke a device at once: its account is deleted, the broker reloaded (which drops
    it if connected), the running hub and the server told."""
    from gateway.pairing_session import PairingError, remove_device

    logs.setup(log_level, "remove")
    try:
        done = asyncio.run(remove_device(_settings(config), device))
    except (PairingError, RuntimeError) as e:
        typer.echo(f"carehub hub remove: {e}", err=True)
        raise typer.Exit(2) from None
    for line in done:
        typer.echo(line)
    raise typer.Exit(1 if any("NOT" in line for line in done) else 0)
