"""`carehub broker` keeps its persistence in a stable directory: messages queued for the
hub's persistent session — QoS-1 presses and, with queue_qos0_messages, QoS-0 frames —
survive a broker restart with the same --data-dir."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from harness.broker import Mosquitto, free_port, mosquitto_binary, wait_for_port
from harness.processes import Child

pytestmark = pytest.mark.integration


def start_broker(port: int, data_dir: Path, log: Path) -> Child:
    broker = Child("broker", ["broker", "--port", str(port), "--data-dir", str(data_dir)], {}, log)
    broker.start()
    wait_for_port(port)
    return broker


def mqtt(tool: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [tool, "-h", "127.0.0.1", "-p", str(port), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=20, check=True)


def test_queued_messages_survive_a_broker_restart_with_the_same_data_dir(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
    port, data_dir = free_port(), tmp_path / "broker-data" / "nested"  # created if missing
    session = ["-i", "hub-under-test", "-c", "-q", "1", "-t", "carehub/+/+"]
    broker = start_broker(port, data_dir, tmp_path / "broker.log")
    try:
        mqtt("mosquitto_sub", port, *session, "-E")  # subscribe, then go away
        mqtt("mosquitto_pub", port, "-q", "1", "-t", "carehub/btn-1/button", "-m", "press")
        mqtt("mosquitto_pub", port, "-q", "0", "-t", "carehub/pend-1/imu", "-m", "frame")
        broker.stop()
        assert (data_dir / "mosquitto.db").exists(), broker.log_tail()
        broker = start_broker(port, data_dir, tmp_path / "broker.log")
        received = mqtt("mosquitto_sub", port, *session, "-v", "-C", "2", "-W", "10")
    finally:
        broker.stop()
    assert received.stdout.splitlines() == [
        "carehub/btn-1/button press",
        "carehub/pend-1/imu frame",
    ]


def test_the_data_dir_defaults_to_a_stable_directory_and_is_configurable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from carehub.settings import BrokerSettings, load

    monkeypatch.delenv("CAREHUB_BROKER_DATA_DIR", raising=False)
    monkeypatch.delenv("CAREHUB_CONFIG", raising=False)
    assert load(BrokerSettings).broker_data_dir == Path("carehub-broker")
    monkeypatch.setenv("CAREHUB_BROKER_DATA_DIR", "/var/lib/carehub/broker")
    assert load(BrokerSettings).broker_data_dir == Path("/var/lib/carehub/broker")
    assert load(BrokerSettings, broker_data_dir=Path("x")).broker_data_dir == Path("x")


IDLE_WINDOW_S = 3.0
"""How long the idle broker is watched: more than twice the old one-second autosave, which
rewrote the database every two seconds with nothing to save."""


def test_an_idle_broker_does_not_rewrite_its_database(tmp_path: Path) -> None:
    """The database is rewritten after changes only, never on a timer: an idle hub does not
    wear its SD card. (The wait is an observation window: idleness has no event to wait for.)"""
    with Mosquitto(workdir=tmp_path / "broker") as broker:
        mqtt("mosquitto_sub", broker.port, "-i", "hub", "-c", "-q", "1", "-t", "carehub/+/+", "-E")
        db = broker.workdir / "mosquitto.db"
        assert broker.process is not None
        broker.process.send_signal(signal.SIGUSR1)  # save now, so there is a file to watch
        deadline = time.monotonic() + 10
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        before = db.stat()
        time.sleep(IDLE_WINDOW_S)
        after = db.stat()
    # each save writes mosquitto.db.new and renames it: a new inode
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )


def test_the_hubs_queue_is_bounded_in_bytes_qos0_frames_included(tmp_path: Path) -> None:
    """mosquitto 2.0.11 does not count QoS-0 messages against max_queued_messages: only
    max_queued_bytes keeps a long hub outage from growing the queue without end (the
    frames over it are dropped, the hub gets the first ones)."""
    limit, frame = 64 * 1024, b"f" * 2000
    with Mosquitto(workdir=tmp_path / "broker", queue_bytes=limit) as broker:
        mqtt("mosquitto_sub", broker.port, "-i", "hub", "-c", "-q", "1", "-t", "carehub/+/+", "-E")
        device = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="dev-pend-1")
        device.connect("127.0.0.1", broker.port)
        device.loop_start()
        for _ in range(100):  # 200 KB of frames while the hub is away
            device.publish("carehub/pend-1/imu", frame, qos=0)
        device.publish("elsewhere", b"", qos=1).wait_for_publish(5)  # after the frames
        frames: list[int] = []
        subacked = threading.Event()
        hub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="hub", clean_session=False)
        hub.on_message = lambda client, userdata, m: frames.append(len(m.payload))
        # the broker sends the queued messages right after the CONNACK, before it reads a
        # SUBSCRIBE made then: when its SUBACK comes, every queued frame has come
        hub.on_connect = lambda client, *a: client.subscribe("elsewhere", qos=1)
        hub.on_subscribe = lambda *a: subacked.set()
        hub.connect("127.0.0.1", broker.port)
        hub.loop_start()
        assert subacked.wait(10)
        for c in (hub, device):
            c.disconnect()
            c.loop_stop()
    assert 0 < len(frames) < 100 and sum(frames) <= limit + len(frame)
