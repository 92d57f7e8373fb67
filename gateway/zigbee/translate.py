"""Zigbee2MQTT's messages as hub events: pure functions of topic, bytes and the last state
seen, tested without sockets; `gateway.zigbee.bridge` acts on what they return.

What is relied on from Zigbee2MQTT's MQTT API (zigbee2mqtt.io, "MQTT topics and messages"):
the retained ``<base>/bridge/devices`` list (``ieee_address``, ``friendly_name``,
``type``, ``interview_completed``, ``supported``, ``definition.vendor``/``model``),
``<base>/bridge/event`` (``device_joined``, ``device_interview`` with ``status``
``started``/``successful``/``failed``, ``device_leave``), a device's JSON state on
``<base>/<friendly_name>`` and its availability on ``<base>/<friendly_name>/availability``
(``{"state": "online"}``, or the plain ``online`` of older releases).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from carehub.mqtt_contract import DEVICE_ID_PATTERN, MAX_PAYLOAD_BYTES
from gateway.zigbee.models import BY_MODEL, HOW_TO_ADD, ZigbeeModel

IEEE_PATTERN = re.compile(r"^0x[0-9a-f]{16}$")
"""A Zigbee IEEE address as Zigbee2MQTT writes it: it is also the device's CareHub id."""
MAX_DEVICES_BYTES = 4 * 1024 * 1024
"""Largest ``bridge/devices`` list read (each device carries its whole definition)."""
COMMAND_LEVELS = frozenset({"set", "get"})
"""``<base>/<friendly_name>/set`` and ``/get`` are commands to Zigbee2MQTT, not states."""


class ZigbeeError(ValueError):
    """A Zigbee2MQTT message the hub cannot read; ``str()`` says why in one line."""


# ---------------------------------------------------------------- devices and models


@dataclass(frozen=True)
class Z2mDevice:
    """One entry of ``bridge/devices`` (or of a ``device_interview`` event)."""

    ieee: str
    friendly_name: str
    vendor: str | None = None
    model: str | None = None
    interview_completed: bool = True
    supported: bool = True


def device_id_for(ieee: str) -> str:
    """A Zigbee device's CareHub id is its IEEE address (``0x`` + 16 hex digits: printed on
    the device's label and shown by Zigbee2MQTT, and within the contract's id pattern)."""
    assert IEEE_PATTERN.match(ieee) and DEVICE_ID_PATTERN.match(ieee)
    return ieee


@dataclass(frozen=True)
class Refused:
    """A device CareHub will not pair, and what the installer should do about it."""

    reason: Literal["not_interviewed", "not_supported_by_z2m", "unknown_model"]
    message: str


def model_for(device: Z2mDevice) -> ZigbeeModel | Refused:
    """The supported model `device` is, or why it is refused (a message for the installer)."""
    name = f"{device.ieee} ({device.vendor or '?'} {device.model or '?'})"
    if not device.interview_completed:
        return Refused(
            "not_interviewed",
            f"Zigbee device {name}: Zigbee2MQTT has not finished interviewing it; wake it"
            " (press its button) and pair again",
        )
    if not device.supported or device.model is None:
        return Refused(
            "not_supported_by_z2m",
            f"Zigbee device {name}: Zigbee2MQTT does not support it, so CareHub cannot;"
            " choose a model from docs/devices.md",
        )
    model = BY_MODEL.get(device.model)
    if model is None or (device.vendor or "").lower() not in model.vendors:
        return Refused(
            "unknown_model",
            f"Zigbee device {name} is not a model CareHub supports; to support it, {HOW_TO_ADD}",
        )
    return model


def parse_devices(payload: bytes) -> list[Z2mDevice]:
    """The devices of a retained ``bridge/devices`` message (the coordinator and entries
    without a valid IEEE address left out)."""
    data = _json(payload, MAX_DEVICES_BYTES)
    if not isinstance(data, list):
        raise ZigbeeError("bridge/devices is not a JSON list")
    devices = []
    for entry in data:
        if isinstance(entry, dict) and entry.get("type") != "Coordinator":
            device = _device(entry)
            if device is not None:
                devices.append(device)
    return devices


def _device(entry: dict[str, Any]) -> Z2mDevice | None:
    ieee, name = entry.get("ieee_address"), entry.get("friendly_name")
    if not isinstance(ieee, str) or not IEEE_PATTERN.match(ieee) or not isinstance(name, str):
        return None
    definition = entry.get("definition")
    vendor = model = None
    if isinstance(definition, dict):
        v, m = definition.get("vendor"), definition.get("model")
        vendor = v if isinstance(v, str) else None
        model = m if isinstance(m, str) else None
    return Z2mDevice(
        ieee=ieee,
        friendly_name=name,
        vendor=vendor,
        model=model,
        interview_completed=entry.get("interview_completed", True) is True,
        supported=entry.get("supported", model is not None) is True,
    )


@dataclass(frozen=True)
class BridgeNotice:
    """A ``bridge/event``: ``kind`` is Zigbee2MQTT's ``type``; ``device`` is filled in for
    a successful interview (with its definition), else only its address and name."""

    kind: Literal["device_joined", "device_interview", "device_leave", "other"]
    ieee: str | None = None
    status: str | None = None
    device: Z2mDevice | None = None


