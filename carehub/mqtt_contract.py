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
``<base>/pair/<hardware_id>/announce``   new device → hub   1      no
``<base>/pair/<hardware_id>/credential`` hub → new device   1      yes (sealed; cleared later)
``<base>/bridge/state``               hub → all          1      yes (``online``/``offline``)
``<base>/bridge/pairing``             hub → all          1      yes
``<base>/bridge/selftest``            hub → hub          1      yes
``<base>/bridge/event``               hub → all          1      no
====================================  =================  =====  ========

Pairing and bridge topics are documented in `docs/mqtt.md` ("Pairing").
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic import Strict as _Strict

CONTRACT_VERSION = 1
DEFAULT_BASE_TOPIC = "carehub"
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A device id is also its broker username (and a hardware id the pairing account's client
id): no ``:``, which separates the username from its hash in mosquitto's password file, no
``/``, ``+``, ``#`` (topic levels and wildcards), and no leading ``_`` (the hub's own
accounts, ``_hub``, ``_pair``…)."""
MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest payload the hub accepts on any device topic (an IMU frame of 200 Hz × 1 s fits)."""
MAX_JSON_DEPTH = 8
"""Deepest nesting of JSON arrays/objects accepted (a payload needs 3: object, acc, sample);
checked before parsing, so no input can exhaust the parser's stack."""
MAX_INT_DIGITS = 20
"""Longest integer literal accepted anywhere in a payload (2**64 has 20 digits)."""
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


@dataclass(frozen=True)
class Bounds:
    """An inclusive range of values a real device can report, in ``unit``. Outside it the
    number is a sensor fault or garbage, never a measurement, and the payload is refused."""

    low: float
    high: float
    unit: str


HR_RANGE = Bounds(20, 300, "beats/min")
SPO2_RANGE = Bounds(50, 100, "%")
RR_RANGE = Bounds(0, 80, "breaths/min")
TEMP_RANGE = Bounds(5, 50, "°C")
"""Wide on purpose: a wearable taken off the wrist reads the room, and the hub needs those
readings to say "sensor not worn" (a hypothermic elder at 30 °C passes too)."""
SBP_RANGE = Bounds(40, 300, "mmHg")
MOTION_RANGE = Bounds(0, 64, "g RMS")
QUALITY_RANGE = Bounds(0, 1, "")
ACC_RANGE = Bounds(-64, 64, "g")
GYR_RANGE = Bounds(-4000, 4000, "°/s")
HZ_RANGE = Bounds(5, 1000, "Hz")
BATTERY_RANGE = Bounds(0, 100, "%")
RSSI_RANGE = Bounds(-150, 0, "dBm")

RANGES: dict[str, Bounds] = {
    "vitals.hr": HR_RANGE,
    "vitals.spo2": SPO2_RANGE,
    "vitals.rr": RR_RANGE,
    "vitals.temp": TEMP_RANGE,
    "vitals.sbp": SBP_RANGE,
    "vitals.motion": MOTION_RANGE,
    "vitals.quality": QUALITY_RANGE,
    "imu.acc": ACC_RANGE,
    "imu.gyr": GYR_RANGE,
    "imu.hz": HZ_RANGE,
    "status.battery": BATTERY_RANGE,
    "status.rssi": RSSI_RANGE,
}
"""Every ranged number, by ``<channel>.<field>`` (for the docs and the tests)."""


class Refusal(enum.StrEnum):
    """Why a message was refused: a short, fixed code (a metrics label), beside the text."""

    NOT_JSON = "not_json"  # not UTF-8 / not JSON / not the plain text the channel takes
    TOO_LARGE = "too_large"  # more than MAX_PAYLOAD_BYTES
    TOO_DEEP = "too_deep"  # JSON nested deeper than MAX_JSON_DEPTH
    BAD_VERSION = "bad_version"  # "v" missing or not the integer 1
    SCHEMA = "schema"  # wrong shape: missing field, wrong type, wrong length, bad enum value
    NON_FINITE = "non_finite"  # NaN, Infinity, or a number that overflows to infinity
    OUT_OF_RANGE = "out_of_range"  # a number outside its documented range
    BAD_TOPIC = "bad_topic"  # not <base>/<device_id>/<channel>
    UNKNOWN_CHANNEL = "unknown_channel"  # last topic level is not a channel
    BAD_DEVICE_ID = "bad_device_id"  # device id not matching DEVICE_ID_PATTERN


