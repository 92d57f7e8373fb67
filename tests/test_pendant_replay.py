"""A pendant across a broker outage, with a real mosquitto: the frames it measured while the
broker was down arrive after the restart, marked replayed, in order, before live ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest

from carehub.mqtt_contract import Channel, ImuFrame, Topics, parse_payload
from firmware_sim.pendant import FallPendant
from harness.broker import Mosquitto
from harness.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration
SPEED = 10.0  # ten one-second frames per wall second
FRAME_MS = 1000


class ImuWatcher:
    """A hub stand-in: subscribes to one pendant's imu topic, straight on the broker."""

    def __init__(self, port: int, device_id: str) -> None:
        self.frames: list[ImuFrame] = []
        self.subscriptions = 0
        self.cond = threading.Condition()
        self.topic = Topics().device(device_id, Channel.IMU)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-imu-watch")
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=0)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_subscribe(self, *_: object) -> None:
        with self.cond:
            self.subscriptions += 1
            self.cond.notify_all()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        frame = parse_payload(Channel.IMU, bytes(msg.payload))
        assert isinstance(frame, ImuFrame)
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()

    def wait(self, what: str, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout_s):
                raise TimeoutError(f"{what} within {timeout_s} s; got {len(self.frames)} frames")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def test_frames_measured_while_the_broker_is_down_are_replayed_in_order(
    mosquitto: Mosquitto,
) -> None:
    watcher = ImuWatcher(mosquitto.port, "pend-r")
    try:
        # The pendant reaches the broker through a proxy, so that it comes back only once the
        # watcher has subscribed again (QoS 0 is not kept for anyone).
        with CuttableProxy(mosquitto.port) as proxy:
            pendant = FallPendant("pend-r", "127.0.0.1", proxy.port, time_scale=SPEED)
            with pendant:
                watcher.wait("live frames before the outage", lambda: len(watcher.frames) >= 5)

                proxy.cut()  # the pendant stays out until restore()
                mosquitto.stop()
                wait_until("pendant notices the outage", lambda: not pendant.connected.is_set())
                wait_until("frames buffered", lambda: pendant.backlog.owed >= 8)
                with watcher.cond:
                    before = len(watcher.frames)
                    subscribed = watcher.subscriptions
                mosquitto.start()  # same port
                watcher.wait("watcher subscribed again", lambda: watcher.subscriptions > subscribed)
                owed_at_restart = pendant.backlog.owed
                replayed_earlier = pendant.frames_replayed  # frames made before the first CONNACK
                proxy.restore()

                watcher.wait(
                    "replayed frames, then live ones",
                    lambda: sum(not f.replayed for f in watcher.frames[before:]) >= 3,
                )

    finally:
        watcher.close()
    after = watcher.frames[before:]
    replayed = [f for f in after if f.replayed]
    first_live = next(i for i, f in enumerate(after) if not f.replayed)
    assert len(replayed) >= owed_at_restart >= 8
    assert all(f.replayed for f in after[:first_live]), "every replayed frame before live ones"
    assert not any(f.replayed for f in after[first_live:])
    assert [f.t0 for f in replayed] == sorted({f.t0 for f in replayed}), "in order, once each"
    stream = sorted({f.t0 for f in watcher.frames})
    gaps = [b - a for a, b in zip(stream, stream[1:], strict=False) if b - a != FRAME_MS]
    assert gaps == [], "no frame of the stream is missing"
    assert pendant.frames_replayed - replayed_earlier == len(replayed)
