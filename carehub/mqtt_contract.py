"""The MQTT device contract: every topic and payload between devices and the hub.

This module is the single source of truth; `docs/mqtt.md` documents it for device makers.
Nothing else builds topic strings or payload JSON by hand.

Topics (``<base>`` defaults to ``carehub``; ``<device_id>`` matches ``DEVICE_ID_PATTERN``):

====================================  =================  =====  ========
topic                                 direction          QoS    retained
====================================  =================  =====  ========
``<base>/<device_id>/button``         device → hub       1      no
``<base>/<device_id>/imu``            device → hub       0      no
``<base>/<device_id>/vitals``         device → hub       0      no
``<base>/<device_id>/status``         device → hub       1      no
``<base>/<device_id>/availability``   device → hub       1      yes (last will ``offline``)
``<base>/<device_id>/ack``            hub → device       1      no
====================================  =================  =====  ========
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONTRACT_VERSION = 1
DEFAULT_BASE_TOPIC = "carehub"
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest payload the hub accepts on any device topic (an IMU frame of 200 Hz × 1 s fits)."""
MAX_FRAME_SAMPLES = 2000
"""Largest number of samples in one IMU frame (10 s at 200 Hz)."""
CLOCK_AHEAD_TOLERANCE_MS = 60_000
"""A live device timestamp may be at most this far ahead of the hub's clock (1 min)."""
CLOCK_BEHIND_TOLERANCE_MS = 60_000
"""A live (not replayed) device timestamp may be at most this far behind the hub's clock.
Outside [now - behind, now + ahead] the device's clock is wrong: see `docs/mqtt.md` for what
the hub does with its data (logged once per device; data re-stamped, never allowed to move a
detector's time forward)."""
REPLAY_BUFFER_S = 120
"""A pendant that cannot publish keeps at least its last this-many seconds of IMU frames and
replays them, marked ``replayed``, when it reconnects."""
REPLAY_MAX_AGE_MS = 3_600_000
"""A replayed frame older than this (1 h) by the hub's clock is dropped: too late to help."""


class Channel(enum.StrEnum):
    """The last topic level: what kind of message travels on the topic."""

    BUTTON = "button"
    IMU = "imu"
    VITALS = "vitals"
    STATUS = "status"
    AVAILABILITY = "availability"
    ACK = "ack"


DEVICE_TO_HUB = frozenset(
    {Channel.BUTTON, Channel.IMU, Channel.VITALS, Channel.STATUS, Channel.AVAILABILITY}
)
CHANNEL_QOS: dict[Channel, int] = {
    Channel.BUTTON: 1,
    Channel.IMU: 0,
    Channel.VITALS: 0,
    Channel.STATUS: 1,
    Channel.AVAILABILITY: 1,
    Channel.ACK: 1,
}


class AckState(enum.StrEnum):
    """What the hub tells a device about the alarm it raised (the elder's feedback)."""

    PENDING = "pending"  # a detected fall waits for the cancel window; `seconds_left` says how long
    RECEIVED = "received"  # stored on the hub: help is being called
    DISPATCHED = "dispatched"  # a doctor has been notified
    ACCEPTED = "accepted"  # a doctor said they are coming
    CANCELLED = "cancelled"
    RESOLVED = "resolved"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = Field(description="Contract version; always 1 for now.")


EpochMs = Annotated[int, Field(ge=0, lt=10**14, description="Epoch milliseconds (UTC).")]
Seq = Annotated[int, Field(ge=0, lt=2**63, description="Per-device event counter.")]


class ButtonEvent(_Payload):
    """A press (call for help) or a cancel (false alarm) on a one-press call terminal.

    Firmware republishes the same ``seq`` and ``ts`` until it receives an ``ack`` for it;
    the hub treats every copy as the same event.
    """

    seq: Seq
    ts: EpochMs
    action: Literal["press", "cancel"]


class ImuFrame(_Payload):
    """A frame of inertial samples from a fall pendant: sample i is at ``t0 + i*1000/hz`` ms."""

    seq: Seq
    t0: EpochMs
    hz: float = Field(ge=5, le=1000, description="Sample rate in Hz.")
    acc: list[Annotated[list[float], Field(min_length=3, max_length=3)]] = Field(
        max_length=MAX_FRAME_SAMPLES, description="Acceleration samples [x, y, z] in g."
    )
    gyr: list[Annotated[list[float], Field(min_length=3, max_length=3)]] | None = Field(
        default=None,
        max_length=MAX_FRAME_SAMPLES,
        description="Angular rate samples [x, y, z] in °/s; same length as acc when present.",
    )

    @field_validator("gyr")
    @classmethod
    def _gyr_matches_acc(cls, gyr: list[list[float]] | None, info: Any) -> list[list[float]] | None:
        acc = info.data.get("acc")
        if gyr is not None and acc is not None and len(gyr) != len(acc):
            raise ValueError("gyr must have as many samples as acc")
        return gyr


