"""The running hub's side of Zigbee2MQTT: what it knows of Zigbee2MQTT's devices (from the
retained ``<base>/bridge/devices``) and of each device's last state, and which hub events
a message from Zigbee2MQTT makes. It reads through the hub's own device link (one MQTT
client, subscribed to ``<base>/#``) and decides nothing about alarms: `gateway.hub` acts on
the `(device id, event)` pairs `handle` returns.

A Zigbee device is served only once paired with this hub (`carehub hub pair`): anyone can
join a device to Zigbee2MQTT (its frontend, a permit-join left open), and such a device is
ignored, with one log line an hour saying how to pair it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from carehub.settings import HubSettings
from gateway.zigbee.models import ZigbeeModel
from gateway.zigbee.translate import (
    IEEE_PATTERN,
    Call,
    RadarFall,
    Refused,
    Remembered,
    Z2mDevice,
    ZigbeeError,
    ZigbeeEvent,
    availability,
    device_id_for,
    model_for,
    parse_devices,
    parse_topic,
    state_events,
)

log = logging.getLogger(__name__)

REFUSAL_LOG_EVERY_MS = 3_600_000
"""A device that is ignored (not paired, unsupported) is logged at most hourly."""
SILENCE_MS = 26 * 3_600_000
"""A Zigbee device not heard for this long is offline even without Zigbee2MQTT's word
(its own timeout for a battery device is 25 h): Zigbee2MQTT, its coordinator or the
whole Zigbee network may be gone without a will."""


@dataclass(frozen=True)
class Heard:
    """The device spoke (any state message): it is alive."""


@dataclass(frozen=True)
class Online:
    """Zigbee2MQTT's availability for the device (its own timeout, 25 h by default for a
    battery device), or Zigbee2MQTT itself gone offline (``why``)."""

    online: bool
    why: str = "zigbee2mqtt: offline"


BridgeEvent = ZigbeeEvent | Heard | Online


def subscriptions(settings: HubSettings) -> list[tuple[str, int]]:
    """What the hub's device link subscribes to for Zigbee2MQTT (none when not configured)."""
    topic = settings.zigbee2mqtt_topic
    return [(f"{topic}/#", 1)] if topic else []


