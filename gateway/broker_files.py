"""Writing the hub broker's configuration files and telling mosquitto to reload them.

The text comes from `gateway.pairing.BrokerAccounts` and `gateway.broker_auth`; this
module only writes it (atomically, with the modes a secret deserves) and signals the
broker. mosquitto re-reads its password and ACL files on SIGHUP.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from pathlib import Path

from gateway.broker_auth import Listener, mosquitto_conf, packet_limit
from gateway.pairing import BrokerAccounts

log = logging.getLogger(__name__)

ACCOUNTS = "accounts.json"
CONF = "carehub.conf"
PASSWD = "passwd"
ACL = "acl"
PID = "mosquitto.pid"


def _write(path: Path, text: str, mode: int) -> None:
    """Replace `path` atomically (the broker may read it at any moment), mode from birth."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def load_accounts(directory: Path) -> BrokerAccounts | None:
    path = directory / ACCOUNTS
    if not path.exists():
        return None
    accounts, dropped = BrokerAccounts.from_json(path.read_text()).without_invalid_devices()
    if dropped:
        log.warning(
            "%s: device ids %s do not match the contract's id pattern: left out (pair them"
            " again under a valid id)",
            path,
            ", ".join(repr(d) for d in dropped),
        )
    return accounts


def write_security(
    directory: Path, accounts: BrokerAccounts, base_topic: str, pairing_open: bool = False
) -> None:
    """accounts.json (0600), passwd (0600) and acl (0640). Every text is made before any
    file is written: accounts that cannot be written (`ValueError`) change nothing. The ACL
    lets the pairing account in only when `pairing_open` (only `carehub hub pair` says so:
    every other writer, `broker-config` and `remove` included, closes a window left open)."""
    texts = (
        accounts.to_json(),
        accounts.passwd_text(),
        accounts.acl_text(base_topic, pairing_open),
    )
    directory.mkdir(parents=True, exist_ok=True)
    for (name, mode), text in zip(
        ((ACCOUNTS, 0o600), (PASSWD, 0o600), (ACL, 0o640)), texts, strict=True
    ):
        _write(directory / name, text, mode)


def write_all(
    directory: Path,
    accounts: BrokerAccounts,
    base_topic: str,
    listener: Listener,
    run_as: str | None = None,
    max_packet_bytes: int | None = None,
) -> None:
    write_security(directory, accounts, base_topic)
    (directory / "data").mkdir(exist_ok=True)
    limit = packet_limit(accounts.zigbee2mqtt_topic is not None, max_packet_bytes)
    conf = mosquitto_conf(directory, listener, run_as, limit)
    _write(directory / CONF, conf, 0o640)


def reload_broker(directory: Path, command: str | None = None) -> str:
    """Make mosquitto re-read passwd and acl: run `command` when configured (e.g.
    ``systemctl reload carehub-broker``), else SIGHUP the pid in ``mosquitto.pid``.
    Returns what was done; raises `RuntimeError` saying why it could not."""
    if command:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{command!r} failed: {done.stderr.strip()[:200]}")
        return command
    pid_file = directory / PID
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"cannot signal mosquitto through {pid_file} ({e}): is the broker running with"
            f" {directory / CONF}? (or set hub_broker_reload_command)"
        ) from None
    return f"SIGHUP to mosquitto pid {pid}"
