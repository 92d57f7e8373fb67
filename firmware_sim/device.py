"""What every simulated device does, as real firmware would with paho-mqtt: announce itself
(retained ``online``, last will ``offline``), publish contract messages, republish a
QoS-1 event until the hub acknowledges its ``seq``, and tell its subclass when the link
comes and goes (:meth:`SimDevice.link_up` / :meth:`SimDevice.link_down`) so that a pendant
can keep what it could not publish."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

import paho.mqtt.client as mqtt
from pydantic import BaseModel

from carehub.mqtt_contract import (
    CHANNEL_QOS,
    Ack,
    AckState,
    Channel,
    ContractError,
    Topics,
    encode,
    parse_payload,
)
from firmware_sim.pairing import BrokerRefused, DeviceCredential

log = logging.getLogger(__name__)


@dataclass
class AckLog:
    """Acks received, with the local receive time (epoch ms)."""

    entries: list[tuple[int, Ack]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, ack: Ack) -> None:
        with self.cond:
            self.entries.append((time.time_ns() // 1_000_000, ack))
            self.cond.notify_all()

    def wait_for(
        self, predicate: Callable[[Ack], bool], timeout_s: float
    ) -> tuple[int, Ack] | None:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for entry in self.entries:
                    if predicate(entry[1]):
                        return entry
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


class SimDevice:
    """Base firmware: connection, presence, acked events. Use as a context manager."""

    def __init__(
        self,
        device_id: str,
        host: str,
        port: int,
        base_topic: str = "carehub",
        retry_s: float = 2.0,
        first_seq: int | None = None,
        credential: DeviceCredential | None = None,
    ) -> None:
        """Without `credential` the device connects anonymously (a development broker);
        with one (from `firmware_sim.pairing.pair_device`) it logs in with its own account."""
        self.device_id = device_id
        self.topics = Topics(base_topic)
        self.retry_s = retry_s
        self.acks = AckLog()
        self._seq = first_seq if first_seq is not None else int(time.time())
        self._seq_lock = threading.Lock()
        self._unacked: dict[int, threading.Event] = {}
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.answered = threading.Event()
        """The broker answered a connection attempt (accepted, or refused: `refused`)."""
        self.refused: str | None = None
        """The broker's reason when it refused the last connection (bad account, no rights)."""
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{device_id}", clean_session=True
        )
        if credential is not None:
            self.client.username_pw_set(credential.username, credential.password)
        self.client.will_set(self._topic(Channel.AVAILABILITY), b"offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self._host, self._port = host, port

    def _topic(self, channel: Channel) -> str:
        return self.topics.device(self.device_id, channel)

    def start(self) -> Self:
        self.client.connect_async(self._host, self._port, keepalive=10)
        self.client.loop_start()
        return self

    def stop(self, graceful: bool = True) -> None:
        self._stop.set()
        if graceful and self.connected.is_set():
            self.client.publish(
                self._topic(Channel.AVAILABILITY), b"offline", qos=1, retain=True
            ).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout_s: float) -> None:
        """Block until the broker accepted us. Raises `BrokerRefused` when it refused the
        connection, `TimeoutError` when it did not answer (unreachable)."""
        if not self.answered.wait(timeout_s):
            raise TimeoutError(f"{self.device_id}: no answer from {self._host}:{self._port}")
        if not self.connected.is_set():
            raise BrokerRefused(f"{self.device_id}: the broker refused it: {self.refused}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_seq(self) -> int:
        with self._seq_lock:
            self._seq += 1
            return self._seq

    # -------------------------------------------------------------- paho callbacks

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):  # CONNACK refused: not connected at all
            self.refused = str(reason)
            self.answered.set()
            log.warning("%s: the broker refused the connection: %s", self.device_id, reason)
            return
        self.refused = None
        client.subscribe(self._topic(Channel.ACK), qos=1)
        client.publish(self._topic(Channel.AVAILABILITY), b"online", qos=1, retain=True)
        self.connected.set()
        self.answered.set()  # after `connected`: a waiter woken by it sees the outcome
        self.link_up()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self.connected.clear()
        self.link_down()

    def link_up(self) -> None:
        """Connected (again), presence announced; runs in the client's network thread."""

    def link_down(self) -> None:
        """The client noticed the link is gone; runs in the client's network thread."""

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            ack = parse_payload(Channel.ACK, bytes(message.payload))
        except ContractError as e:
            log.warning("%s: bad ack ignored: %s", self.device_id, e)
            return
        assert isinstance(ack, Ack)
        self.acks.add(ack)
        if ack.state is AckState.NOT_DELIVERED:  # a real device blinks red or says so
            log.warning(
                "%s: alarm %s NOT DELIVERED: the hub cannot reach help",
                self.device_id,
                ack.alarm_id,
            )
        if ack.seq is not None and ack.seq in self._unacked:
            self._unacked[ack.seq].set()

    # -------------------------------------------------------------- publishing

    def publish(self, channel: Channel, message: BaseModel) -> None:
        """Fire-and-forget at the channel's QoS. While disconnected paho keeps QoS-1
        messages for later but drops QoS-0 ones: use :meth:`try_publish` to know."""
        self.client.publish(self._topic(channel), encode(message), qos=CHANNEL_QOS[channel])

    def try_publish(self, channel: Channel, message: BaseModel) -> bool:
        """Publish if the client can: False when not connected or when the client refuses
        (the message is then not sent and the caller keeps it)."""
        if not self.connected.is_set():
            return False
        info = self.client.publish(self._topic(channel), encode(message), qos=CHANNEL_QOS[channel])
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_until_acked(
        self, channel: Channel, message: BaseModel, seq: int, give_up_s: float = 600.0
    ) -> threading.Thread:
        """Republish every `retry_s` until an ack for `seq` arrives (in a firmware thread)."""
        acked = self._unacked.setdefault(seq, threading.Event())
        payload = encode(message)

        def loop() -> None:
            deadline = time.monotonic() + give_up_s
            while not acked.is_set() and not self._stop.is_set() and time.monotonic() < deadline:
                if self.connected.is_set():
                    self.client.publish(self._topic(channel), payload, qos=1)
                acked.wait(self.retry_s)
            self._unacked.pop(seq, None)

        thread = threading.Thread(target=loop, daemon=True, name=f"{self.device_id}-seq{seq}")
        thread.start()
        return thread