class VitalsReading(_Payload):
    """One wearable reading (about 1 Hz). Every measurement is optional: send what you have."""

    seq: Seq
    ts: EpochMs
    hr: float | None = Field(default=None, description="Heart rate, beats/min.")
    spo2: float | None = Field(default=None, description="Oxygen saturation, %.")
    rr: float | None = Field(default=None, description="Respiration rate, breaths/min.")
    temp: float | None = Field(default=None, description="Skin/body temperature, °C.")
    sbp: float | None = Field(default=None, description="Systolic blood pressure, mmHg.")
    motion: float | None = Field(default=None, ge=0, description="Activity level, g RMS.")
    quality: float | None = Field(default=None, ge=0, le=1, description="Signal quality 0..1.")


class DeviceStatus(_Payload):
    """A heartbeat: the device is alive, with its health."""

    seq: Seq
    ts: EpochMs
    battery: float | None = Field(default=None, ge=0, le=100, description="Battery, %.")
    firmware: str | None = Field(default=None, max_length=64)
    rssi: float | None = Field(default=None, ge=-150, le=0, description="Radio signal, dBm.")


class Ack(_Payload):
    """Hub → device: the state of the alarm raised by the event ``seq`` of this device."""

    seq: Seq | None = Field(
        default=None, description="The device event this answers; null for alarms it did not raise."
    )
    alarm_id: str | None = Field(
        description="The alarm concerned; null when a cancel found no open alarm to cancel."
    )
    state: AckState
    seconds_left: int | None = Field(
        default=None, ge=0, description="With state pending: seconds until the alarm is raised."
    )


Availability = Literal["online", "offline"]

DevicePayload = ButtonEvent | ImuFrame | VitalsReading | DeviceStatus
_MODELS: dict[Channel, type[_Payload]] = {
    Channel.BUTTON: ButtonEvent,
    Channel.IMU: ImuFrame,
    Channel.VITALS: VitalsReading,
    Channel.STATUS: DeviceStatus,
    Channel.ACK: Ack,
}


# ---------------------------------------------------------------- topics


class ContractError(ValueError):
    """A message that breaks the contract; the text says what is wrong, for the log."""


@dataclass(frozen=True)
class Topic:
    """A parsed device topic."""

    device_id: str
    channel: Channel


class Topics:
    """Builds and parses the topic strings under one base topic."""

    def __init__(self, base: str = DEFAULT_BASE_TOPIC) -> None:
        if not base or any(c in base for c in "#+") or base.endswith("/"):
            raise ValueError(f"invalid MQTT base topic {base!r}")
        self.base = base
        self._depth = base.count("/") + 1

    def device(self, device_id: str, channel: Channel) -> str:
        if not DEVICE_ID_PATTERN.match(device_id):
            raise ValueError(f"invalid device id {device_id!r}")
        return f"{self.base}/{device_id}/{channel.value}"

    def hub_subscriptions(self) -> list[tuple[str, int]]:
        """Topic filters (with QoS) the hub subscribes to."""
        return [(f"{self.base}/+/{c.value}", CHANNEL_QOS[c]) for c in sorted(DEVICE_TO_HUB)]

    def parse(self, topic: str) -> Topic:
        parts = topic.split("/")
        if len(parts) != self._depth + 2 or "/".join(parts[: self._depth]) != self.base:
            raise ContractError(f"topic {topic!r} is not under {self.base!r}/<device_id>/<channel>")
        device_id, channel = parts[-2], parts[-1]
        if not DEVICE_ID_PATTERN.match(device_id):
            raise ContractError(f"invalid device id {device_id!r} in topic")
        try:
            return Topic(device_id, Channel(channel))
        except ValueError:
            raise ContractError(f"unknown channel {channel!r}") from None


# ---------------------------------------------------------------- payloads


def parse_payload(channel: Channel, payload: bytes) -> DevicePayload | Ack | Availability:
    """Validate a payload for its channel; raise `ContractError` saying why it is refused."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if channel is Channel.AVAILABILITY:
        text = payload.decode("utf-8", "replace").strip()
        if text not in ("online", "offline"):
            raise ContractError(f"availability must be 'online' or 'offline', got {text[:20]!r}")
        return "online" if text == "online" else "offline"
    try:
        data = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ContractError(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ContractError("payload must be a JSON object")
    if data.get("v") != CONTRACT_VERSION:
        raise ContractError(f"unsupported contract version v={data.get('v')!r}")
    try:
        return _MODELS[channel].model_validate(data)  # type: ignore[return-value]
    except ValidationError as e:
        raise ContractError(_describe(e)) from None


def encode(message: BaseModel) -> bytes:
    """Serialise a contract message (compact JSON, no nulls)."""
    return message.model_dump_json(exclude_none=True).encode()


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def finite_or_none(x: float | None) -> float | None:
    """NaN/inf never travel further than the contract edge."""
    return x if x is not None and math.isfinite(x) else None
