"""Starting an MQTT broker for the demo, tests and benchmarks: a real `mosquitto` on a free
port when the binary is installed, else the embedded pure-Python amqtt broker."""

from __future__ import annotations

import asyncio
import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on {host}:{port} after {timeout_s} s"
                ) from None
            time.sleep(0.05)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


class Mosquitto:
    """A private mosquitto (persistence on, so queued QoS-1 messages survive its restarts)."""

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self._tmp = (
            tempfile.TemporaryDirectory(prefix="carehub-mosquitto-") if workdir is None else None
        )
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.config = self.workdir / "mosquitto.conf"
        self.config.write_text(
            f"user {getpass.getuser()}\n"  # as root, mosquitto would drop to a user without access
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


async def run_embedded_broker(port: int, host: str = "127.0.0.1") -> None:
    """Serve MQTT with amqtt until cancelled (for machines without mosquitto)."""
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True},
            "topic-check": {"enabled": False},
        }
    )
    await broker.start()
    try:
        await asyncio.Event().wait()
    finally:
        await broker.shutdown()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_broker(port: int, prefer: str = "auto") -> None:
    """Run a broker in the foreground: mosquitto if available (and not refused), else amqtt."""
    binary = mosquitto_binary()
    if prefer != "amqtt" and binary is not None:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the cleanup below runs
        with tempfile.TemporaryDirectory(prefix="carehub-mosquitto-") as tmp:
            broker = Mosquitto(port, Path(tmp))
            proc = subprocess.Popen([binary, "-c", str(broker.config)])
            try:
                proc.wait()
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
        return
    if prefer == "mosquitto":
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    asyncio.run(run_embedded_broker(port))
