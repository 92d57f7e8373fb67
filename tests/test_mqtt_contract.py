"""The MQTT contract: topics and payload validation (`carehub.mqtt_contract`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from carehub.mqtt_contract import (
    MAX_JSON_DEPTH,
    MAX_PAYLOAD_BYTES,
    RANGES,
    Ack,
    AckState,
    ButtonEvent,
    Channel,
    ContractError,
    DeviceStatus,
    ImuFrame,
    Refusal,
    Topics,
    VitalsReading,
    encode,
    parse_payload,
)

REPO = Path(__file__).resolve().parents[1]
VITALS = '{"v": 1, "seq": 9, "ts": 1764000000000, %s}'
IMU = '{"v": 1, "seq": 5, "t0": 1764000000000, "hz": 50, "acc": [[0, 0, 1]], %s}'
STATUS = '{"v": 1, "seq": 3, "ts": 1764000000000, %s}'


def refusal(channel: Channel, payload: str | bytes) -> ContractError:
    """The ContractError that `payload` must raise (fails the test if it parses)."""
    raw = payload.encode() if isinstance(payload, str) else payload
    with pytest.raises(ContractError) as info:
        parse_payload(channel, raw)
    assert "\n" not in str(info.value) and str(info.value), "one non-empty log line"
    return info.value


def test_topics_build_and_parse_round_trip() -> None:
    topics = Topics("carehub")
    topic = topics.device("btn-1", Channel.BUTTON)
    assert topic == "carehub/btn-1/button"
    parsed = topics.parse(topic)
    assert (parsed.device_id, parsed.channel) == ("btn-1", Channel.BUTTON)


def test_custom_base_topic_with_levels() -> None:
    topics = Topics("home/42/carehub")
    assert topics.parse("home/42/carehub/p-1/imu").channel is Channel.IMU
    assert ("home/42/carehub/+/button", 1) in topics.hub_subscriptions()
    with pytest.raises(ContractError):
        topics.parse("carehub/p-1/imu")


@pytest.mark.parametrize(
    "topic", ["carehub/x", "carehub/a/b/button", "other/x/button", "carehub/x/reboot"]
)
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(ContractError):
        Topics().parse(topic)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("carehub/x", Refusal.BAD_TOPIC),
        ("other/x/button", Refusal.BAD_TOPIC),
        ("carehub/x/reboot", Refusal.UNKNOWN_CHANNEL),
        ("carehub/-x/button", Refusal.BAD_DEVICE_ID),
        ("carehub/" + "x" * 65 + "/button", Refusal.BAD_DEVICE_ID),
    ],
)
def test_topic_refusals_carry_a_reason_code(topic: str, reason: Refusal) -> None:
    with pytest.raises(ContractError) as info:
        Topics().parse(topic)
    assert info.value.reason is reason


def test_button_example_from_the_docs_parses() -> None:
    event = parse_payload(
        Channel.BUTTON, b'{"v": 1, "seq": 17, "ts": 1764000000000, "action": "press"}'
    )
    assert event == ButtonEvent(v=1, seq=17, ts=1764000000000, action="press")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"seq": 1, "ts": 1, "action": "press"}', "version"),
        (b'{"v": 1, "seq": -1, "ts": 1, "action": "press"}', "seq"),
        (b'{"v": 1, "seq": 1, "ts": 1, "action": "hold"}', "action"),
        (b'{"v": 1, "seq": 1, "ts": NaN, "action": "press"}', "NaN"),
        (b"\xff\xfe", "not JSON"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "exceeds"),
    ],
)
def test_bad_button_payloads_say_why(payload: bytes, fragment: str) -> None:
    with pytest.raises(ContractError, match=fragment):
        parse_payload(Channel.BUTTON, payload)


def test_imu_frame_needs_three_axes_and_matching_gyro() -> None:
    ok = parse_payload(
        Channel.IMU,
        b'{"v":1,"seq":5,"t0":1,"hz":50,"acc":[[0,0,1],[0,0,1]],"gyr":[[1,2,3],[1,2,3]]}',
    )
    assert isinstance(ok, ImuFrame) and len(ok.acc) == 2
    with pytest.raises(ContractError, match="gyr"):
        parse_payload(Channel.IMU, b'{"v":1,"seq":5,"t0":1,"hz":50,"acc":[[0,0,1]],"gyr":[]}')


def test_vitals_fields_are_optional() -> None:
    reading = parse_payload(Channel.VITALS, b'{"v":1,"seq":9,"ts":5,"hr":72}')
    assert isinstance(reading, VitalsReading) and reading.spo2 is None


def test_availability_is_plain_text() -> None:
    assert parse_payload(Channel.AVAILABILITY, b"online") == "online"
    with pytest.raises(ContractError):
        parse_payload(Channel.AVAILABILITY, b"maybe")


def test_ack_encoding_is_compact_and_round_trips() -> None:
    ack = Ack(v=1, seq=17, alarm_id="a1", state=AckState.RECEIVED)
    raw = encode(ack)
    assert json.loads(raw) == {"v": 1, "seq": 17, "alarm_id": "a1", "state": "received"}
    assert parse_payload(Channel.ACK, raw) == ack


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_contract_errors(data: bytes) -> None:
    for channel in (
        Channel.BUTTON,
        Channel.IMU,
        Channel.VITALS,
        Channel.STATUS,
        Channel.AVAILABILITY,
    ):
        try:
            parse_payload(channel, data)
        except ContractError:
            pass


# ------------------------------------------------------------ the holes of the old parser


@pytest.mark.parametrize(
    ("channel", "payload", "reason"),
    [
        # 1e400 overflows to infinity; parse_constant alone saw only the NaN/Infinity literals
        (Channel.VITALS, VITALS % '"hr": 1e400', Refusal.NON_FINITE),
        (Channel.VITALS, VITALS % '"temp": -1e400', Refusal.NON_FINITE),
        (Channel.IMU, IMU % '"gyr": [[0, 1e999, 0]]', Refusal.NON_FINITE),
        (Channel.VITALS, VITALS % '"extra": {"deep": [1e400]}', Refusal.NON_FINITE),
        (Channel.VITALS, VITALS % '"hr": Infinity', Refusal.NON_FINITE),
        (Channel.VITALS, VITALS % '"hr": -Infinity', Refusal.NON_FINITE),
        (Channel.VITALS, VITALS % '"hr": -5', Refusal.OUT_OF_RANGE),
        (Channel.VITALS, VITALS % '"spo2": 500', Refusal.OUT_OF_RANGE),
        (Channel.VITALS, VITALS % '"temp": -273', Refusal.OUT_OF_RANGE),
        (Channel.VITALS, VITALS % '"rr": 81', Refusal.OUT_OF_RANGE),
        (Channel.VITALS, VITALS % '"sbp": 20', Refusal.OUT_OF_RANGE),
        (Channel.VITALS, VITALS % '"quality": 1.5', Refusal.OUT_OF_RANGE),
        (Channel.VITALS, VITALS % '"hr": "72"', Refusal.SCHEMA),
        (Channel.VITALS, VITALS % '"hr": true', Refusal.SCHEMA),
        (Channel.VITALS, VITALS % '"x": 123456789012345678901234567890', Refusal.OUT_OF_RANGE),
        (Channel.IMU, IMU % '"gyr": [[0, 4001, 0]]', Refusal.OUT_OF_RANGE),
        (Channel.IMU, IMU.replace("[[0, 0, 1]]", "[[0, 0, 65]]") % '"x": 0', Refusal.OUT_OF_RANGE),
        (Channel.IMU, IMU.replace("[[0, 0, 1]]", "[]") % '"x": 0', Refusal.SCHEMA),
        (Channel.IMU, IMU.replace('"hz": 50', '"hz": 2') % '"x": 0', Refusal.OUT_OF_RANGE),
        (Channel.IMU, IMU.replace('"hz": 50', '"hz": true') % '"x": 0', Refusal.SCHEMA),
        (Channel.IMU, IMU % '"replayed": "yes"', Refusal.SCHEMA),
        (Channel.IMU, IMU % '"replayed": 1', Refusal.SCHEMA),
        (Channel.STATUS, STATUS % '"battery": 101', Refusal.OUT_OF_RANGE),
        (Channel.STATUS, STATUS % '"rssi": 3', Refusal.OUT_OF_RANGE),
        (Channel.STATUS, STATUS % '"firmware": 142', Refusal.SCHEMA),
        (Channel.BUTTON, '{"v": 1, "seq": "7", "ts": 1, "action": "press"}', Refusal.SCHEMA),
        (Channel.BUTTON, '{"v": 1, "seq": true, "ts": 1, "action": "press"}', Refusal.SCHEMA),
        (Channel.BUTTON, '{"v": 1, "seq": 7.0, "ts": 1, "action": "press"}', Refusal.SCHEMA),
        (Channel.BUTTON, '{"v": 1, "seq": 7, "ts": 1.5, "action": "press"}', Refusal.SCHEMA),
        (Channel.BUTTON, '{"v": 1.0, "seq": 7, "ts": 1, "action": "press"}', Refusal.BAD_VERSION),
        (Channel.BUTTON, '{"v": true, "seq": 7, "ts": 1, "action": "press"}', Refusal.BAD_VERSION),
        (Channel.BUTTON, '{"v": "1", "seq": 7, "ts": 1, "action": "press"}', Refusal.BAD_VERSION),
        (Channel.BUTTON, '{"v": 2, "seq": 7, "ts": 1, "action": "press"}', Refusal.BAD_VERSION),
        (Channel.ACK, '{"v": 1, "state": "received", "seconds_left": 2.5}', Refusal.SCHEMA),
    ],
)
def test_strict_types_finite_numbers_and_ranges(
    channel: Channel, payload: str, reason: Refusal
) -> None:
    assert refusal(channel, payload).reason is reason


def test_deep_nesting_is_refused_in_one_line_not_a_recursion_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert refusal(Channel.VITALS, deep[:MAX_PAYLOAD_BYTES]).reason is Refusal.TOO_DEEP
    nested = VITALS % ('"x": ' + "[" * (MAX_JSON_DEPTH) + "]" * MAX_JSON_DEPTH)
    assert refusal(Channel.VITALS, nested).reason is Refusal.TOO_DEEP
    ok = VITALS % ('"x": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1))
    assert isinstance(parse_payload(Channel.VITALS, ok.encode()), VitalsReading)


def test_brackets_and_escapes_inside_strings_do_not_count_as_depth() -> None:
    text = json.dumps({"v": 1, "seq": 3, "ts": 1, "firmware": '[[[[[[[[[["\\{{{{{{{{{{'})
    assert isinstance(parse_payload(Channel.STATUS, text.encode()), DeviceStatus)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", Refusal.NOT_JSON),
        (b"\xff\xfe", Refusal.NOT_JSON),
        (b'{"v": 1, "seq": 1', Refusal.NOT_JSON),
        (b"[1, 2]", Refusal.SCHEMA),
        (b'{"seq": 1, "ts": 1, "action": "press"}', Refusal.BAD_VERSION),
        (b'{"v": 1, "seq": -1, "ts": 1, "action": "press"}', Refusal.OUT_OF_RANGE),
        (b'{"v": 1, "seq": 1, "ts": 1, "action": "hold"}', Refusal.SCHEMA),
        (b'{"v": 1, "seq": 1, "ts": NaN, "action": "press"}', Refusal.NON_FINITE),
        (b" " * (MAX_PAYLOAD_BYTES + 1), Refusal.TOO_LARGE),
    ],
)
def test_every_refusal_has_a_reason_code(payload: bytes, reason: Refusal) -> None:
    assert refusal(Channel.BUTTON, payload).reason is reason


def test_a_hypothermic_elder_and_a_wearable_off_the_wrist_still_pass() -> None:
    cold = parse_payload(Channel.VITALS, (VITALS % '"temp": 30.0, "hr": 38').encode())
    off = parse_payload(Channel.VITALS, (VITALS % '"temp": 21.5, "quality": 0').encode())
    assert isinstance(cold, VitalsReading) and cold.temp == 30.0
    assert isinstance(off, VitalsReading) and off.temp == 21.5


def test_integers_are_accepted_where_floats_go_and_stay_numbers() -> None:
    reading = parse_payload(Channel.VITALS, (VITALS % '"hr": 72, "spo2": 97').encode())
    assert isinstance(reading, VitalsReading) and reading.hr == 72.0


def test_ack_without_alarm_round_trips() -> None:
    """A cancel that found nothing to cancel: encode drops the null alarm_id, and the
    device must still be able to read the ack (it could not before)."""
    ack = Ack(v=1, seq=4, alarm_id=None, state=AckState.CANCELLED)
    assert parse_payload(Channel.ACK, encode(ack)) == ack


def test_replayed_defaults_to_false_and_round_trips() -> None:
    frame = parse_payload(Channel.IMU, (IMU % '"x": 0').encode())
    assert isinstance(frame, ImuFrame) and frame.replayed is False
    marked = frame.model_copy(update={"replayed": True})
    assert parse_payload(Channel.IMU, encode(marked)) == marked


def test_docs_explain_every_ack_state() -> None:
    doc = (REPO / "docs" / "mqtt.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    for state in AckState:
        assert any(row.startswith(f"| `{state.value}` |") for row in rows), state


def test_docs_state_every_range_limit_and_reason_code() -> None:
    import carehub.mqtt_contract as contract

    doc = (REPO / "docs" / "mqtt.md").read_text()
    for path, bounds in RANGES.items():
        name = next(n for n, v in vars(contract).items() if v is bounds and n.endswith("_RANGE"))
        row = next((line for line in doc.splitlines() if f"`{name}`" in line), None)
        assert row is not None, f"docs/mqtt.md has no row for {name} ({path})"
        for limit in (bounds.low, bounds.high):
            assert re.search(rf"(?<![\d.]){re.escape(f'{limit:g}')}(?![\d.])", row), (name, limit)
    for reason in Refusal:
        assert f"`{reason.value}`" in doc, reason
    for name in (
        "MAX_PAYLOAD_BYTES",
        "MAX_JSON_DEPTH",
        "MAX_INT_DIGITS",
        "MAX_FRAME_SAMPLES",
        "CLOCK_AHEAD_TOLERANCE_MS",
        "CLOCK_BEHIND_TOLERANCE_MS",
        "REPLAY_BUFFER_S",
        "REPLAY_MAX_AGE_MS",
    ):
        assert f"`{name}`" in doc, name
    assert "## Device clocks" in doc


def test_ack_responder_is_optional_and_bounded() -> None:
    from carehub.mqtt_contract import Ack, AckState, encode

    plain = Ack(v=1, seq=1, alarm_id="a", state=AckState.DISPATCHED)
    assert b"responder" not in encode(plain)  # older devices see the same bytes as before
    named = Ack.model_validate(
        {"v": 1, "alarm_id": "a", "state": "accepted", "responder": "王医生"}
    )
    assert named.responder == "王医生"
    with pytest.raises(ValidationError):
        Ack.model_validate({"v": 1, "state": "accepted", "responder": "x" * 65})
    with pytest.raises(ValidationError):
        Ack.model_validate({"v": 1, "state": "accepted", "responder": 7})
