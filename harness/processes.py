"""Starting CareHub's own processes (broker, server, hub) as children, for the demo, the
end-to-end tests and the benchmarks; they can be killed with SIGKILL and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx


class Child:
    """One `carehub …` child process (``python -m cli``, or another `module`) with its own
    environment and log file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        log_path: Path,
        module: str = "cli",
    ) -> None:
        self.name = name
        self.args = args
        self.module = module
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the child and anything it started: as in a power cut."""
        if self.running:
            assert self.process is not None
            self._signal_group(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; leaves nothing it started running."""
        if self.running:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None:
            self._signal_group(signal.SIGTERM)  # e.g. a broker the child had started

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)  # its own session: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_http_ok(url: str, timeout_s: float = 30.0, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and not child.running:
            raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not up after {timeout_s} s")


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    children: Sequence[Child] = (),
    every_s: float = 0.1,
) -> None:
    """Poll `check` until true; fail early if a child process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            if not child.running:
                raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        try:
            if check():
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(every_s)
    tails = "\n".join(f"--- {c.name}\n{c.log_tail()}" for c in children)
    raise TimeoutError(f"{what}: not within {timeout_s} s\n{tails}")