class ContractError(ValueError):
    """A message that breaks the contract. ``str(error)`` says what is wrong in one line (for
    the log); ``reason`` is the fixed code (for counting)."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
    NOT_DELIVERED = "not_delivered"  # the server refuses this hub: nobody was called (yet)
    TALKING = "talking"  # a voice call with the centre is open on the hub's speakerphone
    CHECKED_IN = (
        "checked_in"  # the daily check-in was recorded; nobody is called (press again for help)
    )


# Integers are JSON integers (no strings, bools or 7.0); floats are finite JSON numbers
# (integers allowed, bools not); each measurement lies in its Bounds.
EpochMs = Annotated[StrictInt, Field(ge=0, lt=10**14, description="Epoch milliseconds (UTC).")]
Seq = Annotated[StrictInt, Field(ge=0, lt=2**63, description="Per-device event counter.")]
Finite = Annotated[float, _Strict(), AllowInfNan(False)]
HeartRate = Annotated[Finite, Field(ge=HR_RANGE.low, le=HR_RANGE.high)]
SpO2 = Annotated[Finite, Field(ge=SPO2_RANGE.low, le=SPO2_RANGE.high)]
RespRate = Annotated[Finite, Field(ge=RR_RANGE.low, le=RR_RANGE.high)]
Temperature = Annotated[Finite, Field(ge=TEMP_RANGE.low, le=TEMP_RANGE.high)]
Systolic = Annotated[Finite, Field(ge=SBP_RANGE.low, le=SBP_RANGE.high)]
Motion = Annotated[Finite, Field(ge=MOTION_RANGE.low, le=MOTION_RANGE.high)]
Quality = Annotated[Finite, Field(ge=QUALITY_RANGE.low, le=QUALITY_RANGE.high)]
Accel = Annotated[Finite, Field(ge=ACC_RANGE.low, le=ACC_RANGE.high)]
Gyro = Annotated[Finite, Field(ge=GYR_RANGE.low, le=GYR_RANGE.high)]
SampleRate = Annotated[Finite, Field(ge=HZ_RANGE.low, le=HZ_RANGE.high)]
Battery = Annotated[Finite, Field(ge=BATTERY_RANGE.low, le=BATTERY_RANGE.high)]
Rssi = Annotated[Finite, Field(ge=RSSI_RANGE.low, le=RSSI_RANGE.high)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = Field(description="Contract version; always the integer 1 for now.")

    @field_validator("v", mode="before")
    @classmethod
    def _integer_version(cls, v: object) -> object:
        if type(v) is not int:  # Literal[1] alone would take true and 1.0
            raise ValueError("v must be the integer 1")
        return v


class ButtonEvent(_Payload):
    """A press (call for help) or a cancel (false alarm) on a one-press call terminal.

    Firmware republishes the same ``seq`` and ``ts`` until it receives an ``ack`` for it;
    the hub treats every copy as the same event.
    """

    seq: Seq
    ts: EpochMs
    action: Literal["press", "cancel"]


class ImuFrame(_Payload):
    """A frame of inertial samples from a fall pendant: sample i is at ``t0 + i*1000/hz`` ms.

    ``replayed`` marks a frame the pendant could not publish when it was measured and sends
    after reconnecting (see `docs/mqtt.md`, "Pendants across outages")."""

    seq: Seq
    t0: EpochMs
    hz: SampleRate = Field(description="Sample rate in Hz.")
    acc: list[Annotated[list[Accel], Field(min_length=3, max_length=3)]] = Field(
        min_length=1,
        max_length=MAX_FRAME_SAMPLES,
        description="Acceleration samples [x, y, z] in g.",
    )
    gyr: list[Annotated[list[Gyro], Field(min_length=3, max_length=3)]] | None = Field(
        default=None,
        max_length=MAX_FRAME_SAMPLES,
        description="Angular rate samples [x, y, z] in °/s; same length as acc when present.",
    )
    replayed: StrictBool = Field(
        default=False, description="Sent late, after an outage, from the pendant's buffer."
    )

    @field_validator("gyr")
    @classmethod
    def _gyr_matches_acc(cls, gyr: list[list[float]] | None, info: Any) -> list[list[float]] | None:
        acc = info.data.get("acc")
        if gyr is not None and acc is not None and len(gyr) != len(acc):
            raise ValueError("gyr must have as many samples as acc")
        return gyr


class VitalsReading(_Payload):
    """One wearable reading (about 1 Hz). Every measurement is optional: send what you have,
    and null (or nothing) for what you did not measure — never a 0 or 255 sentinel."""

    seq: Seq
    ts: EpochMs
    hr: HeartRate | None = Field(default=None, description="Heart rate, beats/min.")
    spo2: SpO2 | None = Field(default=None, description="Oxygen saturation, %.")
    rr: RespRate | None = Field(default=None, description="Respiration rate, breaths/min.")
    temp: Temperature | None = Field(default=None, description="Skin/body temperature, °C.")
    sbp: Systolic | None = Field(default=None, description="Systolic blood pressure, mmHg.")
    motion: Motion | None = Field(default=None, description="Activity level, g RMS.")
    quality: Quality | None = Field(default=None, description="Signal quality 0..1.")


class DeviceStatus(_Payload):
    """A heartbeat: the device is alive, with its health."""

    seq: Seq
    ts: EpochMs
    battery: Battery | None = Field(default=None, description="Battery, %.")
    firmware: StrictStr | None = Field(default=None, max_length=64)
    rssi: Rssi | None = Field(default=None, description="Radio signal, dBm.")


RESPONDER_MAX_CHARS = 64
"""A responder's display name in an `Ack` is at most this many characters."""


