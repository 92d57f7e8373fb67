"""The limits of the hub's broker, against a real mosquitto running the generated
configuration: a packet larger than the hub would accept is refused by the broker itself
(the client is dropped, nothing is forwarded or retained)."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from carehub.mqtt_contract import MAX_PAYLOAD_BYTES
from carehub.settings import HubSettings
from gateway.broker_auth import hash_password
from gateway.broker_files import load_accounts, reload_broker, write_security
from gateway.pairing import PairedDevice
from tests.test_pairing_session import secured  # noqa: F401
from tests.test_pairing_window import hub_account, retained_under

pytestmark = pytest.mark.integration

HUGE = 1024 * 1024


class Client:
    """A paho client, connected, that notes its messages and whether it was dropped."""

    def __init__(self, s: HubSettings, client_id: str, username: str, password: str) -> None:
        self.messages: list[tuple[str, int]] = []
        self.dropped = threading.Event()
        connected = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.c.username_pw_set(username, password)
        self.c.on_connect = lambda *a: connected.set()
        self.c.on_disconnect = lambda *a: self.dropped.set()
        self.arrived = threading.Event()

        def on_message(client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
            self.messages.append((m.topic, len(m.payload)))
            self.arrived.set()

        self.c.on_message = on_message
        self.c.connect("127.0.0.1", s.mqtt_port)
        self.c.loop_start()
        assert connected.wait(5)

    def subscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic_filter, qos=1)
        assert done.wait(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def with_device(s: HubSettings, device_id: str, password: str) -> None:
    accounts = load_accounts(s.hub_broker_dir)
    assert accounts is not None
    device = PairedDevice(device_id, "button", device_id, hash_password(password), 0)
    write_security(s.hub_broker_dir, accounts.with_device(device), s.base_topic)
    reload_broker(s.hub_broker_dir)


def test_an_oversize_publish_from_a_paired_device_never_reaches_the_hub(
    secured: HubSettings,  # noqa: F811
) -> None:
    """A 1 MiB QoS-1 press from a paired device: the broker drops the device at the
    packet's length and forwards nothing; a payload of the hub's own limit still passes."""
    with_device(secured, "btn-big", "device-password")
    hub = Client(secured, "hub", *hub_account(secured))
    hub.subscribe("carehub/+/+")  # as the hub does
    device = Client(secured, "dev-btn-big", "btn-big", "device-password")
    device.c.publish("carehub/btn-big/button", b"x" * HUGE, qos=1)
    assert device.dropped.wait(10)
    device.c.loop_stop()  # paho would send it again on reconnecting
    device = Client(secured, "dev-btn-big-2", "btn-big", "device-password")
    device.c.publish("carehub/btn-big/button", b"y" * MAX_PAYLOAD_BYTES, qos=1).wait_for_publish(5)
    device.close()
    assert hub.arrived.wait(5)  # the broker forwards in order: the big one would be first
    hub.close()
    assert hub.messages == [("carehub/btn-big/button", MAX_PAYLOAD_BYTES)]


def test_a_large_retained_announcement_is_refused(
    secured: HubSettings,  # noqa: F811
) -> None:
    """Even while a window lets the pairing account announce, a megabyte retained on its
    topic (which the broker would keep, and rewrite at every save) is refused."""
    accounts = load_accounts(secured.hub_broker_dir)
    assert accounts is not None
    write_security(secured.hub_broker_dir, accounts, secured.base_topic, pairing_open=True)
    reload_broker(secured.hub_broker_dir)
    rogue = Client(secured, "btn-fat", "_pair", "carehub-pairing")
    rogue.c.publish("carehub/pair/btn-fat/announce", b"{" * HUGE, qos=1, retain=True)
    assert rogue.dropped.wait(10)
    rogue.c.loop_stop()
    assert retained_under(secured, "carehub/pair/#") == {}
