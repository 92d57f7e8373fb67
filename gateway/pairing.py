"""Pairing decisions and the hub's broker accounts, as plain data (no I/O).

`BrokerAccounts` is the one record of who may talk to the hub's broker (the hub, an
optional read-only observer, the shared pairing account, each paired device with its own
password hash); the password and ACL files are derived from it (`gateway.broker_auth`)
and it lives beside them as ``accounts.json`` (mode 0600). The pairing command asks
`decide` about each announcement and `window_open` about the time.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from carehub.mqtt_contract import (
    DEFAULT_PAIRING_PASSWORD,
    DEVICE_ID_PATTERN,
    PAIRING_USERNAME,
    RESERVED_DEVICE_IDS,
    PairAnnounce,
)
from gateway.broker_auth import Account, acl_file, hash_password, password_file

HUB_USERNAME = "_hub"
OBSERVER_USERNAME = "_observer"
ZIGBEE2MQTT_USERNAME = "_zigbee2mqtt"
PASSWORD_BYTES = 24
"""Random bytes in a generated password (32 URL-safe characters)."""


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


@dataclass(frozen=True)
class PairedDevice:
    device_id: str
    kind: str
    hardware_id: str
    password_hash: str
    paired_at_ms: int


@dataclass(frozen=True)
class BluetoothLink:
    """A Bluetooth health device paired with the hub: its radio address, and the broker
    login the Bluetooth bridge publishes its readings with (the device itself never talks
    to the broker; its account is among `BrokerAccounts.devices`, hashed)."""

    address: str
    device_id: str
    password: str
    """In clear: the bridge logs in with it (the file is 0600)."""


@dataclass(frozen=True)
class BrokerAccounts:
    hub_username: str
    hub_password: str
    """Kept in clear: the hub itself logs in with it (the file is 0600)."""
    pairing_password: str = DEFAULT_PAIRING_PASSWORD
    observer_username: str | None = None
    observer_password_hash: str | None = None
    devices: tuple[PairedDevice, ...] = field(default_factory=tuple)
    zigbee2mqtt_topic: str | None = None
    zigbee2mqtt_password: str | None = None
    """Zigbee2MQTT's own login (in clear: its configuration needs it; the file is 0600)."""
    zigbee: tuple[PairedDevice, ...] = field(default_factory=tuple)
    """Zigbee devices paired through Zigbee2MQTT (id = IEEE address; no broker account:
    they never talk to the broker themselves, and ``password_hash`` is empty)."""
    bluetooth: tuple[BluetoothLink, ...] = field(default_factory=tuple)
    """Bluetooth health devices paired in a window (`gateway.ble.pairing`), for the bridge."""

    @classmethod
    def new(
        cls, hub_username: str = HUB_USERNAME, hub_password: str | None = None
    ) -> BrokerAccounts:
        return cls(hub_username=hub_username, hub_password=hub_password or new_password())

    def device(self, device_id: str) -> PairedDevice | None:
        return next((d for d in self.devices if d.device_id == device_id), None)

    def zigbee_device(self, device_id: str) -> PairedDevice | None:
        return next((d for d in self.zigbee if d.device_id == device_id), None)

    def with_zigbee(self, device: PairedDevice) -> BrokerAccounts:
        others = tuple(d for d in self.zigbee if d.device_id != device.device_id)
        return replace(self, zigbee=tuple(sorted(others + (device,), key=lambda d: d.device_id)))

    def without_zigbee(self, device_id: str) -> BrokerAccounts:
        return replace(self, zigbee=tuple(d for d in self.zigbee if d.device_id != device_id))

    def by_hardware_id(self, hardware_id: str) -> PairedDevice | None:
        return next((d for d in self.devices if d.hardware_id == hardware_id), None)

    def with_device(self, device: PairedDevice) -> BrokerAccounts:
        """`device` added, or replacing the one with its id (re-pairing changes the password)."""
        others = tuple(d for d in self.devices if d.device_id != device.device_id)
        return replace(self, devices=tuple(sorted(others + (device,), key=lambda d: d.device_id)))

    def without_device(self, device_id: str) -> BrokerAccounts:
        return replace(
            self,
            devices=tuple(d for d in self.devices if d.device_id != device_id),
            bluetooth=tuple(b for b in self.bluetooth if b.device_id != device_id),
        )

    def with_bluetooth(self, link: BluetoothLink, device: PairedDevice) -> BrokerAccounts:
        """A Bluetooth device paired (or paired again: a new password): its broker account
        and its link, replacing any with its id."""
        assert link.device_id == device.device_id
        paired = self.with_device(device)
        others = tuple(b for b in self.bluetooth if b.device_id != link.device_id)
        links = tuple(sorted(others + (link,), key=lambda b: b.device_id))
        return replace(paired, bluetooth=links)

    def without_invalid_devices(self) -> tuple[BrokerAccounts, tuple[str, ...]]:
        """These accounts without the devices whose id the contract refuses (written by an
        older hub that allowed ``:``: such an id breaks the password file), and their ids."""
        bad = tuple(
            d.device_id
            for d in self.devices
            if d.device_id in RESERVED_DEVICE_IDS or not DEVICE_ID_PATTERN.match(d.device_id)
        )
        return replace(self, devices=tuple(d for d in self.devices if d.device_id not in bad)), bad

    def accounts(self) -> list[Account]:
        """Every broker login, hashed. The hub's hash is made afresh each time (new salt)."""
        out = [
            Account(self.hub_username, hash_password(self.hub_password)),
            Account(PAIRING_USERNAME, hash_password(self.pairing_password)),
        ]
        if self.observer_username and self.observer_password_hash:
            out.append(Account(self.observer_username, self.observer_password_hash))
        if self.zigbee2mqtt_topic and self.zigbee2mqtt_password:
            out.append(Account(ZIGBEE2MQTT_USERNAME, hash_password(self.zigbee2mqtt_password)))
        out += [Account(d.device_id, d.password_hash) for d in self.devices]
        return out

    def passwd_text(self) -> str:
        return password_file(self.accounts())

    def acl_text(self, base_topic: str, pairing_open: bool = False) -> str:
        zigbee2mqtt = (
            (ZIGBEE2MQTT_USERNAME, self.zigbee2mqtt_topic)
            if self.zigbee2mqtt_topic and self.zigbee2mqtt_password
            else None
        )
        return acl_file(
            base_topic, self.hub_username, self.observer_username, pairing_open, zigbee2mqtt
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BrokerAccounts:
        data = json.loads(text)
        devices = tuple(PairedDevice(**d) for d in data.pop("devices", []))
        zigbee = tuple(PairedDevice(**d) for d in data.pop("zigbee", []))
        bluetooth = tuple(BluetoothLink(**b) for b in data.pop("bluetooth", []))
        return cls(**data, devices=devices, zigbee=zigbee, bluetooth=bluetooth)


def window_open(until_ms: int | None, now_ms: int) -> bool:
    """A pairing window is open strictly before its end."""
    return until_ms is not None and now_ms < until_ms


Verdict = Literal["ask", "accept", "refuse", "ignore"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""


def decide(
    announce: PairAnnounce,
    hardware_id_in_topic: str,
    accounts: BrokerAccounts,
    seen_keys: dict[str, str],
    open_now: bool,
    accept_all: bool,
) -> Decision:
    """What to do with one announcement. ``seen_keys`` maps each hardware id announced in
    this window to the first key it announced: a device republishes the same key until it
    is paired, so a different key under the same hardware id is someone else (refused).
    ``ignore``: a repeat of an announcement already handled, or outside the window."""
    hid = announce.hardware_id
    if not open_now:
        return Decision("ignore", "pairing window closed")
    if hid != hardware_id_in_topic:
        return Decision("refuse", f"announced {hid!r} on the topic of {hardware_id_in_topic!r}")
    if hid in RESERVED_DEVICE_IDS or not DEVICE_ID_PATTERN.match(hid):
        return Decision("refuse", f"hardware id {hid!r} is reserved")
    first = seen_keys.get(hid)
    if first is not None:
        if first != announce.public_key:
            return Decision("refuse", f"{hid} announced again with another key: a second device?")
        return Decision("ignore", "already handled")
    existing = accounts.device(hid)
    if existing is not None and existing.kind != announce.kind:
        return Decision(
            "refuse", f"{hid} is paired as a {existing.kind}, announced as a {announce.kind}"
        )
    return Decision("accept" if accept_all else "ask", "re-pairing" if existing else "")


def device_id_for(announce: PairAnnounce) -> str:
    """A paired device's id (and MQTT username) is its hardware id: printed on the device,
    unique, and what the installer sees when confirming."""
    return announce.hardware_id
