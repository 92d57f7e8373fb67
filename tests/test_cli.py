"""End to end through the `carehub` console script, as a user runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CAREHUB = Path(sys.executable).with_name("carehub")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CAREHUB), *args], capture_output=True, text=True, timeout=timeout, check=False
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
    before = _demo_processes()
    result = run("demo", "--broker", broker)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    steps = ["button", "hub", "elder", "server", "dispatch", "sms", "elder"]
    lines = [ln for ln in out.splitlines() if re.match(r"\s+\+\d+ ms\s+\w+", ln)]
    assert [ln.split()[2] for ln in lines][: len(steps)] == steps, out
    offsets = [int(ln.split()[0].lstrip("+")) for ln in lines]
    assert offsets == sorted(offsets)
    assert "'dispatched'" in lines[-1]
    assert _demo_processes() - before == set(), "the demo left processes running"


def _demo_processes() -> set[str]:
    """Pids of anything the demo starts: brokers, servers, hubs."""
    found = subprocess.run(
        ["pgrep", "-f", r"carehub-demo|carehub (broker|server|hub)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(found.stdout.split())
