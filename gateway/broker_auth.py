"""Mosquitto's security configuration for a hub's broker, generated as text: the password
file, the ACL file and the ``carehub.conf`` that names them.

Pure functions of plain data (no I/O): the pairing command and `carehub hub broker-config`
write what these return (`gateway.broker_files`). The password file uses mosquitto 2.x's own
format, ``$7$`` = PBKDF2-HMAC-SHA512, made here in Python so the hub needs no
``mosquitto_passwd`` binary; the ACL gives every device (username = its device id) only
its own topics through ``pattern`` lines keyed on ``%u``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from carehub.mqtt_contract import (
    DEVICE_ID_PATTERN,
    DEVICE_TO_HUB,
    MAX_PAYLOAD_BYTES,
    PAIR_LEVEL,
    PAIRING_USERNAME,
    Channel,
    Topics,
)
from gateway.zigbee.translate import MAX_DEVICES_BYTES

PBKDF2_ITERATIONS = 101
"""What ``mosquitto_passwd`` 2.0 uses; the broker reads the count from each line."""
SALT_BYTES = 12
HASH_BYTES = 64
QUEUE_LIMIT = 100_000
"""``max_queued_messages``: per offline persistent session (the hub's), QoS 1 and 2. mosquitto
2.0.11 does not count QoS-0 messages against it (measured): `QUEUE_BYTES` bounds those."""
QUEUE_BYTES = 64 * 1024 * 1024
"""``max_queued_bytes``: payload bytes queued per offline persistent session, every QoS. About
7 hours of one fall pendant's IMU frames (2.5 KB a second); beyond it new messages for the
hub are dropped (presses are retried by the firmware until acked)."""
QUEUE_MEMORY_BYTES = 160 * 1024 * 1024
"""What the broker holds in RAM with the hub's queue full, rounded up: 91 MB measured
(mosquitto 2.0.11) for `QUEUE_BYTES` of IMU frames, plus about 0.7 KB per message for up to
`QUEUE_LIMIT` small QoS-1 messages. The broker unit's ``MemoryMax=`` is above it."""
AUTOSAVE_CHANGES = 1000
"""``autosave_on_changes true`` + ``autosave_interval`` = this: mosquitto rewrites its whole
``mosquitto.db`` after this many changes (queued messages, retained messages, subscriptions),
never on a timer, so an idle hub writes nothing to its SD card. A power cut of the broker
loses at most this many changes (a clean stop saves everything): messages queued while the
hub was away, which the firmware resends (presses) or can spare (IMU frames, heartbeats)."""
PACKET_HEADROOM_BYTES = 1024
"""Room for an MQTT packet's header, topic and properties beside the largest payload."""
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + PACKET_HEADROOM_BYTES
"""mosquitto's ``max_packet_size``: a client sending a bigger packet is disconnected as soon
as its length is read, before the broker allocates or forwards a byte of it, so no device
(nor the pairing account) can make the broker or the hub hold more than one payload the
hub accepts. (``message_size_limit``, deprecated in 2.0, reads the whole packet first.)"""
ZIGBEE_PACKET_BYTES = MAX_DEVICES_BYTES + PACKET_HEADROOM_BYTES
"""The limit of a hub whose broker also serves Zigbee2MQTT: its retained device list (every
device's whole definition) outgrows a device's 65 KiB with a few devices, and mosquitto's
``max_packet_size`` is one limit for every client. The hub still refuses any device
payload over `MAX_PAYLOAD_BYTES` before parsing it; what the larger limit gives up is only
the broker's refusal at the socket, so a client could make it hold up to 4 MiB per packet
(docs/devices.md, Known limits)."""


def packet_limit(zigbee: bool, configured: int | None = None) -> int:
    """The broker's ``max_packet_size``: the installer's setting when given (never below a
    device's largest packet), else what the hub's own clients need — a device's largest
    packet, or Zigbee2MQTT's device list when Zigbee2MQTT shares the broker. Decided here so
    an installer adding Zigbee need not know the broker's limits."""
    if configured is not None:
        return max(MAX_PACKET_BYTES, configured)
    return ZIGBEE_PACKET_BYTES if zigbee else MAX_PACKET_BYTES


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A mosquitto 2.x password hash: ``$7$<iterations>$<salt b64>$<hash b64>``."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, HASH_BYTES)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Does `password` match a ``$7$`` hash (the broker's check, for tests and tools)."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        want = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations), len(want)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True)
class Account:
    username: str
    password_hash: str


def valid_username(username: str) -> bool:
    """A device id (`DEVICE_ID_PATTERN`, as the contract says), or one of the hub's own
    accounts: ``_`` then the same characters. Nothing that would break the password file
    (``:``, a line break) or a topic pattern (``/ + #``)."""
    return DEVICE_ID_PATTERN.match(username.removeprefix("_")) is not None


def password_file(accounts: Iterable[Account]) -> str:
    """``username:hash`` lines; `ValueError` for a username that is not `valid_username`."""
    lines = []
    for a in sorted(accounts, key=lambda a: a.username):
        if not valid_username(a.username) or any(c in a.password_hash for c in "\r\n"):
            raise ValueError(f"invalid broker account {a.username!r}")
        lines.append(f"{a.username}:{a.password_hash}\n")
    return "".join(lines)


