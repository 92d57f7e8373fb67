"""The hub's connection to its MQTT broker: reconnects on its own, re-subscribes, and hands
every message to one handler. One owner for this I/O; nothing else touches the client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from carehub.mqtt_contract import Ack, Channel, Topics, encode
from carehub.settings import HubSettings

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None]]


class DeviceLink:
    def __init__(self, settings: HubSettings, topics: Topics, handler: Handler) -> None:
        self._settings = settings
        self._topics = topics
        self._handler = handler
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.connections = 0

    async def run(self) -> None:
        """Stay connected forever; messages queued by the broker while away arrive on return
        (persistent session), and firmware retries anything not acknowledged."""
        delay = 0.2
        while True:
            try:
                async with aiomqtt.Client(
                    self._settings.mqtt_host,
                    self._settings.mqtt_port,
                    identifier=self._settings.mqtt_client_id,
                    username=self._settings.mqtt_username,
                    password=(
                        self._settings.mqtt_password.get_secret_value()
                        if self._settings.mqtt_password
                        else None
                    ),
                    clean_session=False,
                    keepalive=15,
                    max_queued_incoming_messages=10_000,
                ) as client:
                    for topic, qos in self._topics.hub_subscriptions():
                        await client.subscribe(topic, qos=qos)
                    self._client = client
                    self.connections += 1
                    self.connected.set()
                    delay = 0.2
                    log.info(
                        "connected to broker %s:%s",
                        self._settings.mqtt_host,
                        self._settings.mqtt_port,
                    )
                    async for message in client.messages:
                        payload = (
                            message.payload
                            if isinstance(message.payload, bytes)
                            else str(message.payload).encode()
                        )
                        try:
                            await self._handler(str(message.topic), payload)
                        except Exception:
                            log.exception("handler failed for %s; message dropped", message.topic)
            except aiomqtt.MqttError as e:
                log.warning("broker connection lost (%s); reconnecting in %.1f s", e, delay)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

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
