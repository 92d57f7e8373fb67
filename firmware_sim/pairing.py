"""How a device pairs, as firmware would: connect with the shared pairing account and
client id = hardware id, make an ephemeral X25519 key, announce (kind, hardware id, public
key) until the hub answers, open the sealed credential, keep it, and from then on connect
with its own account (`SimDevice(..., credential=…)`)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from carehub.mqtt_contract import (
    DEFAULT_PAIRING_PASSWORD,
    PAIRING_USERNAME,
    ContractError,
    DeviceType,
    PairAnnounce,
    PairCredential,
    Topics,
    encode,
    parse_model,
)
from carehub.pairing_seal import SealError, new_private_key, public_b64, unseal

ANNOUNCE_EVERY_S = 2.0


@dataclass(frozen=True)
class DeviceCredential:
    """What a paired device keeps in its flash."""

    device_id: str
    username: str
    password: str

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, path: Path) -> DeviceCredential:
        return cls(**json.loads(path.read_text()))


class PairingTimeout(TimeoutError):
    """No credential for this device within the time given (window closed, refused)."""


class BrokerRefused(ConnectionError):
    """The broker refused the connection (CONNACK with a failure: bad account or password)."""


def pair_device(
    hardware_id: str,
    kind: DeviceType,
    host: str,
    port: int,
    base_topic: str = "carehub",
    pairing_password: str = DEFAULT_PAIRING_PASSWORD,
    timeout_s: float = 60.0,
    firmware: str | None = None,
    store: Path | None = None,
) -> DeviceCredential:
    """Announce until the hub sends a credential sealed to our key; returns it (and saves
    it to `store`). Raises `PairingTimeout` when none comes, `BrokerRefused` when the
    broker refuses the pairing account."""
    topics = Topics(base_topic)
    key = new_private_key()
    announce = encode(
        PairAnnounce(
            v=1, hardware_id=hardware_id, kind=kind, public_key=public_b64(key), firmware=firmware
        )
    )
    got: list[DeviceCredential] = []
    done = threading.Event()
    subscribed = threading.Event()

    refused: list[str] = []

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, reason: object, *_: object
    ) -> None:
        if getattr(reason, "is_failure", False):  # e.g. a wrong pairing password
            refused.append(str(reason))
            done.set()
            return
        client.subscribe(topics.pair_credential(hardware_id), qos=1)

    def on_subscribe(*_: object) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if not message.payload:
            return  # a cleared retained credential
        try:
            credential = parse_model(PairCredential, bytes(message.payload))
            account = unseal(key, credential)
        except (ContractError, SealError, ValueError):
            return  # someone else's, or an old one: keep announcing
        got.append(DeviceCredential(credential.device_id, account.username, account.password))
        done.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=hardware_id, clean_session=True
    )
    client.username_pw_set(PAIRING_USERNAME, pairing_password)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect_async(host, port, keepalive=10)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise PairingTimeout(f"{hardware_id}: no credential within {timeout_s} s")
            if subscribed.is_set():
                client.publish(topics.pair_announce(hardware_id), announce, qos=1)
            done.wait(min(ANNOUNCE_EVERY_S, left) if subscribed.is_set() else min(0.05, left))
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        raise BrokerRefused(f"{hardware_id}: the broker refused the pairing account: {refused[0]}")
    credential = got[0]
    if store is not None:
        credential.save(store)
    return credential