def parse_bridge_event(payload: bytes) -> BridgeNotice:
    data = _json(payload, MAX_PAYLOAD_BYTES)
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise ZigbeeError("bridge/event is not a JSON object with data")
    kind, body = data.get("type"), data["data"]
    if kind not in ("device_joined", "device_interview", "device_leave"):
        return BridgeNotice("other")
    ieee = body.get("ieee_address")
    if not isinstance(ieee, str) or not IEEE_PATTERN.match(ieee):
        raise ZigbeeError(f"bridge/event {kind} without a valid ieee_address")
    status = body.get("status") if isinstance(body.get("status"), str) else None
    device = None
    if kind == "device_interview" and status == "successful":
        device = _device({**body, "interview_completed": True})
    return BridgeNotice(kind, ieee, status, device)


# ---------------------------------------------------------------- topics


@dataclass(frozen=True)
class Z2mTopic:
    what: Literal[
        "devices", "bridge_state", "event", "response", "state", "availability", "ignored"
    ]
    name: str = ""
    """The friendly name (state, availability) or the response's request (response)."""


def parse_topic(base: str, topic: str) -> Z2mTopic | None:
    """Which Zigbee2MQTT topic `topic` is, or None when it is not under `base`."""
    prefix = base + "/"
    if not topic.startswith(prefix):
        return None
    rest = topic[len(prefix) :]
    if rest.startswith("bridge/"):
        if rest == "bridge/devices":
            return Z2mTopic("devices")
        if rest == "bridge/event":
            return Z2mTopic("event")
        if rest == "bridge/state":
            return Z2mTopic("bridge_state")
        if rest.startswith("bridge/response/"):
            return Z2mTopic("response", rest[len("bridge/response/") :])
        return Z2mTopic("ignored")
    name, _, last = rest.rpartition("/")
    if last == "availability" and name:
        return Z2mTopic("availability", name)
    if last in COMMAND_LEVELS or "/set/" in rest or not rest:
        return Z2mTopic("ignored")
    return Z2mTopic("state", rest)


# ---------------------------------------------------------------- device states


@dataclass(frozen=True)
class Call:
    """A call for help: `action` is the button's (``emergency``, ``single``…)."""

    action: str


@dataclass(frozen=True)
class RadarFall:
    key: str
    value: str


ActivityKind = Literal["motion", "presence", "door_opened", "door_closed"]


@dataclass(frozen=True)
class Activity:
    kind: ActivityKind


@dataclass(frozen=True)
class BatteryLevel:
    pct: float


ZigbeeEvent = Call | RadarFall | Activity | BatteryLevel
Remembered = dict[str, object]
"""The keys of a device's last state that edges are decided from."""


def state_events(
    model: ZigbeeModel, payload: bytes, before: Remembered
) -> tuple[list[ZigbeeEvent], Remembered]:
    """The events in one state message of a device of `model`, given the state remembered
    from its previous messages (empty after a restart), and the state to remember now.

    Zigbee2MQTT repeats a device's whole state with every report (a battery report carries
    the door's ``contact`` again), so states count on their edges: a fall when the fall key
    takes a fall value, motion or presence when they become true, a door when its contact
    changes. With nothing remembered, a fall, motion, presence or an open door counts
    (better an alarm twice than a fall missed after a restart); a closed door does not."""
    state = _json(payload, MAX_PAYLOAD_BYTES)
    if not isinstance(state, dict):
        raise ZigbeeError("device state is not a JSON object")
    events: list[ZigbeeEvent] = []
    now: Remembered = dict(before)
    action = state.get("action")
    if isinstance(action, str) and action in model.call_actions:
        events.append(Call(action))
    if model.fall_key is not None:
        value = state.get(model.fall_key)
        if isinstance(value, str):
            if value in model.fall_values and before.get(model.fall_key) not in model.fall_values:
                events.append(RadarFall(model.fall_key, value))
            now[model.fall_key] = value
    for key, kind in ((model.presence_key, "presence"), (model.occupancy_key, "motion")):
        if key is not None and isinstance(state.get(key), bool):
            if state[key] and before.get(key) is not True:
                events.append(Activity(kind))  # type: ignore[arg-type]
            now[key] = state[key]
    if model.contact_key is not None and isinstance(state.get(model.contact_key), bool):
        closed, was = state[model.contact_key], before.get(model.contact_key)
        if closed != was and (was is not None or not closed):
            events.append(Activity("door_closed" if closed else "door_opened"))
        now[model.contact_key] = closed
    battery = state.get("battery")
    if (
        isinstance(battery, int | float)
        and not isinstance(battery, bool)
        and math.isfinite(battery)
        and 0 <= battery <= 100
    ):
        events.append(BatteryLevel(float(battery)))
    return events, now


def availability(payload: bytes) -> bool:
    """Online? ``{"state": "online"|"offline"}`` (Zigbee2MQTT ≥ 1.30) or the plain text."""
    text = payload.strip()
    if text in (b"online", b"offline"):
        return text == b"online"
    data = _json(payload, MAX_PAYLOAD_BYTES)
    if isinstance(data, dict) and data.get("state") in ("online", "offline"):
        return data["state"] == "online"
    raise ZigbeeError("availability is neither online nor offline")


def _json(payload: bytes, limit: int) -> object:
    if len(payload) > limit:
        raise ZigbeeError(f"payload of {len(payload)} bytes exceeds {limit}")
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise ZigbeeError(f"not JSON: {str(e)[:80]}") from None
