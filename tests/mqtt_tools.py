"""mosquitto_pub / mosquitto_sub helpers for the end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from tests.conftest import Deployment


def _client(tool: str, d: Deployment, device: str, channel: str) -> list[str]:
    """The command line of a mosquitto client at QoS 1 on one device topic."""
    port = str(d.broker.port)
    return [tool, "-h", "127.0.0.1", "-p", port, "-q", "1", "-t", f"carehub/{device}/{channel}"]


def pub(d: Deployment, device: str, channel: str, payload: str | bytes) -> None:
    data = payload.encode() if isinstance(payload, str) else payload
    command = [*_client("mosquitto_pub", d, device, channel), "-s"]
    subprocess.run(command, input=data, check=True, timeout=10)


class AckWatcher:
    """mosquitto_sub on a device's ack topic."""

    def __init__(self, d: Deployment, device: str) -> None:
        self.proc = subprocess.Popen(
            _client("mosquitto_sub", d, device, "ack"), stdout=subprocess.PIPE, text=True
        )
        self.lines: list[dict] = []
        self._pos = 0  # lines before this were matched by an earlier collect
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.3)  # let it subscribe

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ack = json.loads(line)
            ack["_received_ms"] = time.time_ns() // 1_000_000  # when the device would see it
            with self._cond:
                self.lines.append(ack)
                self._cond.notify_all()

    def collect(self, until_state: str, timeout_s: float = 15) -> list[dict]:
        """Acks up to the next one in `until_state` (or all so far, on timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for i in range(self._pos, len(self.lines)):
                    if self.lines[i]["state"] == until_state:
                        self._pos = i + 1
                        return list(self.lines[: i + 1])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return list(self.lines)
                self._cond.wait(remaining)

    def drain(self, seconds: float) -> list[dict]:
        time.sleep(seconds)
        with self._cond:
            return list(self.lines)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def wait_for(predicate, timeout_s: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()
