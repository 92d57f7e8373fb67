"""End to end through the `carehub` console script, as a user runs it."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

CAREHUB = Path(sys.executable).with_name("carehub")


def run(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CAREHUB), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("command", [[], ["server"], ["hub"], ["sim"], ["demo"]])
def test_help_explains_every_command(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    if not command:
        for sub in ("server", "hub", "sim", "demo"):
            assert re.search(rf"\b{sub}\b", result.stdout)
        assert "CAREHUB_" in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_demo_prints_the_timeline_and_exits_cleanly(broker: str) -> None:
    if broker == "mosquitto" and not (
        shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()
    ):
        pytest.skip("mosquitto not installed")
    tag = uuid.uuid4().hex  # inherited by every process the demo starts
    result = run("demo", "--broker", broker, env={"CAREHUB_TEST_TAG": tag})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = [ln for ln in out.splitlines() if re.match(r"\s+\+\d+ ms\s+\w+", ln)]
    at = {}  # first offset of each step
    for ln in lines:
        offset, _, step = ln.split()[:3]
        at.setdefault(step, int(offset.lstrip("+")))
    # the causal chain, in order; the elder's 'received' may come before or after the upload
    chain = ["button", "hub", "server", "dispatch", "sms"]
    assert [at.get(step) for step in chain] == sorted(at[step] for step in chain), out
    assert at["elder"] >= at["hub"], out
    assert "'received'" in out and "'dispatched'" in lines[-1], out
    assert processes_tagged(tag) == [], "the demo left processes running"


def processes_tagged(tag: str) -> list[int]:
    """Live processes whose environment carries CAREHUB_TEST_TAG=tag."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"CAREHUB_TEST_TAG={tag}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue  # gone, or not ours
    return found


def test_the_cli_does_not_load_scipy_for_the_hub() -> None:
    """The hub runs through this CLI on a Raspberry-Pi-class box: scipy (~18 MB resident)
    is for the evaluation commands only, imported inside them."""
    probe = "import sys, cli.main; print(sorted(m for m in sys.modules if 'scipy' in m))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_hub_without_the_ble_extra_runs_every_other_command() -> None:
    """`carehub hub ble` is loaded only when it runs (cli/lazy.py): neither the Bluetooth
    bridge nor bleak is imported by the CLI, `hub --help` lists it, and run without bleak
    it says which extra to install (this environment has no bleak, as such a hub)."""
    probe = (
        "import sys, cli.main, cli.hub_pairing;"
        " print(sorted(m for m in sys.modules if 'bleak' in m or m.startswith('gateway.ble')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    listed = run("hub", "--help")
    assert listed.returncode == 0 and re.search(r"\bble\b", listed.stdout), listed.stdout
    if importlib.util.find_spec("bleak") is None:
        refused = run("hub", "ble")
        assert refused.returncode == 2, refused.stderr
        assert "carehub[hub,ble]" in refused.stderr and "Traceback" not in refused.stderr
        # `hub pair` on a hub set up for Bluetooth without the extra: said, then as ever
        env = {"CAREHUB_BLUETOOTH": "true", "CAREHUB_HUB_BROKER_DIR": "/nonexistent/carehub"}
        paired = run("hub", "pair", "--seconds", "1", env=env)
        assert "`ble` extra is not installed" in paired.stderr, paired.stderr
        assert paired.returncode == 2 and "broker-config" in paired.stderr  # no accounts yet


def test_a_hub_database_from_a_newer_carehub_is_refused_in_one_line(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "hub.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")
    result = run(
        "hub",
        env={
            "CAREHUB_HUB_TOKEN": "x" * 24,
            "CAREHUB_HUB_DB": str(db),
            "CAREHUB_SERVER_URL": "http://127.0.0.1:9",
        },
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "newer than this CareHub understands" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_setting_is_one_line_naming_it_not_a_traceback() -> None:
    env = {**os.environ, "CAREHUB_PORT": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "server"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "carehub: bad setting: port (CAREHUB_PORT): Input should be a valid integer, unable to"
        " parse string as an integer (got 'abc')"
    ]


def test_every_command_renders_its_help() -> None:
    """Each command's --help, walked from the command tree (a help text with markup the
    renderer refuses would otherwise only show on an installer's screen)."""
    from typer.main import get_command
    from typer.testing import CliRunner

    from cli.main import app

    def walk(command: object, path: list[str]) -> list[list[str]]:
        found = [path]
        if hasattr(command, "list_commands"):  # a group; some load their commands on demand
            for name in command.list_commands(None):  # type: ignore[attr-defined]
                found += walk(command.get_command(None, name), [*path, name])  # type: ignore[attr-defined]
        return found

    paths = walk(get_command(app), [])
    assert ["hub", "enroll"] in paths and ["hub", "pair"] in paths and ["admin"] in paths
    assert ["bench", "edge"] in paths and ["sim", "vitals-dataset"] in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output, result.exception)
        assert "Usage" in result.output, path
