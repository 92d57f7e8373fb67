"""`carehub sim press | home`: simulated devices that behave as firmware does on a hub's
secured broker: a device without a credential pairs first (announces until the installer's
window accepts it) and keeps the credential it gets; it then logs in with its own account,
and says so when the broker refuses it, instead of pressing into the void.

`--anonymous` skips all that, for a development broker (`carehub broker`, the demo)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from carehub.mqtt_contract import DEFAULT_PAIRING_PASSWORD, DeviceType
from carehub.settings import MqttSettings, load
from cli.hub_commands import ConfigOpt

if TYPE_CHECKING:
    from firmware_sim.device import SimDevice
    from firmware_sim.pairing import DeviceCredential

CredentialsOpt = typer.Option(
    Path("sim-credentials"),
    "--credentials",
    file_okay=False,
    help="Where each simulated device keeps its credential (DEVICE.json, mode 0600), as"
    " firmware keeps it in flash; a device without one pairs first.",
)
AnonymousOpt = typer.Option(
    False,
    "--anonymous",
    help="Connect without an account and never pair: a development broker (`carehub broker`).",
)
PairTimeoutOpt = typer.Option(
    120.0, "--pair-timeout", min=1, help="Seconds to announce for a pairing window."
)
PairingPasswordOpt = typer.Option(
    DEFAULT_PAIRING_PASSWORD,
    "--pairing-password",
    help="The hub's shared pairing password (its pairing_password setting).",
)
CONNECT_TIMEOUT_S = 10.0


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


def credential_for(
    device: str,
    kind: DeviceType,
    s: MqttSettings,
    credentials: Path,
    pair_timeout: float,
    pairing_password: str,
) -> DeviceCredential:
    """The device's kept credential, or a new one from pairing (kept for next time)."""
    from firmware_sim.pairing import BrokerRefused, DeviceCredential, PairingTimeout, pair_device

    path = credentials / f"{device}.json"
    if path.is_file():
        return DeviceCredential.load(path)
    credentials.mkdir(mode=0o700, parents=True, exist_ok=True)
    typer.echo(
        f"{device}: not paired yet: announcing for up to {pair_timeout:.0f} s; open a pairing"
        " window on the hub (carehub hub pair)"
    )
    try:
        credential = pair_device(
            device,
            kind,
            s.mqtt_host,
            s.mqtt_port,
            s.base_topic,
            pairing_password,
            timeout_s=pair_timeout,
            store=path,
        )
    except BrokerRefused as e:
        raise _fail(f"{e} (is --pairing-password the hub's?)") from None
    except PairingTimeout:
        raise _fail(
            f"{device}: no pairing window accepted it within {pair_timeout:.0f} s"
        ) from None
    typer.echo(f"{device}: paired; credential kept in {path}")
    return credential


def connect(device: SimDevice, anonymous: bool, credentials: Path) -> None:
    """Wait for the broker's answer; a refusal or silence ends the command in one line."""
    from firmware_sim.pairing import BrokerRefused

    try:
        device.wait_connected(CONNECT_TIMEOUT_S)
    except BrokerRefused as e:
        hint = (
            "the broker wants an account: run without --anonymous to pair"
            if anonymous
            else f"removed from the hub, or paired with another? delete"
            f" {credentials / (device.device_id + '.json')} to pair again"
        )
        raise _fail(f"{e} ({hint})") from None
    except TimeoutError as e:
        raise _fail(str(e)) from None


def press(
    device: str = typer.Option(..., help="Button device id, e.g. btn-1."),
    action: str = typer.Option("press", help="press or cancel."),
    wait: float = typer.Option(15.0, help="Seconds to wait for acks."),
    until: str = typer.Option("dispatched", help="Ack state to wait for."),
    credentials: Path = CredentialsOpt,
    anonymous: bool = AnonymousOpt,
    pair_timeout: float = PairTimeoutOpt,
    pairing_password: str = PairingPasswordOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Press a simulated call button once and print the acks it gets (exit 1 when the
    broker refuses it or the awaited ack does not come)."""
    from firmware_sim.button import CallButton

    if action not in ("press", "cancel"):
        raise typer.BadParameter("action must be press or cancel", param_hint="--action")
    s = load(MqttSettings, config)
    credential = (
        None
        if anonymous
        else credential_for(device, "button", s, credentials, pair_timeout, pairing_password)
    )
    with CallButton(
        device, s.mqtt_host, s.mqtt_port, s.base_topic, credential=credential
    ) as button:
        connect(button, anonymous, credentials)
        seq = button.press("press" if action == "press" else "cancel")
        typer.echo(f"{device}: {action} seq {seq}")
        hit = button.acks.wait_for(lambda a: a.seq == seq and a.state.value == until, wait)
        for at, ack in button.acks.entries:
            typer.echo(f"  ack {ack.state.value} alarm {ack.alarm_id} at {at}")
        if hit is None:
            got = any(ack.seq == seq for _, ack in button.acks.entries)
            why = "" if got else ": no ack at all (is the hub running and the device paired?)"
            raise _fail(f"{device}: no '{until}' ack within {wait} s{why}")


def home(
    button: str = typer.Option("btn-1"),
    wearable: str = typer.Option("wear-1"),
    pendant: str = typer.Option("pend-1"),
    seconds: float = typer.Option(0, help="Run this long (0 = until Ctrl-C)."),
    credentials: Path = CredentialsOpt,
    anonymous: bool = AnonymousOpt,
    pair_timeout: float = PairTimeoutOpt,
    pairing_password: str = PairingPasswordOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Run a simulated home (call button, wearable, fall pendant) publishing the contract
    (exit 1 when the broker refuses one of them)."""
    from firmware_sim.button import CallButton
    from firmware_sim.pendant import FallPendant
    from firmware_sim.wearable import Wearable

    s = load(MqttSettings, config)
    kinds: dict[str, DeviceType] = {button: "button", wearable: "wearable", pendant: "pendant"}
    creds = {
        d: None
        if anonymous
        else credential_for(d, kind, s, credentials, pair_timeout, pairing_password)
        for d, kind in kinds.items()
    }
    args = (s.mqtt_host, s.mqtt_port, s.base_topic)
    with (
        CallButton(button, *args, credential=creds[button]) as b,
        Wearable(wearable, *args, credential=creds[wearable]) as w,
        FallPendant(pendant, *args, credential=creds[pendant]) as p,
    ):
        for device in (b, w, p):
            connect(device, anonymous, credentials)
        typer.echo(f"home running: {button}, {wearable}, {pendant} on {s.mqtt_host}:{s.mqtt_port}")
        deadline = time.monotonic() + seconds if seconds else float("inf")
        with contextlib.suppress(KeyboardInterrupt):
            while time.monotonic() < deadline:
                time.sleep(0.2)
