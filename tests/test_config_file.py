"""The TOML config file: each setting has one place (the broker's address in `[mqtt]`, read
by the hub too), and a key no table has is refused naming the closest valid one. (A hub
meant for port 18883 connected to 1883: it ignored `[mqtt]`; `hub_broker_dirr` was
silently left at its default.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carehub.settings import (
    CONFIG_ENV,
    HubSettings,
    MqttSettings,
    ServerSettings,
    SettingsError,
    load,
)
from harness.broker import Mosquitto


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CAREHUB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(CONFIG_ENV, "")  # `load` sets it: gone again after each test


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "carehub.toml"
    path.write_text(text)
    return path


def test_the_hub_reads_its_broker_from_the_mqtt_table(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        '[mqtt]\nhost = "10.0.0.2"\nport = 18883\nbase_topic = "home"\n\n'
        '[hub]\nserver_url = "https://carehub.example.org"\n',
    )
    hub = load(HubSettings, path)
    assert (hub.mqtt_host, hub.mqtt_port, hub.base_topic) == ("10.0.0.2", 18883, "home")
    assert hub.server_url == "https://carehub.example.org"
    sim = load(MqttSettings, path)
    assert (sim.mqtt_host, sim.mqtt_port) == ("10.0.0.2", 18883)


def test_the_environment_still_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(tmp_path, "[mqtt]\nport = 18883\n")
    monkeypatch.setenv("CAREHUB_MQTT_PORT", "1884")
    assert load(HubSettings, path).mqtt_port == 1884


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[hub]\nhub_broker_dirr = "/x"\n',
         "[hub] hub_broker_dirr is not a setting; did you mean hub_broker_dir?"),
        ("[hub]\nmqtt_port = 18883\n", "[hub] mqtt_port belongs in [mqtt] as port"),
        ("[hub]\nport = 18883\n", "[hub] port belongs in [mqtt] or [server]"),
        ('[mqtt]\nmqtt_host = "h"\n', "[mqtt] mqtt_host is called host here"),
        ("[mqt]\nport = 1\n", "[mqt] is not a table; did you mean [mqtt]?"),
        ("[server]\nportt = 1\n", "[server] portt is not a setting; did you mean port?"),
        ("port = 1\n", "port is outside any table: put it in [mqtt] or [server]"),
    ],
)  # fmt: skip
def test_a_key_out_of_place_is_refused_naming_the_right_one(
    tmp_path: Path, text: str, said: str
) -> None:
    path = config(tmp_path, text)
    for cls in (HubSettings, ServerSettings):  # whichever process reads the file
        with pytest.raises(SettingsError) as refused:
            load(cls, path)
        assert str(refused.value) == f"{path}: {said}"


def test_every_setting_of_every_table_is_accepted(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        '[mqtt]\nhost = "h"\nport = 1\nusername = "u"\npassword = "p"\nbase_topic = "b"\n'
        '[hub]\nhub_broker_dir = "/x"\nmqtt_client_id = "c"\nhub_broker_port = 2\n'
        '[server]\nport = 8001\ndatabase_url = "sqlite+aiosqlite:///x.db"\n'
        '[broker]\nbroker_data_dir = "/y"\n',
    )
    assert load(ServerSettings, path).port == 8001
    assert str(load(HubSettings, path).hub_broker_dir) == "/x"


def test_the_command_refuses_a_misspelt_key_in_one_line(tmp_path: Path) -> None:
    path = config(tmp_path, '[hub]\nhub_broker_dirr = "/srv/broker"\n')
    done = subprocess.run(
        [sys.executable, "-m", "cli", "hub", "devices", "--config", str(path)],  # writes nothing
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != CONFIG_ENV},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"carehub: bad setting: {path}: [hub] hub_broker_dirr is not a setting;"
        " did you mean hub_broker_dir?"
    ]


def test_a_misspelt_environment_variable_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAREHUB_MQTT_PROT", "18883")
    monkeypatch.setenv("CAREHUB_TEST_TAG", "x")  # a tool's own variable: not a setting's typo
    with pytest.raises(SettingsError) as refused:
        load(HubSettings)
    assert (
        str(refused.value) == "CAREHUB_MQTT_PROT is not a setting; did you mean CAREHUB_MQTT_PORT?"
    )


@pytest.mark.integration
def test_the_hub_connects_to_the_port_of_its_mqtt_table(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    path = config(
        tmp_path,
        f'[mqtt]\nport = {mosquitto.port}\n\n[hub]\nhub_db = "{tmp_path / "hub.db"}"\n'
        'server_url = "http://127.0.0.1:9"\n',
    )
    log_path = tmp_path / "hub.log"
    env = {**os.environ, "CAREHUB_HUB_TOKEN": "t" * 24}
    with log_path.open("wb") as log:
        hub = subprocess.Popen(
            [sys.executable, "-m", "cli", "hub", "--config", str(path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        wanted = f"connected to broker 127.0.0.1:{mosquitto.port}"
        while wanted not in log_path.read_text():
            assert hub.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
    finally:
        hub.terminate()
        hub.wait(20)
