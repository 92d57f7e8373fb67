"""`carehub bench voice`: N calls over loopback between a real hub process (its speakerphone
the built-in `clicks` source and a WAV sink) and a console peer, timing mouth to ear both
ways, press to two-way audio, and the hub's extra CPU and memory during a call.

The console side is aiortc here (speaking the console's own HTTP routes with a signed-in
session), not Chromium: the browser's jitter buffer is not in these figures. Each side
sends 100 ms bursts over a faint tone, the hub's at each whole second of the wall clock,
the console's half a second later; a burst's onset at the far end minus its start is one
mouth-to-ear sample (one clock: both ends run on this machine). Setup is the press on the
button (MQTT) to the moment both ends hear the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import typer

from bench.hub_load import _cpu_s, _rss_mb
from bench.rig import AdminApi, make_homes, percentile, rounded, server_child, write_directory
from firmware_sim.button import CallButton
from harness.broker import Mosquitto, free_port
from harness.processes import Child
from harness.sms_sandbox import SmsSandbox

TARGET_M2E_P95_MS = 400.0
TARGET_SETUP_P50_MS = 3000.0
TARGET_RSS_DELTA_MB = 40.0
PASSWORD = "bench voice password"
CONSOLE_OFFSET_S = 0.5


def _console_track() -> Any:
    """The operator's microphone: 440 Hz bursts at each whole second + 0.5 s."""
    import av
    from aiortc.mediastreams import MediaStreamTrack

    from gateway.voice.media import FRAME_SAMPLES, RATE_HZ, clicks, frame_of

    class ConsoleClicks(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._pts = 0
            self._start: float | None = None
            self._start_wall = 0.0

        async def recv(self) -> av.AudioFrame:
            if self._start is None:
                self._start, self._start_wall = time.monotonic(), time.time()
            wait = self._start + self._pts / RATE_HZ - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            start = self._start_wall + (self._pts - FRAME_SAMPLES) / RATE_HZ
            frame = frame_of(clicks(start, FRAME_SAMPLES, 440.0, CONSOLE_OFFSET_S), self._pts)
            self._pts += FRAME_SAMPLES
            return frame

    return ConsoleClicks()


class Ear:
    """What the console hears from the hub: when it first heard anything, and the onsets."""

    def __init__(self) -> None:
        self.first_ms: float | None = None
        self.onsets_ms: list[float] = []
        self._loud = False

    async def listen(self, track: Any) -> None:
        import av

        from gateway.voice.media import ONSET_LEVEL, first_above, rms, to_mono

        resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            now_ms = time.time() * 1000
            samples = to_mono(frame, resampler)
            level = rms(samples)
            if self.first_ms is None and level >= 0.003:  # the hub's microphone is open
                self.first_ms = now_ms
            at = first_above(samples, ONSET_LEVEL)
            if at is not None and not self._loud:
                self.onsets_ms.append(now_ms + at / 48.0)
            self._loud = level >= ONSET_LEVEL / 2


def _delays(onsets_ms: list[float], offset_s: float) -> list[float]:
    """Onset minus the burst's start (bursts begin each whole second + `offset_s`), ms."""
    return [((o / 1000 - offset_s) % 1.0) * 1000 for o in onsets_ms]


def _hub_heard(sink_log: Path, deadline: float) -> dict[str, Any]:
    """The hub's log of what it heard, written when its call ended ({} if none came)."""
    while not sink_log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return dict(json.loads(sink_log.read_text())) if sink_log.exists() else {}


class Console:
    """A dispatcher's signed-in session on the console (the routes the alarm page uses)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10)
        self.csrf = ""

    async def sign_in(self, username: str) -> None:
        page = await self.http.get("/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        await self.http.post(
            "/console/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)},
        )
        queue = await self.http.get("/console/", headers={"Accept": "text/html"})
        found = re.search(r'name="csrf_token" value="([^"]+)"', queue.text)
        assert found is not None, "console sign-in failed"
        self.csrf = found.group(1)

    async def ringing(self, alarm_id: str, deadline: float) -> dict[str, Any] | None:
        while time.monotonic() < deadline:
            call = (await self.http.get(f"/console/alarms/{alarm_id}/call")).json()["call"]
            if call and call["state"] == "ringing" and call["sdp"]:
                return dict(call)
            await asyncio.sleep(0.02)
        return None

    async def post(self, path: str, **fields: str) -> httpx.Response:
        return await self.http.post(path, data={"csrf_token": self.csrf, **fields})


async def _one_call(
    console: Console,
    admin: AdminApi,
    button: CallButton,
    seen: set[str],
    hub_pid: int,
    sink_log: Path,
    talk_s: float,
) -> dict[str, Any]:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    result: dict[str, Any] = {"ok": False}
    await asyncio.to_thread(sink_log.unlink, missing_ok=True)
    press_ms = time.time() * 1000
    button.press("press")
    deadline = time.monotonic() + 15
    alarm_id = None
    while alarm_id is None and time.monotonic() < deadline:
        fresh = [a["id"] for a in await asyncio.to_thread(admin.alarms, 20) if a["id"] not in seen]
        alarm_id = fresh[0] if fresh else None
        await asyncio.sleep(0.02)
    if alarm_id is None:
        return result
    seen.add(alarm_id)
    call = await console.ringing(alarm_id, deadline)
    if call is None:
        return result
    pc = RTCPeerConnection()
    pc.addTrack(_console_track())
    ear = Ear()
    listening: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: listening.append(asyncio.ensure_future(ear.listen(track))))
    await pc.setRemoteDescription(RTCSessionDescription(call["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    answered = await console.post(
        f"/console/calls/{call['id']}/answer", sdp=pc.localDescription.sdp
    )
    rss, cpu_start, t_start = [], _cpu_s(hub_pid), time.monotonic()
    if answered.status_code == 200:
        heard_until = time.monotonic() + 10 + talk_s
        while time.monotonic() < heard_until:
            rss.append(_rss_mb(hub_pid))
            if ear.first_ms and time.time() * 1000 - ear.first_ms >= talk_s * 1000:
                break
            await asyncio.sleep(0.2)
    cpu_pct = 100 * (_cpu_s(hub_pid) - cpu_start) / max(1e-6, time.monotonic() - t_start)
    await console.post(f"/console/calls/{call['id']}/hangup", reason="hangup_console")
    await pc.close()
    for task in listening:
        task.cancel()
    hub = await asyncio.to_thread(_hub_heard, sink_log, time.monotonic() + 10)
    to_console = _delays(ear.onsets_ms, 0.0)
    to_hub = _delays(hub.get("onsets_ms", []), CONSOLE_OFFSET_S)
    firsts = [f for f in (ear.first_ms, hub.get("first_ms")) if f is not None]
    result.update(
        ok=bool(to_console and to_hub and len(firsts) == 2),
        hub_to_console_ms=to_console,
        console_to_hub_ms=to_hub,
        setup_ms=max(firsts) - press_ms if len(firsts) == 2 else None,
        hub_rss_mb=max(rss) if rss else None,
        hub_cpu_pct=cpu_pct,
    )
    return result


async def _calls(
    base_url: str,
    admin: AdminApi,
    broker_port: int,
    topic: str,
    button_id: str,
    hub: Child,
    sink_log: Path,
    calls: int,
    talk_s: float,
) -> list[dict[str, Any]]:
    console = Console(base_url)
    await console.sign_in("bench-dispatcher")
    assert hub.process is not None
    seen = {a["id"] for a in admin.alarms()}
    out = []
    with CallButton(button_id, "127.0.0.1", broker_port, base_topic=topic) as button:
        assert button.connected.wait(10), "the button could not reach the broker"
        for _ in range(calls):
            out.append(
                await _one_call(console, admin, button, seen, hub.process.pid, sink_log, talk_s)
            )
            await asyncio.sleep(1.0)  # the hub closes the call's files
    await console.http.aclose()
    return out


def run_bench(calls: int = 5, talk_s: float = 6.0, idle_s: float = 5.0) -> dict[str, Any]:
    from server.console.console_store import add_account_to

    with (
        tempfile.TemporaryDirectory(prefix="carehub-bench-voice-") as tmp_name,
        Mosquitto() as broker,
        SmsSandbox() as sms,
    ):
        tmp = Path(tmp_name)
        [home] = make_homes(1)
        directory = write_directory(tmp / "directory.json", [home])
        port, admin_token = free_port(), secrets.token_urlsafe(16)
        base_url = f"http://127.0.0.1:{port}"
        server = server_child(tmp, port, admin_token, sms.url, directory)
        server.env["CAREHUB_CONSOLE_INSECURE_COOKIES"] = "true"
        sink = tmp / "hub-heard.wav"
        hub = Child(
            "hub",
            ["hub", "--log-level", "INFO"],
            {
                "CAREHUB_SERVER_URL": base_url,
                "CAREHUB_HUB_TOKEN": home.token,
                "CAREHUB_MQTT_PORT": str(broker.port),
                "CAREHUB_BASE_TOPIC": home.base_topic,
                "CAREHUB_HUB_DB": str(tmp / "hub.db"),
                "CAREHUB_HEARTBEAT_INTERVAL_S": "1",
                "CAREHUB_VOICE_SOURCE": "clicks",
                "CAREHUB_VOICE_SINK": str(sink),
            },
            tmp / "hub.log",
        )
        admin = AdminApi(base_url, admin_token)
        server.start()
        try:
            admin.wait_up(server)
            asyncio.run(
                add_account_to(
                    f"sqlite+aiosqlite:///{tmp / 'server.db'}",
                    "bench-dispatcher",
                    PASSWORD,
                    "dispatcher",
                    None,
                    "en",
                    0,
                )
            )
            hub.start()
            deadline = time.monotonic() + 60
            while not any(h["online"] for h in admin.hubs()):
                assert hub.running and time.monotonic() < deadline, hub.log_tail()
                time.sleep(0.2)
            assert hub.process is not None
            pid = hub.process.pid
            time.sleep(2.0)  # let start-up settle before the idle baseline
            cpu0, t0, idle_rss = _cpu_s(pid), time.monotonic(), []
            while time.monotonic() - t0 < idle_s:
                idle_rss.append(_rss_mb(pid))
                time.sleep(0.2)
            idle_cpu = 100 * (_cpu_s(pid) - cpu0) / (time.monotonic() - t0)
            results = asyncio.run(
                _calls(
                    base_url,
                    admin,
                    broker.port,
                    home.base_topic,
                    home.buttons[0],
                    hub,
                    Path(str(sink) + ".json"),
                    calls,
                    talk_s,
                )
            )
        finally:
            admin.close()
            with contextlib.suppress(Exception):
                hub.stop()
            server.stop()
    ok = [r for r in results if r["ok"]]
    m2e = [d for r in ok for d in r["hub_to_console_ms"] + r["console_to_hub_ms"]]
    setup = [r["setup_ms"] for r in ok if r["setup_ms"] is not None]
    idle_mb = float(np.mean(idle_rss))
    call_mb = max((r["hub_rss_mb"] for r in ok if r["hub_rss_mb"]), default=idle_mb)
    p95 = percentile(m2e, 95)
    setup_p50 = percentile(setup, 50)
    return {
        "calls": calls,
        "calls_ok": len(ok),
        "talk_s": talk_s,
        "mouth_to_ear_ms_p50": rounded(percentile(m2e, 50)),
        "mouth_to_ear_ms_p95": rounded(p95),
        "hub_to_console_ms_p50": rounded(
            percentile([d for r in ok for d in r["hub_to_console_ms"]], 50)
        ),
        "console_to_hub_ms_p50": rounded(
            percentile([d for r in ok for d in r["console_to_hub_ms"]], 50)
        ),
        "mouth_to_ear_samples": len(m2e),
        "setup_ms_p50": rounded(setup_p50),
        "setup_ms_max": rounded(max(setup) if setup else None),
        "hub_idle_rss_mb": round(idle_mb, 1),
        "hub_call_rss_mb": round(call_mb, 1),
        "hub_call_rss_delta_mb": round(call_mb - idle_mb, 1),
        "hub_idle_cpu_pct": round(idle_cpu, 1),
        "hub_call_cpu_pct": rounded(float(np.mean([r["hub_cpu_pct"] for r in ok])) if ok else None),
        "targets": {
            "mouth_to_ear_ms_p95": TARGET_M2E_P95_MS,
            "setup_ms_p50": TARGET_SETUP_P50_MS,
            "hub_call_rss_delta_mb": TARGET_RSS_DELTA_MB,
        },
        "within_targets": bool(
            ok
            and len(ok) == calls
            and p95 is not None
            and p95 <= TARGET_M2E_P95_MS
            and setup_p50 is not None
            and setup_p50 <= TARGET_SETUP_P50_MS
            and call_mb - idle_mb <= TARGET_RSS_DELTA_MB
        ),
    }


def bench_voice(
    calls: int = typer.Option(5, help="Calls to make, one after another."),
    talk_s: float = typer.Option(6.0, help="Seconds of two-way audio per call."),
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
) -> None:
    """Voice calls over loopback: mouth-to-ear and setup times, the hub's CPU and RSS
    during a call beside the idle hub (targets: p95 ≤ 400 ms, setup p50 ≤ 3 s, +40 MB)."""
    r = run_bench(calls, talk_s)
    typer.echo(
        f"{r['calls_ok']}/{r['calls']} calls ok; mouth to ear p50 {r['mouth_to_ear_ms_p50']} ms,"
        f" p95 {r['mouth_to_ear_ms_p95']} ms ({r['mouth_to_ear_samples']} bursts; hub→console"
        f" p50 {r['hub_to_console_ms_p50']} ms, console→hub p50 {r['console_to_hub_ms_p50']} ms)\n"
        f"  press to two-way audio p50 {r['setup_ms_p50']} ms (max {r['setup_ms_max']} ms)\n"
        f"  hub RSS idle {r['hub_idle_rss_mb']} MB, in a call {r['hub_call_rss_mb']} MB"
        f" (+{r['hub_call_rss_delta_mb']} MB); CPU idle {r['hub_idle_cpu_pct']} % of a core,"
        f" in a call {r['hub_call_cpu_pct']} %"
    )
    if json_out:
        typer.echo(json.dumps(r))
