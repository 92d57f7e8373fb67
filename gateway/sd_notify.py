"""systemd's notification protocol (sd_notify(3)): one datagram of ``KEY=value`` lines to
the AF_UNIX socket named by ``$NOTIFY_SOCKET``. Hand-written: the protocol is this small,
and a hub runs without libsystemd's Python bindings."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends notifications to systemd; does nothing when not started by it (no socket)."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address if address.startswith(("/", "\0")) else ""
        self.watchdog_s = _watchdog_s(environ)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``READY=1``, ``STATUS=…``) as one datagram; False when there is no
        socket or it refused (systemd gone: nothing to do about it)."""
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto("\n".join(lines).encode(), self.address)
            except OSError:
                return False
        return True


def _watchdog_s(environ: Mapping[str, str]) -> float | None:
    """``WatchdogSec=`` in seconds when it is meant for this process, else None."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000