class Ack(_Payload):
    """Hub → device: the state of the alarm raised by the event ``seq`` of this device."""

    seq: Seq | None = Field(
        default=None, description="The device event this answers; null for alarms it did not raise."
    )
    alarm_id: StrictStr | None = Field(
        default=None,
        max_length=128,
        description="The alarm concerned; null when a cancel found no open alarm to cancel.",
    )
    state: AckState
    seconds_left: Annotated[StrictInt, Field(ge=0, lt=2**31)] | None = Field(
        default=None, description="With state pending: seconds until the alarm is raised."
    )
    responder: StrictStr | None = Field(
        default=None,
        max_length=RESPONDER_MAX_CHARS,
        description="With state accepted: the display name of who is coming (a device may "
        "show or speak it); null when not known.",
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


# ---------------------------------------------------------------- pairing and the bridge

PAIRING_USERNAME = "_pair"
"""The shared, low-privilege MQTT account of devices not yet paired. Its password is not a
secret worth much (every device carries it, like Zigbee's well-known link key): the ACL lets
it only announce itself and read its own sealed credential (see `docs/mqtt.md`)."""
DEFAULT_PAIRING_PASSWORD = "carehub-pairing"
DeviceType = Literal["button", "pendant", "wearable"]
"""What a device says it is in its announcement (the server's `DeviceKind` values)."""
SensorType = Literal["fall_radar", "motion_sensor", "door_sensor"]
"""Kinds only Zigbee devices (through Zigbee2MQTT) are paired as; never announced."""
PAIR_KEY_BYTES = 32
"""An X25519 public key, raw, base64 in JSON."""
Base64Key = Annotated[
    StrictStr, Field(min_length=43, max_length=44, pattern=r"^[A-Za-z0-9+/]{43}=?$")
]
Base64Blob = Annotated[
    StrictStr, Field(min_length=4, max_length=1024, pattern=r"^[A-Za-z0-9+/]+=*$")
]
HardwareId = Annotated[StrictStr, Field(pattern=DEVICE_ID_PATTERN.pattern)]


class PairAnnounce(_Payload):
    """A new device, connected with the pairing account and client id = its hardware id,
    asks to be paired; ``public_key`` is its ephemeral X25519 key, to which the hub seals
    the device's own credential. Republished every few seconds until a credential arrives."""

    hardware_id: HardwareId
    kind: DeviceType
    public_key: Base64Key
    firmware: StrictStr | None = Field(default=None, max_length=64)


class PairCredential(_Payload):
    """Hub → new device (retained on its credential topic): its device id and MQTT account,
    sealed (X25519 + HKDF-SHA256 + ChaCha20-Poly1305, `carehub.pairing_seal`) to the public
    key of the announcement, so only the device holding the private key can read it."""

    hardware_id: HardwareId
    device_id: HardwareId
    hub_key: Base64Key = Field(description="The hub's ephemeral X25519 public key.")
    nonce: Annotated[StrictStr, Field(min_length=16, max_length=16)]
    sealed: Base64Blob


class SealedAccount(_Payload):
    """The plaintext inside `PairCredential.sealed`."""

    username: HardwareId
    password: Annotated[StrictStr, Field(min_length=16, max_length=128)]


class PairingWindow(_Payload):
    """Retained on ``bridge/pairing``: is the hub accepting new devices, and until when."""

    open: StrictBool
    until_ms: EpochMs | None = None


BridgeEventKind = Literal[
    "pairing_opened",
    "pairing_closed",
    "device_announced",
    "device_accepted",
    "device_refused",
    "device_removed",
    "selftest_started",
    "selftest_finished",
]


class BridgeEvent(_Payload):
    """Something the installer's commands did, for the running hub and for observers."""

    event: BridgeEventKind
    ts: EpochMs
    hardware_id: HardwareId | None = None
    device_id: HardwareId | None = None
    kind: DeviceType | SensorType | None = None
    detail: StrictStr | None = Field(default=None, max_length=200)


class SelftestMode(_Payload):
    """Retained on ``bridge/selftest`` while an installer's self-test runs: until
    ``until_ms`` the hub marks alarms raised by ``devices`` as tests (test SMS, no KPIs)."""

    active: StrictBool
    until_ms: EpochMs | None = None
    devices: list[HardwareId] = Field(default_factory=list, max_length=100)


BridgePayload = PairAnnounce | PairCredential | PairingWindow | BridgeEvent | SelftestMode
BRIDGE_MODELS: tuple[type[_Payload], ...] = (
    PairAnnounce,
    PairCredential,
    SealedAccount,
    PairingWindow,
    BridgeEvent,
    SelftestMode,
)
"""Every pairing/bridge payload model; each is parsed with `parse_model`."""

M = TypeVar("M", bound=_Payload)


def parse_model(model: type[M], payload: bytes) -> M:
    """Validate a pairing/bridge payload as `model`, under the same strict rules as device
    payloads; raises `ContractError` and nothing else, whatever the bytes."""
    return _validate(model, payload)  # type: ignore[return-value]


def _hardware_id(hardware_id: str) -> str:
    if not DEVICE_ID_PATTERN.match(hardware_id):
        raise ValueError(f"invalid hardware id {hardware_id!r}")
    return hardware_id


# ---------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topic:
    """A parsed device topic."""

    device_id: str
    channel: Channel


class BridgeTopic(enum.StrEnum):
    """The hub's own topics under ``<base>/bridge/`` (as Zigbee2MQTT's ``bridge/…``)."""

    STATE = "state"  # retained "online"/"offline" (the hub's last will)
    PAIRING = "pairing"  # retained PairingWindow
    SELFTEST = "selftest"  # retained SelftestMode
    EVENT = "event"  # BridgeEvent, not retained


PAIR_LEVEL = "pair"
BRIDGE_LEVEL = "bridge"
RESERVED_DEVICE_IDS = frozenset({PAIR_LEVEL, BRIDGE_LEVEL})
"""Device ids that would collide with the pairing and bridge topics: never paired."""


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
        """Topic filters (with QoS) the hub subscribes to: the devices' channels, and the
        bridge's events and self-test mode (published by the installer's commands)."""
        return [(f"{self.base}/+/{c.value}", CHANNEL_QOS[c]) for c in sorted(DEVICE_TO_HUB)] + [
            (self.bridge(BridgeTopic.EVENT), 1),
            (self.bridge(BridgeTopic.SELFTEST), 1),
        ]

    def bridge(self, name: BridgeTopic) -> str:
        return f"{self.base}/{BRIDGE_LEVEL}/{name.value}"

    def parse_bridge(self, topic: str) -> BridgeTopic | None:
        """The bridge topic ``topic`` is, or None when it is not one."""
        prefix = f"{self.base}/{BRIDGE_LEVEL}/"
        if not topic.startswith(prefix):
            return None
        try:
            return BridgeTopic(topic[len(prefix) :])
        except ValueError:
            return None

    def pair_announce(self, hardware_id: str) -> str:
        return f"{self.base}/{PAIR_LEVEL}/{_hardware_id(hardware_id)}/announce"

    def pair_credential(self, hardware_id: str) -> str:
        return f"{self.base}/{PAIR_LEVEL}/{_hardware_id(hardware_id)}/credential"

    def pair_announcements(self) -> str:
        """The filter of every well-formed announcement."""
        return f"{self.base}/{PAIR_LEVEL}/+/announce"

    def pair_everything(self) -> str:
        """The filter the pairing command subscribes to: the ACL's ``%c`` is any client id,
        ``/`` included, so a pairing client can publish deeper than ``pair/+/announce``."""
        return f"{self.base}/{PAIR_LEVEL}/#"

    def pair_client_id(self, topic: str) -> str | None:
        """The client id that may publish on `topic` under the pairing account's ACL
        (``<base>/pair/<client id>/announce``, any client id), or None."""
        prefix, suffix = f"{self.base}/{PAIR_LEVEL}/", "/announce"
        if (
            topic.startswith(prefix)
            and topic.endswith(suffix)
            and len(topic) > len(prefix + suffix)
        ):
            return topic[len(prefix) : -len(suffix)]
        return None

    def parse_pair_announce(self, topic: str) -> str:
        """The hardware id of an announcement topic; `ContractError` otherwise."""
        prefix, suffix = f"{self.base}/{PAIR_LEVEL}/", "/announce"
        if not (topic.startswith(prefix) and topic.endswith(suffix)):
            raise ContractError(Refusal.BAD_TOPIC, f"{_clip(topic)} is not a pairing announcement")
        hardware_id = topic[len(prefix) : -len(suffix)]
        if not DEVICE_ID_PATTERN.match(hardware_id):
            raise ContractError(Refusal.BAD_DEVICE_ID, f"invalid hardware id {_clip(hardware_id)}")
        return hardware_id

    def parse(self, topic: str) -> Topic:
        """The device and channel of ``topic``; `ContractError` if it is not a device topic."""
        parts = topic.split("/")
        if len(parts) != self._depth + 2 or "/".join(parts[: self._depth]) != self.base:
            raise ContractError(
                Refusal.BAD_TOPIC,
                f"topic {_clip(topic)} is not under {self.base!r}/<device_id>/<channel>",
            )
        device_id, channel = parts[-2], parts[-1]
        if not DEVICE_ID_PATTERN.match(device_id):
            raise ContractError(Refusal.BAD_DEVICE_ID, f"invalid device id {_clip(device_id)}")
        try:
            return Topic(device_id, Channel(channel))
        except ValueError:
            raise ContractError(
                Refusal.UNKNOWN_CHANNEL, f"unknown channel {_clip(channel)}"
            ) from None


# ---------------------------------------------------------------- payloads


def parse_payload(channel: Channel, payload: bytes) -> DevicePayload | Ack | Availability:
    """Validate a payload for its channel; raise `ContractError` saying why it is refused.

    Never raises anything else, whatever the bytes (the hub's intake relies on it)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            Refusal.TOO_LARGE, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        )
    if channel is Channel.AVAILABILITY:
        text = payload.decode("utf-8", "replace").strip()
        if text not in ("online", "offline"):
            raise ContractError(
                Refusal.NOT_JSON, f"availability must be 'online' or 'offline', got {_clip(text)}"
            )
        return "online" if text == "online" else "offline"
    return _validate(_MODELS[channel], payload)  # type: ignore[return-value]


def _validate(model: type[_Payload], payload: bytes) -> _Payload:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            Refusal.TOO_LARGE, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        )
    data = _load_json(payload)
    if not isinstance(data, dict):
        raise ContractError(Refusal.SCHEMA, "payload must be a JSON object")
    try:  # the sample lists are checked by the model: no second pass over them
        _check_numbers([v for k, v in data.items() if type(v) is not list or k not in _LISTS])
    except _Refused as e:
        raise ContractError(e.reason, str(e)) from None
    version = data.get("v")
    if type(version) is not int or version != CONTRACT_VERSION:
        raise ContractError(
            Refusal.BAD_VERSION,
            f"unsupported contract version v={_clip(repr(version))} (must be the integer 1)",
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        reason, text = _reason(e), _describe(e)
        try:  # a refused payload may hide a non-finite number the model never reached
            _check_numbers(data)
        except _Refused as refused:
            reason, text = refused.reason, _clip(f"{refused}; {text}", 300, quote=False)
        raise ContractError(reason, text) from None


def encode(message: BaseModel) -> bytes:
    """Serialise a contract message (compact JSON, no nulls)."""
    return message.model_dump_json(exclude_none=True).encode()


class _Refused(ValueError):
    """Raised inside `json.loads` hooks to stop parsing with a reason."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _load_json(payload: bytes) -> object:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ContractError(
            Refusal.NOT_JSON, f"not JSON: not UTF-8 ({e.reason} at byte {e.start})"
        ) from None
    depth = _json_depth(payload)
    if depth > MAX_JSON_DEPTH:
        raise ContractError(
            Refusal.TOO_DEEP, f"JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH}"
        )
    try:
        return json.loads(text, parse_constant=_no_constant)
    except _Refused as e:
        raise ContractError(e.reason, str(e)) from None
    except (ValueError, RecursionError) as e:
        raise ContractError(Refusal.NOT_JSON, f"not JSON: {_clip(str(e))}") from None


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_OPENERS = frozenset(b"[{")


