"""`carehub admin`: households, their elders and team, enrollment codes, moving a hub.

Each command is one request to the server's admin API (`carehub.admin_contract`), with the
admin bearer token, so it works from any machine that reaches the server and obeys the
same rules as the console.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from carehub.admin_contract import ADMIN_PREFIX, DeviceReleased, EnrollmentCode, HouseholdView

admin_app = typer.Typer(
    help="Households, enrollment codes and hubs, through the server's admin API"
    " (CAREHUB_ADMIN_TOKEN).",
    no_args_is_help=True,
)

ServerOpt = typer.Option(
    "http://127.0.0.1:8000",
    "--server",
    envvar="CAREHUB_PUBLIC_BASE_URL",
    help="The server's base URL [CAREHUB_PUBLIC_BASE_URL].",
)
TokenOpt = typer.Option(
    ...,
    "--admin-token",
    envvar="CAREHUB_ADMIN_TOKEN",
    help="The admin bearer token [CAREHUB_ADMIN_TOKEN].",
    show_default=False,
)


def _call(server: str, token: str, method: str, path: str, body: Any = None) -> Any:
    """One admin request; a refusal is printed as the server's reason, exit 1."""
    import httpx  # here: every role runs `carehub`, not every role has httpx

    try:
        r = httpx.request(
            method,
            server.rstrip("/") + ADMIN_PREFIX + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        )
    except httpx.HTTPError as e:
        typer.echo(f"carehub admin: cannot reach {server}: {e}", err=True)
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            why = str(r.json()["detail"])
        except (ValueError, KeyError, TypeError):
            why = r.text[:200]
        typer.echo(f"carehub admin: refused ({r.status_code}): {why}", err=True)
        raise typer.Exit(1)
    return r.json() if r.content else None


def _show(home: HouseholdView) -> str:
    test = home.last_selftest
    if test is None:
        tested = "never self-tested"
    else:
        when = datetime.fromtimestamp(test.finished_at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        tested = f"self-test {'passed' if test.passed else 'FAILED'} {when} UTC"
        if test.failed_checks:
            tested += f" ({', '.join(test.failed_checks)})"
    return (
        f"{home.id}: team {home.team_id or '-'}; elders {', '.join(home.elder_ids) or '-'};"
        f" hubs {', '.join(home.hub_ids) or '-'}; {tested}"
    )


@admin_app.command("household-create")
def household_create(
    household: str = typer.Option(..., "--household", help="The new household's id."),
    address: str = typer.Option("", "--address", help="The home's address."),
    team: str | None = typer.Option(None, "--team", help="The contracted care team."),
    server: str = ServerOpt,
    admin_token: str = TokenOpt,
) -> None:
    """Create a household (a home)."""
    body = {"id": household, "address": address, "team_id": team}
    typer.echo(
        _show(HouseholdView.model_validate(_call(server, admin_token, "POST", "/households", body)))
    )


@admin_app.command("assign-elder")
def assign_elder(
    household: str = typer.Option(..., "--household"),
    elder: str = typer.Option(..., "--elder", help="An elder of the care directory."),
    server: str = ServerOpt,
    admin_token: str = TokenOpt,
) -> None:
    """The elder lives in this household (and takes its contracted team)."""
    answer = _call(server, admin_token, "PUT", f"/households/{household}/elders/{elder}")
    typer.echo(_show(HouseholdView.model_validate(answer)))


@admin_app.command("assign-team")
def assign_team(
    household: str = typer.Option(..., "--household"),
    team: str = typer.Option(..., "--team", help="The contracted care team."),
    server: str = ServerOpt,
    admin_token: str = TokenOpt,
) -> None:
    """Contract a care team for the household and its elders."""
    answer = _call(server, admin_token, "PUT", f"/households/{household}/team", {"team_id": team})
    typer.echo(_show(HouseholdView.model_validate(answer)))


@admin_app.command("enroll-code")
def enroll_code(
    household: str = typer.Option(..., "--household"),
    server: str = ServerOpt,
    admin_token: str = TokenOpt,
) -> None:
    """Make a one-time enrollment code for a hub of this household; prints the code alone
    on the first line (for scripts), then when it expires."""
    answer = EnrollmentCode.model_validate(
        _call(server, admin_token, "POST", f"/households/{household}/enrollment-codes")
    )
    until = datetime.fromtimestamp(answer.expires_at_ms / 1000, UTC).strftime("%H:%M UTC")
    typer.echo(answer.code)
    typer.echo(
        f"works once, until {until}: carehub hub enroll --server {server} --code {answer.code}",
        err=True,
    )


@admin_app.command("move-hub")
def move_hub(
    hub: str = typer.Option(..., "--hub"),
    household: str = typer.Option(..., "--household", help="Where the hub is now."),
    server: str = ServerOpt,
    admin_token: str = TokenOpt,
) -> None:
    """Move a hub to another household: its token stops working at once and its devices
    are unpaired; enroll it again with a code of the new household."""
    answer = _call(
        server, admin_token, "PUT", f"/hubs/{hub}/household", {"household_id": household}
    )
    typer.echo(_show(HouseholdView.model_validate(answer)))
    typer.echo(
        f"hub {hub}: credential revoked. On the hub: carehub hub enroll --server {server}"
        f" --code <a code from: carehub admin enroll-code --household {household}>."
        " Its devices stay with their old household; if they moved with the hub, release"
        " each (carehub admin release-device --device <id>) before pairing it again.",
        err=True,
    )


@admin_app.command("release-device")
def release_device(
    device: str = typer.Option(..., "--device", help="The device id to free."),
    server: str = ServerOpt,
    admin_token: str = TokenOpt,
) -> None:
    """Free a device id (unpaired, owned by no household), e.g. a button given to another
    home: that home's hub can pair it next."""
    answer = DeviceReleased.model_validate(
        _call(server, admin_token, "DELETE", f"/devices/{device}")
    )
    was = f" (was household {answer.household_id})" if answer.household_id else ""
    typer.echo(f"device {answer.device_id} released{was}; pair it on its new hub")


@admin_app.command("households")
def households(server: str = ServerOpt, admin_token: str = TokenOpt) -> None:
    """Every household: team, elders, hubs and the last self-test."""
    for home in _call(server, admin_token, "GET", "/households"):
        typer.echo(_show(HouseholdView.model_validate(home)))
