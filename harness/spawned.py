"""A server the harness starts for tests, benches and the demo (mosquitto, PostgreSQL,
coturn): one process on a free port of 127.0.0.1, its files in a temporary directory that
goes when it is closed. Subclasses say how to start and stop it; the life cycle is here.

Imports nothing beyond the standard library: the hub and simulator roles use the broker."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now, for a server about to start.

    Taken below the kernel's ephemeral range where it has one: a port there (what binding
    port 0 gives) can be handed to any outgoing connection as its source port before the
    server binds it, and in a test run thousands of connections are made. Parallel test
    workers (pytest-xdist) each take from their own slice, so they never pick the same."""
    low = _ephemeral_low()
    if low is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    ports = _slice(range(PORTS_FROM, low))
    for port in random.sample(ports, min(len(ports), 200)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {ports}")


PORTS_FROM = 15000
"""The lowest port `free_port` hands out (below: well-known services' usual ports)."""


def _ephemeral_low() -> int | None:
    """The first port of Linux's ephemeral range, if there is room below it; else None."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return low if low - PORTS_FROM >= 2000 else None


def _slice(ports: range) -> range:
    """This pytest-xdist worker's share of `ports` (all of them outside such a run)."""
    worker, count = (
        os.environ.get("PYTEST_XDIST_WORKER", ""),
        os.environ.get("PYTEST_XDIST_WORKER_COUNT", ""),
    )
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit()):
        return ports
    n, i = int(count), int(worker[2:])
    size = len(ports) // max(n, 1)
    return ports[i * size : (i + 1) * size] if 0 <= i < n else ports


def stop_process(
    process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, grace_s: float = 5.0
) -> None:
    """Send `sig` to a server the harness started and reap it; killed if it is not gone
    within `grace_s`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


class SpawnedServer:
    """Start with `start()` or `with`; `stop()` ends the process and keeps its files (a
    restart finds its data again), `close()` also removes the temporary directory.

    A subclass implements `_spawn()` (start the process, wait until it serves) and may set
    `stop_signal` and `stop_grace_s` (how it prefers to be asked to stop)."""

    stop_signal: int = signal.SIGTERM
    stop_grace_s: float = 5.0

    def __init__(self, prefix: str, port: int | None = None, workdir: Path | None = None) -> None:
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix) if workdir is None else None
        self.workdir = (workdir or Path(self._tmp.name)).resolve()  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def start(self) -> Self:
        self.process = self._spawn()
        return self

    def stop(self) -> None:
        stop_process(self.process, self.stop_signal, self.stop_grace_s)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
