"""The installer's test call end to end (docs/voice.md, "The installer's test call"): a real
hub process set up for calls (its speakerphone a file playing 1 kHz, a WAV sink), a real
server, Mosquitto, a simulated button and the self-test as `carehub hub selftest` runs it.
The button's test alarm offers a test call; the centre answers it (an aiortc peer speaking
the console's own routes, as `carehub bench voice` does); the self-test's check passes once
the home's devices hear `talking`. The call is stored as a test call of a test alarm."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bench.voice_bench import PASSWORD, Console
from carehub.settings import HubSettings
from firmware_sim.button import CallButton
from gateway.broker_files import write_security
from gateway.pairing import BrokerAccounts, PairedDevice
from gateway.selftest import TEST_CALL
from gateway.selftest_session import run_selftest
from harness.broker import free_port
from server.console.console_store import add_account_to
from tests.conftest import Deployment
from tests.test_voice_browser import HUB_TONE_HZ, hub_metric, wait_until, write_tone

pytest.importorskip("aiortc")
pytestmark = pytest.mark.integration


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def hub_env(tmp_path: Path, metrics_port: int) -> dict[str, str]:
    return {
        "CAREHUB_VOICE_SOURCE": str(write_tone(tmp_path / "hub-1k.wav", HUB_TONE_HZ)),
        "CAREHUB_VOICE_SINK": str(tmp_path / "hub-heard.wav"),
        "CAREHUB_METRICS_PORT": str(metrics_port),
    }


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CAREHUB_CONSOLE_INSECURE_COOKIES": "true"}  # plain http: no `Secure` cookies


async def _answer_the_test_call(console: Console, deadline: float) -> tuple[str, Any]:
    """Answer the first call that rings in the console (the installer phoned the centre):
    the call's id and the console's peer (silent: the operator says nothing)."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    loop = asyncio.get_running_loop()
    call = None
    while call is None:
        assert loop.time() < deadline, "no call rang in the console"
        queue = await console.http.get("/console/", headers={"Accept": "text/html"})
        ringing = [
            part.split('"', 1)[0]
            for part in queue.text.split('href="/console/alarms/')[1:]
            if part.split('"', 1)[0].endswith("#call")
        ]
        for href in ringing:
            call = await console.ringing(href.removesuffix("#call"), deadline)
            break
        await asyncio.sleep(0.05)
    pc = RTCPeerConnection()
    await pc.setRemoteDescription(RTCSessionDescription(call["sdp"], "offer"))
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createAnswer())
    answer = pc.localDescription.sdp
    answered = await console.post(f"/console/calls/{call['id']}/answer", sdp=answer)
    assert answered.status_code == 200, answered.text
    return str(call["id"]), pc


async def test_the_installers_test_call_is_answered_by_the_centre(
    deployment: Deployment, metrics_port: int
) -> None:
    d = deployment
    d.wait_hub_online()
    url = f"sqlite+aiosqlite:///{d.tmp / 'server.db'}"
    await add_account_to(url, "disp", PASSWORD, "dispatcher", None, "en", 0)
    accounts = BrokerAccounts.new().with_device(PairedDevice("btn-1", "button", "btn-1", "", 0))
    write_security(d.tmp / "broker", accounts, "carehub")
    settings = HubSettings(
        hub_broker_dir=d.tmp / "broker",
        mqtt_port=d.broker.port,
        server_url=d.base_url,
        hub_token=d.token,  # type: ignore[arg-type]
        voice_source=str(d.tmp / "hub-1k.wav"),
    )
    said: list[str] = []
    run = asyncio.create_task(run_selftest(settings, 60, say=said.append))
    while not any("self-test started" in line for line in said):
        assert not run.done(), said
        await asyncio.sleep(0.05)
    console = Console(d.base_url)
    await console.sign_in("disp")
    loop = asyncio.get_running_loop()
    with CallButton("btn-1", "127.0.0.1", d.broker.port) as button:
        assert await asyncio.to_thread(button.connected.wait, 5)
        await asyncio.to_thread(button.send_status, 90.0)
        button.press("press")
        call_id, peer = await _answer_the_test_call(console, loop.time() + 20)
        core, posted = await asyncio.wait_for(run, 90)
        assert core.passed, (core.missing(), said, d.hub.log_tail())
        # passed only once the elder heard the announcement and the microphone opened
        assert hub_metric(metrics_port, "carehub_hub_voice_mic_open") == 1, d.hub.log_tail()
        hung_up = await console.post(f"/console/calls/{call_id}/hangup", reason="hangup_console")
        assert hung_up.status_code == 200
        await asyncio.to_thread(
            wait_until,
            lambda: hub_metric(metrics_port, "carehub_hub_voice_mic_open") == 0,
            10,
            "the microphone closed after the centre hung up",
        )
    await peer.close()
    await console.http.aclose()
    [check] = [c for c in core.checks if c.name == TEST_CALL]
    assert check.passed and "talking" in check.detail
    assert "recorded on the server" in posted, posted
    with sqlite3.connect(d.tmp / "server.db") as db:
        [(is_test, direction, answered_by, alarm_test)] = db.execute(
            "SELECT c.is_test, c.direction, c.answered_by, a.is_test FROM voice_calls c"
            " JOIN alarms a ON a.id = c.alarm_id WHERE c.id = ?",
            (call_id,),
        ).fetchall()
    assert (bool(is_test), direction, answered_by, bool(alarm_test)) == (
        True,
        "from_home",
        "disp",
        True,
    )
