"""`carehub hub enroll`: trade the installer's one-time code for this hub's own credential.

The credential (server URL, hub id, token) goes to a file created with mode 0600
(`gateway.credential`); `carehub hub` reads its token from there when CAREHUB_HUB_TOKEN is
not set.
"""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from carehub import __version__
from carehub.api_contract import ENROLL_PATH, EnrollGranted, EnrollRequest
from carehub.settings import HubSettings, load

MACHINE_ID = Path("/etc/machine-id")


def _hardware_id() -> str:
    """This machine's id (systemd's machine-id), else its host name."""
    try:
        return MACHINE_ID.read_text().strip()[:200] or socket.gethostname()
    except OSError:
        return socket.gethostname()[:200]


def enroll(
    server: str = typer.Option(..., "--server", help="The dispatch server's base URL."),
    code: str = typer.Option(..., "--code", help="The one-time enrollment code (K7QF-M2XR-9PTA)."),
    credential_file: Path | None = typer.Option(
        None,
        "--credential-file",
        dir_okay=False,
        help="Where to write the credential [CAREHUB_HUB_CREDENTIAL_FILE,"
        " carehub-hub-credential.json].",
    ),
    hardware_id: str | None = typer.Option(
        None, "--hardware-id", help="Shown to the installer's office \\[/etc/machine-id]."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML settings file.", exists=True, dir_okay=False
    ),
) -> None:
    """Enroll this hub with the server using an installer's code (it works once, for 30 min);
    the hub's own credential is written to a file only its owner can read."""
    import httpx

    from gateway.credential import HubCredential, write_credential

    settings = load(HubSettings, config, hub_credential_file=credential_file)
    request = EnrollRequest(
        code=code.strip(), hardware_id=(hardware_id or _hardware_id())[:200], version=__version__
    )
    url = server.rstrip("/")
    try:
        answer = httpx.post(url + ENROLL_PATH, json=request.model_dump(), timeout=20)
    except httpx.HTTPError as e:
        typer.echo(f"carehub hub enroll: cannot reach {url}: {e}", err=True)
        raise typer.Exit(1) from None
    if answer.status_code != 201:
        try:
            why = str(answer.json()["detail"])
        except (ValueError, KeyError, TypeError):
            why = answer.text[:200]
        typer.echo(f"carehub hub enroll: refused ({answer.status_code}): {why}", err=True)
        raise typer.Exit(1)
    granted = EnrollGranted.model_validate(answer.json())
    path = settings.hub_credential_file
    write_credential(path, HubCredential(url, granted.hub_id, granted.household_id, granted.token))
    typer.echo(
        f"enrolled as hub {granted.hub_id} in household {granted.household_id}; "
        f"credential written to {path} (mode 0600)"
    )
    for line in register_paired(settings, url, granted.token):
        typer.echo(line)
    typer.echo("restart the hub to use it: sudo systemctl restart carehub-hub")


def register_paired(settings: HubSettings, url: str, token: str) -> list[str]:
    """Register with the server, under the new credential, the devices already paired on
    this hub (a re-enrolled hub keeps its home's devices); one line per device, saying
    what to do when the server refuses one."""
    import httpx

    from carehub.api_contract import HUB_DEVICES_PATH, DeviceKind, DeviceRegistration
    from gateway.broker_files import load_accounts

    try:
        accounts = load_accounts(settings.hub_broker_dir)
    except (OSError, ValueError, TypeError) as e:
        return [f"paired devices not registered (broker accounts unreadable: {e})"]
    lines = []
    for device in accounts.devices if accounts else ():
        body = DeviceRegistration(kind=DeviceKind(device.kind), hardware_id=device.hardware_id)
        try:
            r = httpx.put(
                f"{url}{HUB_DEVICES_PATH}/{device.device_id}",
                json=body.model_dump(mode="json"),
                headers={"Authorization": f"Bearer {token}"},
                timeout=20,
            )
        except httpx.HTTPError as e:
            lines.append(
                f"device {device.device_id}: NOT registered ({e}): pair it again later"
                " (carehub hub pair) or ask the office"
            )
            continue
        if r.status_code in (200, 201):
            lines.append(f"device {device.device_id} ({device.kind}): registered")
        else:
            try:
                why = str(r.json()["detail"])
            except (ValueError, KeyError, TypeError):
                why = r.text[:200]
            lines.append(f"device {device.device_id}: NOT registered ({r.status_code}): {why}")
    return lines
