"""Each role's extra alone runs its own commands: a fresh venv per role (hub, server, sim)
gets exactly its lock file (`requirements/<role>.lock`, with hashes) and the built carehub
wheel, nothing else, and its commands run from there — help and a real smoke each. (A
server-only install once failed every `carehub` command: the CLI imported the benches,
hence numpy and paho, at start.)

Needs the package index (or pip's cache); the three venvs are built in parallel."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.broker import Mosquitto, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
ROLES = ("hub", "server", "sim")
SOURCES = ("pyproject.toml", "README.md")
PACKAGES = ("carehub", "edge", "gateway", "server", "firmware_sim", "cli", "harness", "bench",
            "evaluation")  # fmt: skip


def pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def build_wheel(out: Path) -> Path:
    """The carehub wheel, built from a clean copy (no stale build/ of the work tree)."""
    src = out / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip("wheel", "-q", "--no-deps", "-w", str(out / "dist"), str(src))
    (wheel,) = (out / "dist").glob("carehub-*.whl")
    return wheel


def make_venv(role: str, wheel: Path, base: Path) -> Path:
    """A venv with `requirements/<role>.lock` (hashes required) and the wheel alone."""
    venv = base / role
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    lock = REPO / "requirements" / f"{role}.lock"
    pip("--python", python, "install", "-q", "--require-hashes", "-r", str(lock))
    pip("--python", python, "install", "-q", "--no-deps", str(wheel))
    return venv / "bin"


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roles")
    wheel = build_wheel(base)
    with ThreadPoolExecutor(len(ROLES)) as pool:
        built = {role: pool.submit(make_venv, role, wheel, base) for role in ROLES}
    return {role: future.result() for role, future in built.items()}


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH (the venv must not see this work tree) and no CAREHUB_* settings."""
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("CAREHUB_")
    }
    return {**env, **extra}


def carehub(bin_dir: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "carehub"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=clean_env(**env),
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (
        f"{done.args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def helps(bin_dir: Path, cwd: Path, *commands: str) -> None:
    for command in ("", *commands):
        assert "Usage" in ok(carehub(bin_dir, *command.split(), "--help", cwd=cwd)), command


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_for(check, timeout_s: float, what: str, process: subprocess.Popen[bytes]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert process.poll() is None, f"{what}: the process exited ({process.returncode})"
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)


def test_a_server_install_runs_the_server_commands(
    venvs: dict[str, Path], tmp_path: Path, running: list[subprocess.Popen[bytes]]
) -> None:
    bin_dir = venvs["server"]
    helps(bin_dir, tmp_path, "server", "directory check", "user add", "report kpi", "admin")
    checked = ok(
        carehub(
            bin_dir, "directory", "check", str(REPO / "docs/examples/directory.toml"), cwd=tmp_path
        )
    )
    assert ": ok" in checked, checked
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [str(bin_dir / "carehub"), "server", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(CAREHUB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running.append(server)

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 60, "the server's /healthz", server)
    server.send_signal(signal.SIGTERM)
    assert server.wait(20) == 0, (tmp_path / "server.log").read_text()
    # another role's command says what to install, in one line
    hub = carehub(bin_dir, "hub", cwd=tmp_path, CAREHUB_HUB_TOKEN="x" * 24)
    assert hub.returncode == 2 and "pip install 'carehub[hub]'" in hub.stderr, hub.stderr
    assert "Traceback" not in hub.stderr


def test_a_hub_install_runs_the_hub_commands(
    venvs: dict[str, Path],
    tmp_path: Path,
    mosquitto: Mosquitto,
    running: list[subprocess.Popen[bytes]],
) -> None:
    bin_dir = venvs["hub"]
    helps(bin_dir, tmp_path, "hub", "hub enroll", "hub pair", "hub selftest", "broker")
    broker_dir = tmp_path / "broker"
    ok(carehub(bin_dir, "hub", "broker-config", "--dir", str(broker_dir), cwd=tmp_path))
    listed = ok(
        carehub(bin_dir, "hub", "devices", cwd=tmp_path, CAREHUB_HUB_BROKER_DIR=str(broker_dir))
    )
    assert "no paired devices" in listed
    units = ok(
        carehub(
            bin_dir,
            "hub",
            "units",
            "--out",
            str(tmp_path / "units"),
            "--config",
            str(tmp_path / "carehub.toml"),
            "--mosquitto",
            "/usr/sbin/mosquitto",
            cwd=tmp_path,
        )
    )
    assert "carehub-hub.service" in units
    # the hub itself, on a development broker (its server unreachable: it keeps its data)
    log_path = tmp_path / "hub.log"
    log = log_path.open("wb")
    hub = subprocess.Popen(
        [str(bin_dir / "carehub"), "hub"],
        cwd=tmp_path,
        env=clean_env(
            CAREHUB_HUB_TOKEN="x" * 24,
            CAREHUB_MQTT_PORT=str(mosquitto.port),
            CAREHUB_SERVER_URL="http://127.0.0.1:9",
            CAREHUB_HUB_DB=str(tmp_path / "hub.db"),
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running.append(hub)
    wait_for(lambda: "connected to broker" in log_path.read_text(), 60, "the hub on MQTT", hub)
    hub.send_signal(signal.SIGTERM)
    hub.wait(20)


def test_a_sim_install_runs_the_simulators(
    venvs: dict[str, Path], tmp_path: Path, mosquitto: Mosquitto
) -> None:
    bin_dir = venvs["sim"]
    helps(bin_dir, tmp_path, "sim", "sim press", "sim home")
    home = ok(
        carehub(
            bin_dir,
            *("sim", "home", "--anonymous", "--seconds", "0.5"),
            cwd=tmp_path,
            CAREHUB_MQTT_PORT=str(mosquitto.port),
        )
    )
    assert "home running" in home, home