class ZigbeeBridge:
    def __init__(self, base_topic: str) -> None:
        self.base = base_topic
        self.devices: dict[str, Z2mDevice] = {}
        """Zigbee2MQTT's devices by IEEE address."""
        self._by_name: dict[str, str] = {}
        self._remembered: dict[str, Remembered] = {}
        self._logged: dict[str, int] = {}
        self.ignored = 0
        """Messages of devices not paired here or not supported, since start."""

    def known(self) -> str:
        """Zigbee2MQTT's device list as the hub keeps it (JSON): read back by `restore`."""
        return json.dumps([dataclasses.asdict(d) for d in self.devices.values()])

    def restore(self, text: str) -> None:
        """The device list kept at the last run. After a restart, messages queued for the
        hub while it was away (a press among them) come before the retained
        ``bridge/devices``: without the list their friendly names would mean nothing."""
        try:
            devices = [Z2mDevice(**d) for d in json.loads(text)]
        except (ValueError, TypeError) as e:
            log.warning("kept zigbee2mqtt device list unreadable, ignored: %s", str(e)[:200])
            return
        self.devices = {d.ieee: d for d in devices}
        self._by_name = {d.friendly_name: d.ieee for d in devices}

    def owns(self, topic: str) -> bool:
        return topic.startswith(self.base + "/")

    def zigbee_ids(self) -> list[str]:
        """The CareHub ids of every device Zigbee2MQTT knows."""
        return [device_id_for(ieee) for ieee in self.devices]

    def handle(
        self, topic: str, payload: bytes, paired: Callable[[str], bool], now_ms: int
    ) -> list[tuple[str, BridgeEvent]]:
        """The hub events in one message under the Zigbee2MQTT base topic. Bad input is
        logged and yields nothing; it never raises."""
        which = parse_topic(self.base, topic)
        if which is None or which.what in ("ignored", "event", "response"):
            return []  # events and responses are the pairing command's business
        try:
            if which.what == "devices":
                self._set_devices(parse_devices(payload), paired, now_ms)
                return []
            if which.what == "bridge_state":
                return self._bridge_state(availability(payload), paired)
            ieee = self._by_name.get(which.name)
            if ieee is None:  # a group, or a device Zigbee2MQTT has not listed (yet)
                self._refuse(
                    "name:" + which.name,
                    now_ms,
                    f"zigbee2mqtt/{which.name[:100]!r} is not in Zigbee2MQTT's device list"
                    " (a group?): ignored",
                )
                return []
            device_id = device_id_for(ieee)
            model = self._served(ieee, paired, now_ms)
            if model is None:
                return []
            if which.what == "availability":
                return [(device_id, Online(availability(payload)))]
            events, self._remembered[ieee] = state_events(
                model, payload, self._remembered.get(ieee, {})
            )
        except ZigbeeError as e:
            log.warning("zigbee2mqtt message on %s dropped: %s", topic[:200], e)
            return []
        urgent = [e for e in events if isinstance(e, Call | RadarFall)]  # nothing delays these
        rest = [e for e in events if not isinstance(e, Call | RadarFall)]
        return [(device_id, e) for e in (*urgent, Heard(), *rest)]

    def _bridge_state(
        self, online: bool, paired: Callable[[str], bool]
    ) -> list[tuple[str, BridgeEvent]]:
        """Zigbee2MQTT's own state (retained, its will ``offline``): when it is gone, every
        paired Zigbee device is unheard (each comes back when heard again)."""
        ours = [device_id_for(i) for i in self.devices if paired(device_id_for(i))]
        if online:
            log.info("zigbee2mqtt is online")
            return []
        log.warning("zigbee2mqtt is offline: its %d paired devices are unheard", len(ours))
        return [(d, Online(False, "zigbee2mqtt itself is offline")) for d in ours]

    def _set_devices(
        self, devices: list[Z2mDevice], paired: Callable[[str], bool], now_ms: int
    ) -> None:
        self.devices = {d.ieee: d for d in devices}
        self._by_name = {d.friendly_name: d.ieee for d in devices}
        served = [d.ieee for d in devices if self._served(d.ieee, paired, now_ms)]
        log.info(
            "zigbee2mqtt lists %d devices; %d paired with this hub and supported: %s",
            len(devices),
            len(served),
            ", ".join(served) or "none",
        )

    def _served(self, ieee: str, paired: Callable[[str], bool], now_ms: int) -> ZigbeeModel | None:
        """The device's model when it is paired here and supported; else None (logged)."""
        device = self.devices[ieee]
        model = model_for(device)
        if not paired(device_id_for(ieee)):
            self._refuse(
                ieee,
                now_ms,
                f"zigbee device {ieee} ({device.vendor} {device.model}, {device.friendly_name!r})"
                " is not paired with this hub (joined outside a pairing window?): ignored;"
                " pair it with `carehub hub pair`",
            )
            return None
        if isinstance(model, Refused):
            self._refuse(ieee, now_ms, f"{model.message}: ignored")
            return None
        return model

    def missing(self, paired: list[str]) -> list[str]:
        """The paired Zigbee devices (ids that are IEEE addresses) Zigbee2MQTT no longer
        lists: removed or re-joined elsewhere, they cannot call any more."""
        listed = set(self.zigbee_ids())
        return [d for d in paired if IEEE_PATTERN.match(d) and d not in listed]

    def forget(self, device_id: str) -> None:
        """Removed from this hub: its remembered state goes (a later pairing starts afresh)."""
        self._remembered.pop(device_id, None)
        self._logged.pop(device_id, None)

    def _refuse(self, ieee: str, now_ms: int, text: str) -> None:
        self.ignored += 1
        last = self._logged.get(ieee)
        if last is None or now_ms - last >= REFUSAL_LOG_EVERY_MS:
            self._logged[ieee] = now_ms
            log.warning("%s", text)