def acl_file(
    base_topic: str,
    hub_username: str,
    observer_username: str | None = None,
    pairing_open: bool = False,
    zigbee2mqtt: tuple[str, str] | None = None,
) -> str:
    """The ACL. `pattern` lines apply to every client, so the accounts that are not devices
    have names no device id can take (``_hub``, ``_pair``…: a device id starts with a letter
    or digit); their substituted topics (``carehub/_pair/button``) are refused by the hub.

    The pairing account gets its two lines only while a window is open (`pairing_open`,
    written by `carehub hub pair` and reloaded): outside a window it can log in and do
    nothing, so it cannot leave a retained announcement for a later window, nor fill the
    broker's persistence with retained messages.

    `zigbee2mqtt` = (username, base topic): Zigbee2MQTT's account, with rights on its own
    topic tree only (it publishes its devices' states there and reads its requests), like
    a device on its own topics: it can neither raise an alarm nor read an ack."""
    topics = Topics(base_topic)
    b = topics.base
    lines = [
        "# Generated by `carehub hub broker-config` / `carehub hub pair`: edits are overwritten.",
        "# The hub: everything (devices' channels, acks, pairing, bridge, Home Assistant).",
        f"user {hub_username}",
        "topic readwrite #",
        "",
    ]
    if observer_username:
        lines += [
            "# Read-only observer (e.g. a Home Assistant bridge): presence, health, bridge state.",
            f"user {observer_username}",
            f"topic read {b}/+/{Channel.STATUS.value}",
            f"topic read {b}/+/{Channel.AVAILABILITY.value}",
            f"topic read {b}/bridge/#",
            "topic read homeassistant/#",
            "",
        ]
    if zigbee2mqtt:
        z2m_user, z2m_base = zigbee2mqtt
        lines += [
            "# Zigbee2MQTT: its own topic tree, nothing of CareHub's.",
            f"user {z2m_user}",
            f"topic readwrite {Topics(z2m_base).base}/#",
            "",
        ]
    if pairing_open:
        lines += [
            f"# A pairing window is open. Unpaired devices (account {PAIRING_USERNAME},",
            "# client id = hardware id): announce themselves, read their own sealed credential.",
            f"pattern write {b}/{PAIR_LEVEL}/%c/announce",
            f"pattern read {b}/{PAIR_LEVEL}/%c/credential",
            "",
        ]
    else:
        lines += [f"# No pairing window: the account {PAIRING_USERNAME} may do nothing.", ""]
    lines += [
        "# Paired devices (username = device id): publish their own channels, read their acks."
    ]
    lines += [f"pattern write {b}/%u/{c.value}" for c in sorted(DEVICE_TO_HUB)]
    lines += [f"pattern read {b}/%u/{Channel.ACK.value}", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Listener:
    port: int = 1883
    host: str | None = None
    """Bind address; None: every interface (devices reach the hub over the home's LAN)."""
    certfile: Path | None = None
    keyfile: Path | None = None
    cafile: Path | None = None

    @property
    def tls(self) -> bool:
        return self.certfile is not None and self.keyfile is not None


def queue_settings(data_dir: Path, queue_bytes: int = QUEUE_BYTES) -> list[str]:
    """Persistence and the bounds of the hub's queue, the same for the appliance's broker
    and `carehub broker`: the messages queued for the hub's persistent session, QoS-0
    frames included, survive a broker restart (docs/reliability.md)."""
    return [
        "persistence true",
        f"persistence_location {data_dir}/",
        "autosave_on_changes true",
        f"autosave_interval {AUTOSAVE_CHANGES}",
        f"max_queued_messages {QUEUE_LIMIT}",
        f"max_queued_bytes {queue_bytes}",
        "queue_qos0_messages true",
    ]


def mosquitto_conf(
    directory: Path,
    listener: Listener,
    run_as: str | None = None,
    max_packet_bytes: int = MAX_PACKET_BYTES,
) -> str:
    """``carehub.conf``: one listener, no anonymous clients, the password and ACL files of
    `directory`, persistence as `carehub broker` (the hub's queued messages survive a
    broker restart), and a pid file for the reload after each pairing. `max_packet_bytes`
    is raised only for Zigbee2MQTT, whose device list outgrows a device's payload
    (`hub_broker_max_packet_bytes`, docs/devices.md)."""
    d = directory.resolve()
    where = f" {listener.host}" if listener.host else ""
    lines = ["# Generated by `carehub hub broker-config`: edits are overwritten."]
    if run_as:
        lines.append(f"user {run_as}")
    lines += [
        "per_listener_settings false",
        f"listener {listener.port}{where}",
    ]
    if listener.tls:
        lines += [f"certfile {listener.certfile}", f"keyfile {listener.keyfile}"]
        if listener.cafile:
            lines.append(f"cafile {listener.cafile}")
        lines.append("tls_version tlsv1.2")
    lines += [
        "allow_anonymous false",
        f"password_file {d / 'passwd'}",
        f"acl_file {d / 'acl'}",
        f"max_packet_size {packet_limit(False, max_packet_bytes)}",
        *queue_settings(d / "data"),
        f"pid_file {d / 'mosquitto.pid'}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "",
    ]
    return "\n".join(lines)
