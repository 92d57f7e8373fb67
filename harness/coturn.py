"""A private TURN relay for tests and benches: Debian's `coturn` (`turnserver`) on a free
port of 127.0.0.1, with one long-term user, as `harness.broker` starts Mosquitto.

``--allow-loopback-peers`` lets it relay to peers on this same machine: needed when the
hub and the browser run beside it in a test, never in a deployment (docs/voice.md).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from harness.spawned import SpawnedServer, wait_for_port

REALM = "carehub.test"


def turnserver_binary() -> str | None:
    return shutil.which("turnserver") or next(
        (p for p in ("/usr/bin/turnserver", "/usr/sbin/turnserver") if Path(p).exists()), None
    )


class Coturn(SpawnedServer):
    """`turnserver` with a fresh user; `ice_server` is the RTCIceServer to give both peers."""

    def __init__(self, port: int | None = None) -> None:
        binary = turnserver_binary()
        if binary is None:
            raise FileNotFoundError("coturn is not installed (apt-get install coturn)")
        super().__init__("carehub-coturn-", port)
        self.binary = binary
        self.username = "carehub"
        self.password = secrets.token_urlsafe(12)

    @property
    def ice_server(self) -> dict[str, str]:
        return {
            "urls": f"turn:127.0.0.1:{self.port}",
            "username": self.username,
            "credential": self.password,
        }

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                self.binary,
                "-n",  # no configuration file
                "--listening-ip=127.0.0.1",
                f"--listening-port={self.port}",
                "--relay-ip=127.0.0.1",
                "--lt-cred-mech",
                f"--user={self.username}:{self.password}",
                f"--realm={REALM}",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",  # test machines only
                f"--userdb={self.workdir / 'turndb'}",
                f"--pidfile={self.workdir / 'turnserver.pid'}",
                f"--log-file={self.workdir / 'turn.log'}",
                "--simple-log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return process
