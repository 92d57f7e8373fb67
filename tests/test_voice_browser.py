"""Voice calls end to end (docs/voice.md): Debian's chromium driven by Playwright with a fake
microphone playing 440 Hz, a real hub process whose speakerphone is a file source playing
1 kHz and a WAV sink, a real server, Mosquitto and a simulated button. Each side's recorded
audio must carry the other side's tone; after a hang-up (from either side) the hub sends
no more microphone frames. The second test forces the browser through a local coturn."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from firmware_sim.button import CallButton
from harness.broker import free_port
from harness.coturn import Coturn, turnserver_binary
from tests.test_console_browser import ARGS, CHROMIUM, add_accounts, sign_in

playwright_sync = pytest.importorskip("playwright.sync_api")
pytest.importorskip("aiortc")
pytestmark = pytest.mark.integration

RATE = 48_000
HUB_TONE_HZ = 1000.0
CONSOLE_TONE_HZ = 440.0
TOLERANCE_HZ = 20.0
ANNOUNCEMENT_HZ = 660.0


def write_tone(path: Path, hz: float, seconds: float = 30.0) -> Path:
    t = np.arange(int(RATE * seconds)) / RATE
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


def peaks(path: Path, window_s: float = 0.1) -> list[float]:
    """The FFT peak (Hz) of each `window_s` window of a WAV that is not silent."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    n = int(rate * window_s)
    out = []
    for start in range(0, len(data) - n, n):
        chunk = data[start : start + n]
        if np.sqrt(np.mean(chunk**2)) < 300:  # silence (about -40 dBFS)
            continue
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(n)))
        out.append(float(np.argmax(spectrum) * rate / n))
    return out


def share_near(values: list[float], hz: float) -> float:
    return sum(abs(v - hz) <= TOLERANCE_HZ for v in values) / max(1, len(values))


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone(tmp_path_factory.mktemp("voice") / "console-440.wav", CONSOLE_TONE_HZ)


@pytest.fixture(scope="module")
def browser(fake_mic: Path) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is not installed: run `make test` or apt-get install chromium")
    args = [
        *ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_mic}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield b
        b.close()


@pytest.fixture
def contexts() -> Iterator[list]:
    opened: list = []
    yield opened
    for context in opened:
        context.close()


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def turn(request: pytest.FixtureRequest) -> Iterator[Coturn | None]:
    if not getattr(request, "param", False):
        yield None
        return
    if turnserver_binary() is None:
        pytest.fail("coturn is not installed: run `make test` or apt-get install coturn")
    with Coturn() as relay:
        yield relay


@pytest.fixture
def hub_env(tmp_path: Path, metrics_port: int, turn: Coturn | None) -> dict[str, str]:
    env = {
        "CAREHUB_VOICE_SOURCE": str(write_tone(tmp_path / "hub-1k.wav", HUB_TONE_HZ)),
        "CAREHUB_VOICE_SINK": str(tmp_path / "hub-heard.wav"),
        "CAREHUB_METRICS_PORT": str(metrics_port),
    }
    if turn is not None:
        env["CAREHUB_VOICE_ICE_SERVERS"] = json.dumps([turn.ice_server])
        env["CAREHUB_VOICE_MAX_CALL_S"] = "12"  # this call is ended by the hub
    return env


@pytest.fixture
def server_env(request: pytest.FixtureRequest, turn: Coturn | None) -> dict[str, str]:
    if getattr(request, "param", None) == "no-relay":  # relay only, and no relay to use
        return {"CAREHUB_VOICE_CONSOLE_ICE_POLICY": "relay"}
    if turn is None:
        return {}
    return {
        "CAREHUB_VOICE_ICE_SERVERS": json.dumps([turn.ice_server]),
        "CAREHUB_VOICE_CONSOLE_ICE_POLICY": "relay",
    }


