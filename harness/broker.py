"""Starting an MQTT broker for the demo, tests and benchmarks: a real `mosquitto` on a free
port when the binary is installed, else the embedded pure-Python amqtt broker."""

from __future__ import annotations

import asyncio
import getpass
import logging
import shutil
import signal
import subprocess
from pathlib import Path

from gateway.broker_auth import QUEUE_BYTES, queue_settings
from harness.spawned import SpawnedServer, free_port, stop_process, wait_for_port

__all__ = ["Mosquitto", "free_port", "stop_process", "wait_for_port"]

log = logging.getLogger(__name__)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def mosquitto_config(port: int, data_dir: Path, queue_bytes: int = QUEUE_BYTES) -> str:
    """The configuration of a development broker: anonymous, on localhost, with the
    appliance's persistence and queue bounds (`gateway.broker_auth.queue_settings`): the
    messages queued for the hub's persistent session, QoS-0 frames (IMU, vitals) included,
    survive a broker restart, up to ``QUEUE_LIMIT`` QoS-1 messages and `queue_bytes` bytes."""
    lines = [
        f"user {getpass.getuser()}",  # as root, mosquitto would drop to a user without access
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        *queue_settings(data_dir, queue_bytes),
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "",
    ]
    return "\n".join(lines)


class Mosquitto(SpawnedServer):
    """A private mosquitto (persistence on, so queued QoS-1 messages survive its restarts)."""

    def __init__(
        self, port: int | None = None, workdir: Path | None = None, queue_bytes: int = QUEUE_BYTES
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        super().__init__("carehub-mosquitto-", port, workdir)
        self.binary = binary
        self.config = self.workdir / "mosquitto.conf"
        self.config.write_text(mosquitto_config(self.port, self.workdir, queue_bytes))

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return process


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


def run_broker(port: int, prefer: str = "auto", data_dir: Path = Path("carehub-broker")) -> None:
    """Run a broker in the foreground: mosquitto if available (and not refused), else amqtt.

    mosquitto keeps its persistence in `data_dir` (created if missing): stopping and starting
    it again with the same directory keeps the messages queued for the hub. amqtt keeps
    nothing across restarts (it is for trying CareHub out, not for a home)."""
    binary = mosquitto_binary()
    if prefer != "amqtt" and binary is not None:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the cleanup below runs
        broker = Mosquitto(port, data_dir)
        log.info("mosquitto on 127.0.0.1:%d, persistence in %s", port, broker.workdir)
        proc = subprocess.Popen([binary, "-c", str(broker.config)])
        try:
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()  # mosquitto saves its persistence file on SIGTERM
                proc.wait()
        return
    if prefer == "mosquitto":
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    log.warning("no mosquitto: embedded amqtt broker, queued messages do not survive restarts")
    asyncio.run(run_embedded_broker(port))
