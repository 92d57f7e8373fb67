"""`carehub broker` keeps its persistence in a stable directory: messages queued for the
hub's persistent session — QoS-1 presses and, with queue_qos0_messages, QoS-0 frames —
survive a broker restart with the same --data-dir."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.broker import free_port, mosquitto_binary, wait_for_port
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
