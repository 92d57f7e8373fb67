"""The hub's voice agent with real aiortc on loopback against a console peer that never hangs
up by itself: the hub closes its own microphone and connection when it ends a call; it
refuses the centre's call for an alarm that is not open; a second alarm during a call
starts no second call."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiortc")

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402

from bench.voice_bench import _console_track  # noqa: E402
from carehub import api_contract as api  # noqa: E402
from carehub.clock import SystemClock  # noqa: E402
from carehub.settings import HubSettings  # noqa: E402
from gateway.voice.agent import VoiceAgent  # noqa: E402


class FakeLink:
    """The server's side of signalling, recorded."""

    def __init__(self) -> None:
        self.offers: list[api.CallOffer] = []
        self.answers: list[tuple[str, str]] = []
        self.hangups: list[tuple[str, api.CallEndReason]] = []

    async def calls(self, seen: str, wait_s: float) -> api.CallList:
        await asyncio.sleep(wait_s)
        return api.CallList(calls=[], digest=seen)

    async def offer_call(self, offer: api.CallOffer) -> None:
        self.offers.append(offer)

    async def answer_call(self, call_id: str, answer: api.CallAnswer) -> None:
        self.answers.append((call_id, answer.sdp))

    async def hangup_call(self, call_id: str, hangup: api.CallHangup) -> None:
        self.hangups.append((call_id, hangup.reason))


def tone_file(path: Path, hz: float = 1000.0) -> Path:
    t = np.arange(48_000 * 2) / 48_000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes((0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes())
    return path


async def until(condition, timeout_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def agent_for(
    tmp_path: Path, alarm_open: bool = True, **settings: object
) -> tuple[VoiceAgent, FakeLink, list]:
    link = FakeLink()
    talking: list[tuple[str, bool]] = []

    async def is_open(alarm_id: str) -> bool:
        return alarm_open

    async def tell(alarm_id: str, on: bool) -> None:
        talking.append((alarm_id, on))

    hub = HubSettings(
        voice_source=str(tone_file(tmp_path / "mic.wav")),
        voice_sink=str(tmp_path / "heard.wav"),
        **settings,  # type: ignore[arg-type]
    )
    return VoiceAgent(hub, link, SystemClock(), is_open, tell), link, talking


async def test_the_hub_closes_its_own_microphone_when_it_ends_a_call(tmp_path: Path) -> None:
    agent, link, talking = agent_for(tmp_path, voice_max_call_s=3.0)
    ticking = asyncio.ensure_future(agent.tick_forever())
    console = RTCPeerConnection()
    try:
        await agent.offer("a-1")
        agent.start_call("a-2")  # a second alarm during the call joins it
        [offer] = link.offers
        console.addTrack(_console_track())
        await console.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await console.setLocalDescription(await console.createAnswer())
        view = api.CallView(
            call_id=offer.call_id,
            alarm_id="a-1",
            direction=api.CallDirection.FROM_HOME,
            state=api.CallState.ANSWERED,
            sdp=console.localDescription.sdp,
        )
        await agent.apply(api.CallList(calls=[view], digest="d1"))
        await until(lambda: agent.mic is not None and agent.mic.open)
        assert talking == [("a-1", True)]
        mic, hub_pc = agent.mic, agent._pc  # noqa: SLF001
        assert mic is not None and hub_pc is not None
        await until(lambda: bool(link.hangups))  # the hub ended the call and told the server
        # the console never hung up: the hub itself stopped sending and closed
        assert link.hangups == [(offer.call_id, api.CallEndReason.MAX_LENGTH)]
        assert not mic.open and mic.readyState == "ended"
        assert hub_pc.connectionState == "closed"
        assert talking == [("a-1", True), ("a-1", False)]
        assert len(link.offers) == 1
    finally:
        ticking.cancel()
        await console.close()
        await agent.aclose()


async def test_the_centres_call_is_refused_without_an_open_alarm(tmp_path: Path) -> None:
    agent, link, talking = agent_for(tmp_path, alarm_open=False)
    console = RTCPeerConnection()
    try:
        console.addTrack(_console_track())
        await console.setLocalDescription(await console.createOffer())
        view = api.CallView(
            call_id="c-9",
            alarm_id="a-closed",
            direction=api.CallDirection.TO_HOME,
            state=api.CallState.RINGING,
            sdp=console.localDescription.sdp,
        )
        await agent.apply(api.CallList(calls=[view], digest="d1"))
        assert link.hangups == [("c-9", api.CallEndReason.REFUSED)]
        assert link.answers == [] and agent.mic is None and talking == []
    finally:
        await console.close()
        await agent.aclose()


async def test_a_call_the_hub_no_longer_has_is_ended(tmp_path: Path) -> None:
    """After a restart the server may still list the hub's old call as ringing or answered:
    the hub ends it rather than leave a console ringing or talking into nothing."""
    agent, link, _ = agent_for(tmp_path)
    old = [
        api.CallView(
            call_id="c-old",
            alarm_id="a-1",
            direction=api.CallDirection.FROM_HOME,
            state=api.CallState.RINGING,
        ),
        api.CallView(
            call_id="c-talk",
            alarm_id="a-1",
            direction=api.CallDirection.TO_HOME,
            state=api.CallState.ANSWERED,
            sdp="v=0",
        ),
        api.CallView(
            call_id="c-done",
            alarm_id="a-1",
            direction=api.CallDirection.FROM_HOME,
            state=api.CallState.ENDED,
            end_reason=api.CallEndReason.HANGUP_CONSOLE,
        ),
    ]
    try:
        await agent.apply(api.CallList(calls=old, digest="d1"))
        assert link.hangups == [
            ("c-old", api.CallEndReason.REPLACED),
            ("c-talk", api.CallEndReason.REPLACED),
        ]
        assert agent.mic is None
    finally:
        await agent.aclose()


async def test_the_elder_hangs_up_with_the_cancel_button(tmp_path: Path) -> None:
    """`Hub._cancel` calls `hang_up` while a call runs: the centre hears `hangup_home`."""
    agent, link, _ = agent_for(tmp_path)
    try:
        await agent.offer("a-1")
        assert agent.busy
        await agent.hang_up()
        assert not agent.busy
        assert link.hangups == [(link.offers[0].call_id, api.CallEndReason.HANGUP_HOME)]
    finally:
        await agent.aclose()


async def test_a_hang_up_the_server_missed_is_sent_again(tmp_path: Path) -> None:
    """The hub ended its call while the uplink was down: when the server still lists it as
    ringing, the hub tells it again, so no console rings on."""
    agent, link, _ = agent_for(tmp_path, voice_ring_s=0.01)
    try:
        await agent.offer("a-1")
        call_id = link.offers[0].call_id
        await until(lambda: agent.clock.monotonic() - agent.call.since_s > 0.01)  # type: ignore[union-attr]
        agent._alarm_checked_s = agent.clock.monotonic()  # noqa: SLF001
        await agent.tick()  # rang out: ends on the hub
        link.hangups.clear()  # as if that hang-up had been lost
        view = api.CallView(
            call_id=call_id,
            alarm_id="a-1",
            direction=api.CallDirection.FROM_HOME,
            state=api.CallState.RINGING,
        )
        await agent.apply(api.CallList(calls=[view], digest="d1"))
        assert link.hangups == [(call_id, api.CallEndReason.NO_ANSWER)]
    finally:
        await agent.aclose()
