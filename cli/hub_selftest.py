"""`carehub hub selftest`: prove a home works before the installer leaves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from carehub import logs
from carehub.settings import HubSettings, load
from cli.hub_commands import ConfigOpt, LogOpt


def selftest(
    yes: bool = typer.Option(
        False, "--yes", "--non-interactive", help="No prompts (scripts, tests): just watch."
    ),
    timeout: float = typer.Option(120.0, "--timeout", min=1, help="Seconds to pass every check."),
    config: Path | None = ConfigOpt,
    log_level: str = LogOpt,
) -> None:
    """Walk through the home: press each button, drop each pendant onto a cushion, put each
    wearable on; checks heartbeat, battery and signal of every device, sends a test alarm
    through the server (the button press, marked as a test), records the result on the
    household and prints a checklist. Exit 0 when every check passed, else 1."""
    from gateway.pairing_session import PairingError
    from gateway.selftest_session import run_selftest

    logs.setup(log_level, "selftest")
    from gateway.credential import with_credential_if_enrolled

    settings: HubSettings = with_credential_if_enrolled(load(HubSettings, config))
    if not yes:
        typer.confirm("Devices switched on and the hub running? Start the self-test", abort=True)
    try:
        core, posted = asyncio.run(run_selftest(settings, timeout, say=typer.echo))
    except PairingError as e:
        typer.echo(f"carehub hub selftest: {e}", err=True)
        raise typer.Exit(2) from None
    for line in core.checklist():
        typer.echo(line)
    typer.echo(posted)
    failed = sum(not c.passed for c in core.checks)
    typer.echo(
        "SELF-TEST PASSED"
        if core.passed
        else f"SELF-TEST FAILED: {failed} of {len(core.checks)} checks (why: [FAIL] above)"
    )
    raise typer.Exit(0 if core.passed else 1)
