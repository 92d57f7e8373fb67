"""Fuzzing the MQTT contract: whatever arrives on a device topic, the parser returns a valid
model or raises `ContractError` with a reason code; nothing else escapes, and every model it
accepts holds only finite numbers inside the documented ranges. The pairing and bridge
parsers (`parse_model` over `BRIDGE_MODELS`) are held to the same promise."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carehub.mqtt_contract import (
    BRIDGE_MODELS,
    DEVICE_ID_PATTERN,
    MAX_FRAME_SAMPLES,
    RANGES,
    Ack,
    AckState,
    Bounds,
    BridgeEvent,
    BridgeEventKind,
    BridgeTopic,
    ButtonEvent,
    Channel,
    ContractError,
    DeviceStatus,
    ImuFrame,
    PairAnnounce,
    PairCredential,
    PairingWindow,
    Refusal,
    SealedAccount,
    SelftestMode,
    Topics,
    VitalsReading,
    parse_model,
    parse_payload,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = {
    Channel.BUTTON: ButtonEvent,
    Channel.IMU: ImuFrame,
    Channel.VITALS: VitalsReading,
    Channel.STATUS: DeviceStatus,
    Channel.ACK: Ack,
}
JSON_CHANNELS = list(MODELS)

# ------------------------------------------------------------------ the property


def outcome(channel: Channel, payload: bytes) -> object | ContractError:
    """Parse; a refusal must be a ContractError with a code and a one-line message."""
    try:
        message = parse_payload(channel, payload)
    except ContractError as e:
        assert isinstance(e.reason, Refusal)
        text = str(e)
        assert text and "\n" not in text and len(text) < 400, text
        return e
    assert_sane(channel, message)
    return message


def assert_sane(channel: Channel, message: Any) -> None:
    """Only finite numbers inside the documented ranges, integers as integers."""
    if channel is Channel.AVAILABILITY:
        assert message in ("online", "offline")
        return
    assert type(message.v) is int and message.v == 1
    for name, value in message:
        bounds = RANGES.get(f"{channel.value}.{name}")
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, bool):
            assert name == "replayed"
        elif isinstance(value, int):
            assert name in ("v", "seq", "ts", "t0", "seconds_left") and value >= 0
        elif isinstance(value, float):
            assert bounds is not None, name
            assert_in(value, bounds)
        elif isinstance(value, list):
            assert bounds is not None and 1 <= len(value) <= MAX_FRAME_SAMPLES, name
            for sample in value:
                assert len(sample) == 3
                for x in sample:
                    assert_in(x, bounds)


def assert_in(x: object, bounds: Bounds) -> None:
    assert type(x) is float and math.isfinite(x) and bounds.low <= x <= bounds.high, (x, bounds)


# ------------------------------------------------------------------ inputs

EDGES = sorted(
    {x for b in RANGES.values() for x in (b.low, b.high, b.low - 0.5, b.high + 0.5)}
    | {0, -1, 1e308, -1e308, 5e-324, 2**63, 10**14}
)
numbers = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e400, -1e400, 1e308, 5e-324, 0.0, -0.0, 20, 300, 64, -150, 1000]),
)
json_leaves = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def in_bounds(b: Bounds) -> st.SearchStrategy[float | int]:
    floats = st.floats(min_value=b.low, max_value=b.high, allow_nan=False)
    return st.one_of(floats, st.integers(min_value=math.ceil(b.low), max_value=math.floor(b.high)))


def optional(name: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), st.just({name: None}), strategy.map(lambda x: {name: x}))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


seqs = st.integers(min_value=0, max_value=2**63 - 1)
epoch_ms = st.integers(min_value=0, max_value=10**14 - 1)
head = st.fixed_dictionaries({"v": st.just(1), "seq": seqs})


def samples(b: Bounds, n: int) -> st.SearchStrategy[list[list[float | int]]]:
    return st.lists(st.lists(in_bounds(b), min_size=3, max_size=3), min_size=n, max_size=n)


@st.composite
def imu_frames(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=8))
    frame = draw(head) | {
        "t0": draw(epoch_ms),
        "hz": draw(in_bounds(RANGES["imu.hz"])),
        "acc": draw(samples(RANGES["imu.acc"], n)),
    }
    if draw(st.booleans()):
        frame["gyr"] = draw(samples(RANGES["imu.gyr"], n))
    if draw(st.booleans()):
        frame["replayed"] = draw(st.booleans())
    return frame


VALID: dict[Channel, st.SearchStrategy[dict[str, Any]]] = {
    Channel.BUTTON: merged(
        head,
        st.fixed_dictionaries({"ts": epoch_ms, "action": st.sampled_from(["press", "cancel"])}),
    ),
    Channel.IMU: imu_frames(),
    Channel.VITALS: merged(
        head,
        st.fixed_dictionaries({"ts": epoch_ms}),
        *(
            optional(key.split(".")[1], in_bounds(b))
            for key, b in RANGES.items()
            if key.startswith("vitals.")
        ),
    ),
    Channel.STATUS: merged(
        head,
        st.fixed_dictionaries({"ts": epoch_ms}),
        optional("battery", in_bounds(RANGES["status.battery"])),
        optional("rssi", in_bounds(RANGES["status.rssi"])),
        optional("firmware", st.text(max_size=64)),
    ),
    Channel.ACK: merged(
        st.fixed_dictionaries({"v": st.just(1), "state": st.sampled_from(list(AckState))}),
        optional("seq", seqs),
        optional("alarm_id", st.text(max_size=40)),
        optional("seconds_left", st.integers(min_value=0, max_value=600)),
    ),
}
valid_payloads = st.sampled_from(JSON_CHANNELS).flatmap(lambda c: st.tuples(st.just(c), VALID[c]))


# ------------------------------------------------------------------ tests


@FUZZ
@given(st.sampled_from(list(Channel)), st.binary(max_size=400))
def test_arbitrary_bytes(channel: Channel, data: bytes) -> None:
    outcome(channel, data)


@FUZZ
@given(st.sampled_from(JSON_CHANNELS), json_values)
def test_arbitrary_json(channel: Channel, value: object) -> None:
    outcome(channel, json.dumps(value, allow_nan=True).encode())


@FUZZ
@given(
    st.sampled_from(JSON_CHANNELS),
    st.integers(min_value=0, max_value=30_000),
    st.sampled_from(["[", '{"a":', '[{"b":']),
)
def test_deep_json(channel: Channel, depth: int, opener: str) -> None:
    closer = "".join({"[": "]", "{": "}"}[c] for c in opener if c in "[{")[::-1]
    outcome(channel, (opener * depth + "1" + closer * depth).encode())


@FUZZ
@given(valid_payloads)
def test_valid_payloads_are_accepted(case: tuple[Channel, dict[str, Any]]) -> None:
    channel, data = case
    message = outcome(channel, json.dumps(data).encode())
    assert not isinstance(message, ContractError), (message, data)


@pytest.mark.parametrize("channel", JSON_CHANNELS)
@settings(FUZZ, max_examples=120)
@given(st.data())
def test_mutated_valid_payloads(channel: Channel, data: st.DataObject) -> None:
    payload = data.draw(VALID[channel], label="valid")
    fields = set(payload) | set(MODELS[channel].model_fields)
    key = data.draw(st.sampled_from(sorted(fields)), label="key")
    how = data.draw(st.sampled_from(["number", "json", "delete", "wrap", "overflow"]))
    mutated = dict(payload)
    if how == "number":
        mutated[key] = data.draw(numbers, label="number")
    elif how == "json":
        mutated[key] = data.draw(json_values, label="value")
    elif how == "delete":
        mutated.pop(key, None)
    elif how == "wrap":
        mutated[key] = [mutated.get(key)]
    text = json.dumps(mutated, allow_nan=True)
    if how == "overflow":  # a number written so large it parses to infinity
        text = text.replace(f'"{key}": ', f'"{key}": 1e400, "_": ', 1)
    outcome(channel, text.encode())


@FUZZ
@given(valid_payloads, st.data())
def test_byte_flips_of_valid_payloads(
    case: tuple[Channel, dict[str, Any]], data: st.DataObject
) -> None:
    channel, payload = case
    raw = bytearray(json.dumps(payload).encode())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="flips")):
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="at")
        raw[i] = data.draw(st.integers(min_value=0, max_value=255), label="byte")
    outcome(channel, bytes(raw))


segments = st.text(alphabet=st.sampled_from("ab-_.:/+#x0 é\x00"), max_size=12) | st.sampled_from(
    [c.value for c in Channel]
)


@FUZZ
@given(
    st.sampled_from(["carehub", "home/42/carehub"]),
    st.one_of(
        st.text(max_size=60),
        st.lists(segments, min_size=1, max_size=5).map("/".join),
    ),
    st.booleans(),
)
def test_topics(base: str, rest: str, prefixed: bool) -> None:
    topics = Topics(base)
    topic = f"{base}/{rest}" if prefixed else rest
    try:
        parsed = topics.parse(topic)
    except ContractError as e:
        assert isinstance(e.reason, Refusal) and str(e) and "\n" not in str(e)
        return
    assert DEVICE_ID_PATTERN.match(parsed.device_id)
    assert topics.device(parsed.device_id, parsed.channel) == topic


@FUZZ
@given(st.sampled_from(JSON_CHANNELS), json_values)
def test_json_with_overflowing_numbers(channel: Channel, value: object) -> None:
    """Overflowing literals anywhere, even in fields the contract ignores."""
    text = json.dumps({"v": 1, "seq": 1, "ts": 1, "t0": 1, "x": value}, allow_nan=True)
    for literal in ("Infinity", "NaN"):
        text = text.replace(literal, "1e400")
    outcome(channel, text.encode())


# ------------------------------------------------------------------ pairing and bridge payloads
# Every other parser: the hub parses announcements, its own bridge topics and (firmware)
# credentials with `parse_model`; the same promise holds: a model or a ContractError.

hardware_ids = st.from_regex(DEVICE_ID_PATTERN, fullmatch=True)
b64_keys = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode())
VALID_BRIDGE: dict[type, st.SearchStrategy[dict[str, Any]]] = {
    PairAnnounce: st.fixed_dictionaries(
        {
            "v": st.just(1),
            "hardware_id": hardware_ids,
            "kind": st.sampled_from(["button", "pendant", "wearable"]),
            "public_key": b64_keys,
        },
        optional={"firmware": st.text(max_size=64)},
    ),
    PairCredential: st.fixed_dictionaries(
        {
            "v": st.just(1),
            "hardware_id": hardware_ids,
            "device_id": hardware_ids,
            "hub_key": b64_keys,
            "nonce": st.binary(min_size=12, max_size=12).map(
                lambda b: base64.b64encode(b).decode()
            ),
            "sealed": st.binary(min_size=16, max_size=200).map(
                lambda b: base64.b64encode(b).decode()
            ),
        }
    ),
    SealedAccount: st.fixed_dictionaries(
        {"v": st.just(1), "username": hardware_ids, "password": st.text(min_size=16, max_size=64)}
    ),
    PairingWindow: st.fixed_dictionaries(
        {"v": st.just(1), "open": st.booleans()}, optional={"until_ms": epoch_ms}
    ),
    BridgeEvent: st.fixed_dictionaries(
        {
            "v": st.just(1),
            "event": st.sampled_from(list(BridgeEventKind.__args__)),  # type: ignore[attr-defined]
            "ts": epoch_ms,
        },
        optional={
            "hardware_id": hardware_ids,
            "device_id": hardware_ids,
            "kind": st.sampled_from(["button", "pendant", "wearable"]),
            "detail": st.text(max_size=200),
        },
    ),
    SelftestMode: st.fixed_dictionaries(
        {"v": st.just(1), "active": st.booleans()},
        optional={"until_ms": epoch_ms, "devices": st.lists(hardware_ids, max_size=5)},
    ),
}


def test_every_bridge_model_is_fuzzed() -> None:
    assert set(VALID_BRIDGE) == set(BRIDGE_MODELS)


def bridge_outcome(model: type, payload: bytes) -> object:
    try:
        return parse_model(model, payload)
    except ContractError as e:
        assert isinstance(e.reason, Refusal) and str(e) and "\n" not in str(e)
        return e


@FUZZ
@given(st.sampled_from(BRIDGE_MODELS), st.binary(max_size=400))
def test_bridge_arbitrary_bytes(model: type, data: bytes) -> None:
    bridge_outcome(model, data)


@FUZZ
@given(st.sampled_from(BRIDGE_MODELS), json_values)
def test_bridge_arbitrary_json(model: type, value: object) -> None:
    bridge_outcome(model, json.dumps(value, allow_nan=True).encode())


@FUZZ
@given(st.sampled_from(BRIDGE_MODELS).flatmap(lambda m: st.tuples(st.just(m), VALID_BRIDGE[m])))
def test_bridge_valid_payloads_are_accepted(case: tuple[type, dict[str, Any]]) -> None:
    model, data = case
    parsed = bridge_outcome(model, json.dumps(data).encode())
    assert isinstance(parsed, model), (parsed, data)


@FUZZ
@given(
    st.sampled_from(BRIDGE_MODELS).flatmap(lambda m: st.tuples(st.just(m), VALID_BRIDGE[m])),
    st.data(),
)
def test_bridge_mutated_payloads(case: tuple[type, dict[str, Any]], data: st.DataObject) -> None:
    model, payload = case
    key = data.draw(st.sampled_from(sorted(set(payload) | set(model.model_fields))), label="key")
    mutated = dict(payload)
    how = data.draw(st.sampled_from(["number", "json", "delete", "flip"]))
    if how == "number":
        mutated[key] = data.draw(numbers, label="number")
    elif how == "json":
        mutated[key] = data.draw(json_values, label="value")
    elif how == "delete":
        mutated.pop(key, None)
    raw = bytearray(json.dumps(mutated, allow_nan=True).encode())
    if how == "flip":
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="at")
        raw[i] = data.draw(st.integers(min_value=0, max_value=255), label="byte")
    bridge_outcome(model, bytes(raw))


@FUZZ
@given(st.text(max_size=80))
def test_pairing_and_bridge_topics(rest: str) -> None:
    topics = Topics("carehub")
    topic = f"carehub/{rest}"
    assert topics.parse_bridge(topic) in (None, *BridgeTopic)
    try:
        hardware_id = topics.parse_pair_announce(topic)
    except ContractError as e:
        assert isinstance(e.reason, Refusal)
        return
    assert topics.pair_announce(hardware_id) == topic
