"""The Bluetooth bridge: it moves notifications from a `GattSource` onto the local broker
as each paired device's contract ``vitals`` messages, exactly as a Wi-Fi wearable would
publish them. It decides nothing: the hub's device link takes them like any device's
(validation, rate limit, clock guard, supervision), and the vital-sign detector runs there.

Each device gets its own MQTT connection, with the account pairing gave it (the broker's
ACL lets an account write only its own device's topics) and its own last will, so the hub
sees a device's bridge go away as that device going offline.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import aiomqtt

from carehub.clock import Clock, SystemClock
from carehub.mqtt_contract import CHANNEL_QOS, Channel, Topics, VitalsReading, encode
from gateway.ble.transport import GattSource
from gateway.ble.vitals import BleVitals, Dropped, Ignored

log = logging.getLogger(__name__)

LOG_EVERY_MS = 3_600_000
"""A device's notifications dropped for one reason are logged at most hourly."""


@dataclass(frozen=True)
class BleDevice:
    address: str
    device_id: str
    username: str | None = None
    password: str | None = None


class MqttPublisher:
    """One MQTT client per device, connected on its first reading and kept."""

    def __init__(self, host: str, port: int, base_topic: str, devices: list[BleDevice]) -> None:
        self._host, self._port = host, port
        self._topics = Topics(base_topic)
        self._accounts = {d.device_id: d for d in devices}
        self._clients: dict[str, aiomqtt.Client] = {}

    async def _client(self, device_id: str) -> aiomqtt.Client:
        client = self._clients.get(device_id)
        if client is None:
            account = self._accounts[device_id]
            availability = self._topics.device(device_id, Channel.AVAILABILITY)
            client = aiomqtt.Client(
                self._host,
                self._port,
                identifier=f"ble-{device_id}",
                username=account.username,
                password=account.password,
                will=aiomqtt.Will(availability, b"offline", qos=1, retain=True),
                keepalive=15,
            )
            await client.__aenter__()  # connects; kept until the connection fails
            self._clients[device_id] = client
            await client.publish(availability, b"online", qos=1, retain=True)
        return client

    async def publish(self, device_id: str, reading: VitalsReading) -> None:
        """Publish, or log and drop the reading (QoS 0, as any wearable's) if the broker
        cannot be reached; the next reading tries a new connection."""
        topic = self._topics.device(device_id, Channel.VITALS)
        try:
            client = await self._client(device_id)
            await client.publish(topic, encode(reading), qos=CHANNEL_QOS[Channel.VITALS])
        except aiomqtt.MqttError as e:
            log.warning("bluetooth: %s: reading not published: %s", device_id, e)
            await _disconnect(self._clients.pop(device_id, None))

    async def close(self) -> None:
        """Say each device offline (the bridge stops following it) and disconnect."""
        for device_id, client in self._clients.items():
            availability = self._topics.device(device_id, Channel.AVAILABILITY)
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(availability, b"offline", qos=1, retain=True)
            await _disconnect(client)
        self._clients.clear()


async def _disconnect(client: aiomqtt.Client | None) -> None:
    if client is not None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)


class _LogLimit:
    def __init__(self) -> None:
        self._last: dict[tuple[str, Ignored], int] = {}

    def due(self, dropped: Dropped, now_ms: int) -> bool:
        key = (dropped.address, dropped.why)
        last = self._last.get(key)
        if last is not None and now_ms - last < LOG_EVERY_MS:
            return False
        self._last[key] = now_ms
        return True


async def run_bridge(
    source: GattSource,
    devices: list[BleDevice],
    publisher: MqttPublisher,
    clock: Clock | None = None,
) -> None:
    """Forever: every notification of a paired device becomes a published reading; the
    others are logged (hourly per device and reason) and dropped."""
    clock = clock or SystemClock()
    core = BleVitals({d.address: d.device_id for d in devices})
    limit = _LogLimit()
    async for note in source.notifications():
        now = clock.now_ms()
        outcome = core.reading(note, now)
        if isinstance(outcome, Dropped):
            if limit.due(outcome, now):
                log.warning(
                    "bluetooth: %s: notification dropped: %s %s",
                    outcome.address,
                    outcome.why.value,
                    outcome.detail,
                )
            continue
        await publisher.publish(outcome.device_id, outcome.reading)