def _json_depth(payload: bytes) -> int:
    """How deep arrays and objects nest; brackets inside strings do not count. Linear time,
    mostly in C: strip escapes, keep only brackets and quotes, drop what lies in strings.
    (UTF-8 never puts an ASCII byte inside a multi-byte character.) Where the JSON is
    malformed the count may be off, but the parser refuses the text at that point anyway."""
    skeleton = _ESCAPE.sub(b"", payload).translate(None, _NOT_STRUCTURE)
    outside = b"".join(skeleton.split(b'"')[::2])  # even pieces lie outside strings
    depth = deepest = 0
    for c in outside:
        if c in _OPENERS:
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


_INT_LIMIT = 10**MAX_INT_DIGITS
_LISTS = frozenset({"acc", "gyr"})


def _check_numbers(value: object) -> None:
    """Refuse a non-finite float or an integer of more than MAX_INT_DIGITS digits anywhere
    in ``value`` (iterative: the depth is bounded, but no recursion is needed)."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is float:
            if not math.isfinite(v):  # type: ignore[arg-type]
                raise _Refused(
                    Refusal.NON_FINITE, f"non-finite number ({v}): NaN, Infinity or beyond ±1.8e308"
                )
        elif t is int:
            if not -_INT_LIMIT < v < _INT_LIMIT:  # type: ignore[operator]
                raise _Refused(
                    Refusal.OUT_OF_RANGE, f"integer with more than {MAX_INT_DIGITS} digits"
                )
        elif t is list:
            stack.extend(v)  # type: ignore[arg-type]
        elif t is dict:
            stack.extend(v.values())  # type: ignore[attr-defined]


def _no_constant(name: str) -> float:
    raise _Refused(Refusal.NON_FINITE, f"{name} is not allowed: numbers must be finite")


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _reason(error: ValidationError) -> Refusal:
    kinds = {err["type"] for err in error.errors()}
    if "finite_number" in kinds:
        return Refusal.NON_FINITE
    if kinds <= _RANGE_ERRORS:
        return Refusal.OUT_OF_RANGE
    return Refusal.SCHEMA


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return _clip("; ".join(parts), 300, quote=False)


def _clip(text: str, limit: int = 80, quote: bool = True) -> str:
    """One short log-safe line: repr escapes newlines and control characters."""
    shown = repr(text) if quote else text.replace("\n", " ").replace("\r", " ")
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def finite_or_none(x: float | None) -> float | None:
    """NaN/inf never travel further than the contract edge."""
    return x if x is not None and math.isfinite(x) else None