def hub_metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait_until(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def heartbeats_seen(deployment) -> int:  # type: ignore[no-untyped-def]
    return int(deployment.admin.get("/api/v1/admin/hubs").json()[0]["last_seen_ms"] or 0)


def answer_a_press(browser, contexts, deployment):  # type: ignore[no-untyped-def]
    """Press the button, see the queue ring, answer on the alarm page: the call talks."""
    add_accounts(deployment.tmp)
    page = sign_in(browser, contexts, deployment.base_url, "disp")
    page.add_init_script("window.CAREHUB_TAP = true")
    playwright_sync.expect(page.locator("#live")).to_have_text("Live", timeout=5000)
    button = CallButton("btn-1", "127.0.0.1", deployment.broker.port).__enter__()
    assert button.connected.wait(5)
    button.press("press")
    ringing = page.locator("tr[data-ringing] a.answer-call")
    playwright_sync.expect(ringing).to_be_visible(timeout=10_000)  # the alarm rings
    ringing.click()
    panel = page.locator("#call")
    playwright_sync.expect(panel).to_have_attribute("data-state", "ringing", timeout=5000)
    page.click("#call-answer")
    playwright_sync.expect(panel).to_have_attribute("data-state", "talking", timeout=15_000)
    return page, button


def check_two_way_audio(page, deployment, metrics_port: int, button) -> None:  # type: ignore[no-untyped-def]
    # the elder's devices hear that a call is open
    assert button.acks.wait_for(lambda a: a.state == "talking", 10) is not None
    # the microphone opens after the announcement; both sides hear the other for seconds
    wait_until(
        lambda: hub_metric(metrics_port, "carehub_hub_voice_mic_frames_total") >= 300,
        20,
        "six seconds of the hub's microphone",
    )
    wait_until(
        lambda: page.evaluate("(window.carehubPeaks || []).length") >= 30,
        20,
        "six seconds of the browser's analyser",
    )
    heard = page.evaluate("window.carehubPeaks")
    assert share_near(heard, HUB_TONE_HZ) >= 0.8, f"the browser heard {heard}"


def check_mic_closed(deployment, metrics_port: int) -> None:  # type: ignore[no-untyped-def]
    wait_until(
        lambda: hub_metric(metrics_port, "carehub_hub_voice_mic_open") == 0, 10, "mic closed"
    )
    sent = hub_metric(metrics_port, "carehub_hub_voice_mic_frames_total")
    beat = heartbeats_seen(deployment)
    wait_until(lambda: heartbeats_seen(deployment) > beat, 10, "a later heartbeat")
    beat = heartbeats_seen(deployment)
    wait_until(lambda: heartbeats_seen(deployment) > beat, 10, "another heartbeat")
    assert hub_metric(metrics_port, "carehub_hub_voice_mic_frames_total") == sent


def check_hub_heard(deployment) -> None:  # type: ignore[no-untyped-def]
    sink = deployment.tmp / "hub-heard.wav"
    heard = peaks(sink)
    assert heard, "the hub's loudspeaker file is silent"
    # the elder hears the announcement first, then the operator
    assert abs(heard[0] - ANNOUNCEMENT_HZ) <= TOLERANCE_HZ, heard[:10]
    assert share_near(heard, CONSOLE_TONE_HZ) >= 0.7, heard


def call_record(deployment) -> dict:  # type: ignore[no-untyped-def]
    with sqlite3.connect(deployment.tmp / "server.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM voice_calls").fetchall()
        audit = db.execute("SELECT * FROM console_audit WHERE action = 'voice_call'").fetchall()
    assert len(rows) == 1 and len(audit) == 1
    assert audit[0]["username"] == "disp"
    return dict(rows[0])


def test_a_press_rings_the_console_and_both_sides_hear_each_other(
    browser, contexts, deployment, metrics_port
) -> None:  # type: ignore[no-untyped-def]
    page, button = answer_a_press(browser, contexts, deployment)
    try:
        check_two_way_audio(page, deployment, metrics_port, button)
        # an action during the call swaps the screen but not the call (alarm.js)
        page.fill("#note-form input[name=text]", "talking with her now")
        page.click("#note-form button[type=submit]")
        note = page.locator("#timeline .ev-note")
        playwright_sync.expect(note).to_contain_text("talking with her now", timeout=10_000)
        playwright_sync.expect(page.locator("#call")).to_have_attribute("data-state", "talking")
        assert page.evaluate("!document.getElementById('call-audio').paused")
        page.click("#call-hangup")  # the operator hangs up
        playwright_sync.expect(page.locator("#call")).to_have_attribute("data-state", "ended")
        check_mic_closed(deployment, metrics_port)
        check_hub_heard(deployment)
        record = call_record(deployment)
        assert record["state"] == "ended" and record["end_reason"] == "hangup_console"
        assert record["direction"] == "from_home" and record["answered_by"] == "disp"
        # the devices are told the alarm's state again once the call is over
        assert button.acks.wait_for(lambda a: a.state == "dispatched", 10) is not None
    finally:
        button.__exit__(None, None, None)


@pytest.mark.parametrize("turn", [True], indirect=True)
def test_the_same_call_through_a_turn_relay_ended_by_the_hub(
    browser, contexts, deployment, metrics_port, turn
) -> None:  # type: ignore[no-untyped-def]
    page, button = answer_a_press(browser, contexts, deployment)
    try:
        local = page.evaluate(
            """async () => {
              const stats = await window.carehubPc.getStats();
              let pair = null;
              stats.forEach(s => { if (s.type === 'transport') pair = s.selectedCandidatePairId; });
              const local = stats.get(stats.get(pair).localCandidateId);
              return local.candidateType;
            }"""
        )
        assert local == "relay"
        check_two_way_audio(page, deployment, metrics_port, button)
        # the hub ends the call at its maximum length; the console shows why
        panel = page.locator("#call")
        playwright_sync.expect(panel).to_have_attribute("data-state", "ended", timeout=20_000)
        playwright_sync.expect(panel).to_have_attribute("data-reason", "max_length")
        check_mic_closed(deployment, metrics_port)
        check_hub_heard(deployment)
        assert call_record(deployment)["end_reason"] == "max_length"
    finally:
        button.__exit__(None, None, None)


def test_the_operator_calls_the_home_and_the_hub_answers_by_itself(
    browser, contexts, deployment, metrics_port
) -> None:  # type: ignore[no-untyped-def]
    page, button = answer_a_press(browser, contexts, deployment)
    try:
        panel = page.locator("#call")
        page.click("#call-hangup")
        playwright_sync.expect(panel).to_have_attribute("data-state", "ended")
        check_mic_closed(deployment, metrics_port)
        page.click("#call-home")  # the alarm is still open: the home may be called
        playwright_sync.expect(panel).to_have_attribute("data-state", "talking", timeout=15_000)
        wait_until(
            lambda: page.evaluate("(window.carehubPeaks || []).length") >= 30,
            20,
            "six seconds of the browser's analyser",
        )
        heard = page.evaluate("window.carehubPeaks")
        assert share_near(heard, HUB_TONE_HZ) >= 0.8, f"the browser heard {heard}"
        page.click("#call-hangup")
        playwright_sync.expect(panel).to_have_attribute("data-state", "ended")
        check_mic_closed(deployment, metrics_port)
        check_hub_heard(deployment)  # the second call's recording: tone, then the operator
        with sqlite3.connect(deployment.tmp / "server.db") as db:
            rows = db.execute(
                "SELECT direction, started_by, answered_by, end_reason FROM voice_calls"
                " ORDER BY created_at_ms"
            ).fetchall()
            audited = db.execute(
                "SELECT COUNT(*) FROM console_audit WHERE action = 'voice_call'"
            ).fetchone()[0]
        assert rows == [
            ("from_home", None, "disp", "hangup_console"),
            ("to_home", "disp", "disp", "hangup_console"),
        ]
        assert audited == 2
    finally:
        button.__exit__(None, None, None)


@pytest.mark.parametrize("server_env", ["no-relay"], indirect=True)
def test_a_call_that_cannot_connect_offers_the_phone_numbers_within_ten_seconds(
    browser, contexts, deployment, metrics_port
) -> None:  # type: ignore[no-untyped-def]
    add_accounts(deployment.tmp)
    page = sign_in(browser, contexts, deployment.base_url, "disp")
    with CallButton("btn-1", "127.0.0.1", deployment.broker.port) as button:
        assert button.connected.wait(5)
        button.press("press")
        ringing = page.locator("tr[data-ringing] a.answer-call")
        playwright_sync.expect(ringing).to_be_visible(timeout=10_000)
        ringing.click()
        panel = page.locator("#call")
        playwright_sync.expect(panel).to_have_attribute("data-state", "ringing", timeout=5000)
        page.click("#call-answer")
        # no media path: the operator is told within 10 s (plus this check's margin)
        playwright_sync.expect(panel).to_have_attribute("data-state", "ended", timeout=13_000)
        playwright_sync.expect(panel).to_have_attribute("data-reason", "no_connection")
        playwright_sync.expect(page.locator("#call-failed")).to_be_visible()
        playwright_sync.expect(page.locator("#call-failed")).to_contain_text("phone numbers")

    def recorded() -> list[tuple[str, str | None]]:
        with sqlite3.connect(deployment.tmp / "server.db") as db:
            return db.execute("SELECT state, end_reason FROM voice_calls").fetchall()

    # the page tells the operator at once; its hang-up reaches the server just after
    wait_until(lambda: recorded()[0][0] == "ended", 10, "the server to record the end")
    assert recorded() == [("ended", "no_connection")]
    # the hub hears the end and never opened its microphone
    assert hub_metric(metrics_port, "carehub_hub_voice_mic_frames_total") == 0
    assert deployment.alarms()[0]["state"] in ("received", "dispatched")
