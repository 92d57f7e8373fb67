"""Home Assistant MQTT discovery for the hub's paired devices: the topics, the discovery
payloads and the read-only device states. Pure: the hub's shell (`gateway.ha_bridge`)
publishes what this returns. docs/mqtt.md ("Home Assistant") documents it for families.

Read-only by construction: every topic here is published by the hub and subscribed to by
nobody in CareHub, so nothing Home Assistant sends can reach the hub, let alone raise or
silence an alarm. Alarms keep their own path (device → hub → server → SMS).

Topics (retained; ``<node>`` is ``carehub_<hub_id>_<device_id>``, characters outside
``[A-Za-z0-9_-]`` replaced by ``_`` as discovery requires):

- ``<prefix>/sensor/<node>/battery/config``: battery, %
- ``<prefix>/binary_sensor/<node>/connectivity/config``: the device is online
- ``<prefix>/sensor/<node>/last_alarm/config``: the state of the device's last alarm, with
  its kind and time as attributes
- ``<base>/bridge/devices/<device_id>/state``: one JSON object all three read
- availability: the hub's bridge state ``<base>/bridge/state`` (``online``, last will
  ``offline``), so every entity shows unavailable while the hub is down
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from carehub import __version__
from carehub.alarm_lifecycle import AlarmKind, AlarmState
from carehub.mqtt_contract import BridgeTopic, Topics

ENTITIES = ("battery", "connectivity", "last_alarm")
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass
class DeviceState:
    """What Home Assistant shows of one device; None is shown as unknown."""

    battery: float | None = None
    """Battery, % (from the device's ``status``)."""
    rssi: float | None = None
    """Radio signal, dBm."""
    connectivity: str | None = None
    """``online`` or ``offline``."""
    last_alarm_id: str | None = None
    last_alarm_kind: str | None = None
    last_alarm_state: str | None = None
    last_alarm_at: str | None = None
    """When the last alarm was raised, ISO 8601 UTC."""
    raised_at_ms: int = field(default=-1, repr=False)

    def payload(self) -> bytes:
        shown = {k: v for k, v in vars(self).items() if k not in ("raised_at_ms",)}
        return json.dumps(shown, separators=(",", ":")).encode()


def node_id(hub_id: str, device_id: str) -> str:
    return _NOT_ID.sub("_", f"carehub_{hub_id}_{device_id}")


class HaDiscovery:
    """Discovery configs for the paired devices and their states, as publications. A state
    is republished only when it changed (a status every minute with the same battery is
    not news)."""

    def __init__(self, topics: Topics, prefix: str = "homeassistant") -> None:
        if not prefix or any(c in prefix for c in "#+") or prefix.endswith("/"):
            raise ValueError(f"invalid Home Assistant discovery prefix {prefix!r}")
        self.topics = topics
        self.prefix = prefix
        self.hub_id: str | None = None
        self.devices: dict[str, str] = {}
        """Paired device id → kind."""
        self.states: dict[str, DeviceState] = {}
        self._published: dict[str, bytes] = {}

    @property
    def availability_topic(self) -> str:
        return self.topics.bridge(BridgeTopic.STATE)

    def state_topic(self, device_id: str) -> str:
        return f"{self.topics.base}/bridge/devices/{device_id}/state"

    def config_topic(self, component: str, device_id: str, entity: str) -> str:
        assert self.hub_id is not None
        return f"{self.prefix}/{component}/{node_id(self.hub_id, device_id)}/{entity}/config"

    # ------------------------------------------------------------ discovery

    def pair(self, hub_id: str, devices: dict[str, str]) -> list[Publication]:
        """The paired devices (id → kind) changed: configs for new ones, empty retained
        configs (Home Assistant's way to remove an entity) for those gone."""
        out: list[Publication] = []
        if self.hub_id is not None and self.hub_id != hub_id:
            out += self._forget(list(self.devices))
        gone = [d for d in self.devices if d not in devices]
        out += self._forget(gone)
        self.hub_id = hub_id
        for device_id, kind in devices.items():
            if self.devices.get(device_id) != kind:
                self.devices[device_id] = kind
                out += self._configs(device_id)
        return out

    def everything(self) -> list[Publication]:
        """All configs and states again (after a reconnection: the broker may have lost its
        retained messages)."""
        self._published.clear()
        out = [p for d in self.devices for p in self._configs(d)]
        return out + [p for d in self.devices for p in self._state(d)]

    def _forget(self, device_ids: list[str]) -> list[Publication]:
        out = []
        for device_id in device_ids:
            for component, entity in _COMPONENTS:
                out.append(Publication(self.config_topic(component, device_id, entity), b""))
            out.append(Publication(self.state_topic(device_id), b""))
            self.devices.pop(device_id, None)
            self.states.pop(device_id, None)
            self._published.pop(device_id, None)
        return out

    def _configs(self, device_id: str) -> list[Publication]:
        return [
            Publication(
                self.config_topic(component, device_id, entity),
                json.dumps(self.config(device_id, entity), separators=(",", ":")).encode(),
            )
            for component, entity in _COMPONENTS
        ]

    def config(self, device_id: str, entity: str) -> dict[str, Any]:
        """The discovery payload of one entity (keys as in Home Assistant's MQTT docs)."""
        assert self.hub_id is not None
        node, kind = node_id(self.hub_id, device_id), self.devices[device_id]
        common: dict[str, Any] = {
            "unique_id": f"{node}_{entity}",
            "state_topic": self.state_topic(device_id),
            "availability": [
                {
                    "topic": self.availability_topic,
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
            "device": {
                "identifiers": [node],
                "name": f"CareHub {kind} {device_id}",
                "manufacturer": "CareHub",
                "model": kind,
            },
            "origin": {"name": "CareHub hub", "sw_version": __version__},
            "qos": 1,
        }
        if entity == "battery":
            return common | {
                "name": "Battery",
                "device_class": "battery",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "value_template": "{{ value_json.battery }}",
            }
        if entity == "connectivity":
            return common | {
                "name": "Connectivity",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "value_template": "{{ value_json.connectivity }}",
                "payload_on": "online",
                "payload_off": "offline",
            }
        assert entity == "last_alarm", entity
        return common | {
            "name": "Last alarm",
            "icon": "mdi:alarm-light",
            "device_class": "enum",
            "options": [s.value for s in AlarmState],
            "value_template": "{{ value_json.last_alarm_state }}",
            "json_attributes_topic": self.state_topic(device_id),
            "json_attributes_template": (
                "{{ {'kind': value_json.last_alarm_kind, 'raised_at': value_json.last_alarm_at}"
                " | tojson }}"
            ),
        }

    # ------------------------------------------------------------ states

    def status(
        self, device_id: str, battery: float | None, rssi: float | None
    ) -> list[Publication]:
        state = self._device(device_id)
        if state is None:
            return []
        if battery is not None:
            state.battery = round(battery, 1)
        if rssi is not None:
            state.rssi = round(rssi, 1)
        return self._state(device_id)

    def connectivity(self, device_id: str, online: bool) -> list[Publication]:
        state = self._device(device_id)
        if state is None:
            return []
        state.connectivity = "online" if online else "offline"
        return self._state(device_id)

    def alarm(
        self, device_id: str, alarm_id: str, kind: AlarmKind, state: AlarmState, raised_at_ms: int
    ) -> list[Publication]:
        """An alarm of this device was raised or changed state; an older alarm's change does
        not replace a newer alarm."""
        shown = self._device(device_id)
        if shown is None or (alarm_id != shown.last_alarm_id and raised_at_ms < shown.raised_at_ms):
            return []
        shown.last_alarm_id, shown.raised_at_ms = alarm_id, raised_at_ms
        shown.last_alarm_kind, shown.last_alarm_state = kind.value, state.value
        shown.last_alarm_at = datetime.fromtimestamp(raised_at_ms / 1000, UTC).isoformat(
            timespec="seconds"
        )
        return self._state(device_id)

    def _device(self, device_id: str) -> DeviceState | None:
        if device_id not in self.devices:
            return None  # not paired: not shown
        return self.states.setdefault(device_id, DeviceState())

    def _state(self, device_id: str) -> list[Publication]:
        payload = self.states.setdefault(device_id, DeviceState()).payload()
        if self._published.get(device_id) == payload:
            return []
        self._published[device_id] = payload
        return [Publication(self.state_topic(device_id), payload, qos=0)]


_COMPONENTS = (("sensor", "battery"), ("binary_sensor", "connectivity"), ("sensor", "last_alarm"))
