"""The hub's connection to its MQTT broker: reconnects on its own, re-subscribes, hands
every message to one handler, and acknowledges a QoS-1 message only once the handler has
returned (so a hub killed mid-handling gets the message again). One owner for this I/O;
nothing else touches the client."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable

import aiomqtt
import paho.mqtt.client as paho

from carehub.mqtt_contract import Ack, BridgeTopic, Channel, Topics, encode
from carehub.settings import HubSettings
from gateway.broker_files import load_accounts
from gateway.zigbee import bridge as zigbee

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None]]


class PoisonGuard:
    """Counts consecutive handling failures per message, so that one message the hub cannot
    handle is retried a few times and then given up on, instead of blocking the link."""

    def __init__(self, max_failures: int, capacity: int = 1000) -> None:
        self.max_failures = max_failures
        self._capacity = capacity
        self._failures: dict[bytes, int] = {}

    @staticmethod
    def key(topic: str, payload: bytes) -> bytes:
        return hashlib.sha256(topic.encode() + b"\0" + payload).digest()

    def failed(self, key: bytes) -> int:
        """Record a failure; returns how many in a row, forgetting the key at the limit."""
        count = self._failures.pop(key, 0) + 1
        if count < self.max_failures:
            if len(self._failures) >= self._capacity:  # bound memory: forget the oldest
                self._failures.pop(next(iter(self._failures)))
            self._failures[key] = count
        return count

    def succeeded(self, key: bytes) -> None:
        self._failures.pop(key, None)

    def __bool__(self) -> bool:
        return bool(self._failures)


class Unhandled(Exception):
    """Raised by the handler when the hub cannot handle any message now (its store failed):
    not this message's fault, so it is never given up on as poison; the broker redelivers
    it (the hub's health, not this link, decides when to stop)."""


class _Redeliver(Exception):
    """Leave the connection so the broker redelivers the unacknowledged messages."""


class DeviceLink:
    def __init__(self, settings: HubSettings, topics: Topics, handler: Handler) -> None:
        self._settings = settings
        self._topics = topics
        self._handler = handler
        self._client: aiomqtt.Client | None = None
        self._poison = PoisonGuard(settings.mqtt_max_handler_failures)
        self.connected = asyncio.Event()
        self.connections = 0
        self.given_up = 0
        """Messages acknowledged without being handled (poison), since start."""

    def _new_client(self) -> aiomqtt.Client:
        username, password = hub_credentials(self._settings)
        client = aiomqtt.Client(
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            identifier=self._settings.mqtt_client_id,
            username=username,
            password=password,
            # the hub's last will: observers (Home Assistant) see it gone if it dies
            will=aiomqtt.Will(
                self._topics.bridge(BridgeTopic.STATE), b"offline", qos=1, retain=True
            ),
            clean_session=False,
            keepalive=15,
            # unbounded: a full queue makes aiomqtt discard a message, a QoS-1 one then
            # neither handled nor acknowledged (docs/reliability.md, "A flood")
            max_queued_incoming_messages=0,
        )
        _paho(client).manual_ack_set(True)  # PUBACK after the handler, see _ack
        return client

    async def run(self) -> None:
        """Stay connected forever; messages queued by the broker while away arrive on return
        (persistent session), and unacknowledged ones are redelivered on reconnection."""
        delay = 0.2
        while True:
            try:
                async with self._new_client() as client:
                    for topic, qos in self._topics.hub_subscriptions() + zigbee.subscriptions(
                        self._settings
                    ):
                        await client.subscribe(topic, qos=qos)
                    await client.publish(
                        self._topics.bridge(BridgeTopic.STATE), b"online", qos=1, retain=True
                    )
                    self._client = client
                    self.connections += 1
                    self.connected.set()
                    delay = 0.2
                    log.info(
                        "connected to broker %s:%s",
                        self._settings.mqtt_host,
                        self._settings.mqtt_port,
                    )
                    try:
                        async for message in client.messages:
                            if await self._deliver(message):
                                _ack(client, message)
                            else:  # broker redelivers on reconnection: leave after a pause
                                await asyncio.sleep(self._settings.mqtt_redeliver_after_s)
                                raise _Redeliver
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except _Redeliver:
                log.warning("reconnecting to the broker to get an unhandled message again")
                delay = 0.0
            except aiomqtt.MqttError as e:
                log.warning("broker connection lost (%s); reconnecting in %.1f s", e, delay)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(max(delay, 0.1) * 2, 5.0)

    async def _deliver(self, message: aiomqtt.Message) -> bool:
        """Run the handler; True when the message may be acknowledged (handled, QoS 0, or
        given up on after `mqtt_max_handler_failures` failures in a row)."""
        topic = str(message.topic)
        payload = (
            message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        )
        if message.qos > 0:  # at DEBUG only: one line per message (button, status, availability)
            log.debug("handling %s (mid %d, qos %d)", topic, message.mid, message.qos)
        if self._settings.debug_handler_delay_s:
            await asyncio.sleep(self._settings.debug_handler_delay_s)
        try:
            await self._handler(topic, payload)
        except Unhandled as e:
            log.error("could not handle %s (%s); not acknowledged, the broker redelivers", topic, e)
            return message.qos == 0
        except Exception:
            if message.qos == 0:
                log.exception("handler failed for %s (QoS 0, not redelivered)", topic)
                return True
            key = PoisonGuard.key(topic, payload)
            failures = self._poison.failed(key)
            if failures >= self._poison.max_failures:
                self.given_up += 1
                log.exception(
                    "handler failed %d times in a row for %s; acknowledged and dropped",
                    failures,
                    topic,
                )
                return True
            log.exception(
                "handler failed for %s (%d of %d); not acknowledged, the broker redelivers",
                topic,
                failures,
                self._poison.max_failures,
            )
            return False
        if self._poison:
            self._poison.succeeded(PoisonGuard.key(topic, payload))
        return True

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """On the way out (the hub stops): a clean disconnect sends no last will, so say
        ``offline`` on the bridge state ourselves, briefly."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2.0):
                await client.publish(
                    self._topics.bridge(BridgeTopic.STATE), b"offline", qos=1, retain=True
                )

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Publish anything else the hub says (Home Assistant discovery and states); False
        when the broker is away (the caller republishes after the reconnection)."""
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as e:
            log.warning("publish on %s not sent: %s", topic, e)
            return False
        return True

    async def send_ack(self, device_id: str, ack: Ack) -> bool:
        """Publish an ack; False when the broker is away (the device will retry and be re-acked)."""
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(self._topics.device(device_id, Channel.ACK), encode(ack), qos=1)
        except aiomqtt.MqttError as e:
            log.warning("ack to %s not sent: %s", device_id, e)
            return False
        return True


def hub_credentials(settings: HubSettings) -> tuple[str | None, str | None]:
    """The hub's broker login: `mqtt_username`/`mqtt_password` when set, else the hub account
    in ``<hub_broker_dir>/accounts.json`` written by `carehub hub broker-config`, else none
    (a broker that allows anonymous clients, as in development and the older tests)."""
    if settings.mqtt_username:
        secret = settings.mqtt_password
        return settings.mqtt_username, secret.get_secret_value() if secret else None
    try:
        accounts = load_accounts(settings.hub_broker_dir)
    except (OSError, ValueError, TypeError) as e:
        log.warning("cannot read the hub's broker account in %s: %s", settings.hub_broker_dir, e)
        return None, None
    if accounts is None:
        return None, None
    return accounts.hub_username, accounts.hub_password


def _paho(client: aiomqtt.Client) -> paho.Client:
    """The paho client inside aiomqtt (2.x keeps it as ``_client``): aiomqtt has no manual-ack
    API, paho does. Fails loudly at connect time if a future aiomqtt moves it."""
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client):
        raise RuntimeError("this aiomqtt version hides its paho client: manual PUBACK impossible")
    return inner


def _ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """PUBACK a handled QoS-1 message. On a connection already lost this does nothing: the
    broker redelivers and the hub's (device, seq) dedup answers the repeat."""
    if message.qos > 0:
        _paho(client).ack(message.mid, message.qos)
