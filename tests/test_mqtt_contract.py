"""The MQTT contract: topics and payload validation (`carehub.mqtt_contract`)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carehub.mqtt_contract import (
    MAX_PAYLOAD_BYTES,
    Ack,
    AckState,
    ButtonEvent,
    Channel,
    ContractError,
    ImuFrame,
    Topics,
    VitalsReading,
    encode,
    parse_payload,
)


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
