"""The hub's voice agent (the aiortc shell around `gateway.voice.call`): offers a call for
an alarm, answers the centre's calls by itself, plays the announcement, opens and closes
the microphone as the core decides, and follows the server's call list.

Signalling goes over the hub's authenticated HTTP link only (`carehub.api_contract`,
``CALLS_PATH``), non-trickle: aiortc gathers every ICE candidate before the SDP leaves.
Media flows peer to peer, or through the centre's TURN relay; never through the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import av
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from carehub import api_contract as api
from carehub.api_contract import CallDirection, CallEndReason, CallState
from carehub.clock import Clock
from carehub.settings import HubSettings
from gateway import metrics
from gateway.voice.call import Call, CallLimits, Phase
from gateway.voice.media import Microphone, Speaker, announcement, check_device, rms, to_mono

log = logging.getLogger(__name__)

TICK_S = 0.05
ALARM_CHECK_S = 1.0


class VoiceLink(Protocol):
    """The call endpoints of the hub's uplink (`gateway.uplink.Uplink`)."""

    async def calls(self, seen: str, wait_s: float) -> api.CallList: ...
    async def offer_call(self, offer: api.CallOffer) -> None: ...
    async def answer_call(self, call_id: str, answer: api.CallAnswer) -> None: ...
    async def hangup_call(self, call_id: str, hangup: api.CallHangup) -> None: ...


AlarmOpen = Callable[[str], Awaitable[bool]]
Talking = Callable[[str, bool], Awaitable[None]]


def limits_of(settings: HubSettings) -> CallLimits:
    return CallLimits(
        ring_s=settings.voice_ring_s,
        connect_s=settings.voice_connect_s,
        max_s=settings.voice_max_call_s,
        silence_s=settings.voice_silence_end_s,
    )


def speakerphone_status(settings: HubSettings) -> Literal["ok", "missing"]:
    """`ok` or `missing` (logged once with why), for the heartbeat."""
    assert settings.voice_source is not None
    try:
        check_device(settings.voice_source)
    except Exception as e:
        log.error("speakerphone missing: %s; alarms are raised as usual, without calls", e)
        return "missing"
    return "ok"


class VoiceAgent:
    """At most one call at a time; a second alarm during a call joins it (no new call)."""

    def __init__(
        self,
        settings: HubSettings,
        link: VoiceLink,
        clock: Clock,
        alarm_open: AlarmOpen,
        talking: Talking,
    ) -> None:
        assert settings.voice_source is not None
        self.settings = settings
        self.source = settings.voice_source
        self.sink = settings.voice_sink or self.source
        self.link = link
        self.clock = clock
        self.alarm_open = alarm_open
        self.talking = talking
        self.limits = limits_of(settings)
        self.call: Call | None = None
        self.mic: Microphone | None = None
        self._pc: RTCPeerConnection | None = None
        self._speaker: Speaker | None = None
        self._told_talking = False
        """The home's devices were told `talking` for this call (its microphone opened)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._alarm_ok = True
        self._alarm_checked_s = float("-inf")
        self._wake = asyncio.Event()
        self.status = speakerphone_status(settings)

    @property
    def busy(self) -> bool:
        return self.call is not None and not self.call.ended

    # ------------------------------------------------------------ starting calls

    def _config(self) -> RTCConfiguration:
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                for s in self.settings.voice_ice_servers
            ]
        )

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self._config())
        self.mic = Microphone(self.source)
        pc.addTrack(self.mic)

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._listen(pc, track))

        @pc.on("connectionstatechange")
        async def _state() -> None:
            await self._on_state(pc)

        self._pc = pc
        return pc

    def start_call(self, alarm_id: str, test: bool = False) -> None:
        """Offer a call for this alarm in the background (the outbox does not wait);
        `test`: the installer's test call."""
        self._spawn(self.offer(alarm_id, test))

    async def offer(self, alarm_id: str, test: bool = False) -> None:
        """Offer a call to the centre for this alarm (after a press or a fall)."""
        if self.status != "ok":
            return
        if self.busy:
            log.info("alarm %s: a call is running, the alarm joins it", alarm_id)
            return
        call_id = uuid.uuid4().hex
        self.call = Call(
            call_id, alarm_id, CallDirection.FROM_HOME, self.limits, self.clock.monotonic(), test
        )
        self._alarm_ok, self._alarm_checked_s = True, self.clock.monotonic()
        pc = self._new_pc()
        await pc.setLocalDescription(await pc.createOffer())  # gathers every candidate
        try:
            await self.link.offer_call(
                api.CallOffer(
                    call_id=call_id, alarm_id=alarm_id, sdp=pc.localDescription.sdp, test=test
                )
            )
        except Exception as e:  # the alarm itself is safe: it was uploaded before
            log.warning("call %s for alarm %s could not be offered: %s", call_id, alarm_id, e)
            await self._finish(CallEndReason.NO_CONNECTION, tell_server=False)
            return
        metrics.VOICE_CALLS.labels(CallDirection.FROM_HOME.value).inc()
        log.info("call %s offered for alarm %s", call_id, alarm_id)

    async def _answer(self, view: api.CallView) -> None:
        """The centre calls the home: answer by ourselves, if the microphone may open."""
        assert view.sdp is not None
        now = self.clock.monotonic()
        if self.status != "ok" or self.busy:
            reason = CallEndReason.HUB_BUSY if self.busy else CallEndReason.NO_CONNECTION
            await self._tell_hangup(view.call_id, reason)
            return
        if not (view.test or await self.alarm_open(view.alarm_id)):
            log.warning(
                "call %s refused: alarm %s is not open on this hub", view.call_id, view.alarm_id
            )
            await self._tell_hangup(view.call_id, CallEndReason.REFUSED)
            return
        self.call = Call(
            view.call_id, view.alarm_id, CallDirection.TO_HOME, self.limits, now, view.test
        )
        self._alarm_ok, self._alarm_checked_s = True, now
        pc = self._new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(view.sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        try:
            await self.link.answer_call(view.call_id, api.CallAnswer(sdp=pc.localDescription.sdp))
        except Exception as e:
            log.warning("call %s: answer not delivered: %s", view.call_id, e)
            await self._finish(CallEndReason.NO_CONNECTION, tell_server=False)
            return
        metrics.VOICE_CALLS.labels(CallDirection.TO_HOME.value).inc()
        log.info("call %s from the centre answered (alarm %s)", view.call_id, view.alarm_id)

    # ------------------------------------------------------------ the server's call list

    async def apply(self, calls: api.CallList) -> None:
        for view in calls.calls:
            mine = self.call is not None and self.call.call_id == view.call_id
            if mine and self.call is not None and self.call.ended:
                if view.state is not CallState.ENDED and self.call.end_reason is not None:
                    # our hang-up never arrived (the uplink was down): say it again
                    await self._tell_hangup(view.call_id, self.call.end_reason)
            elif mine and self.call is not None:
                if view.state is CallState.ENDED:
                    log.info("call %s ended by the centre (%s)", view.call_id, view.end_reason)
                    await self._finish(view.end_reason or CallEndReason.HANGUP_CONSOLE, False)
                elif (
                    view.state is CallState.ANSWERED
                    and view.sdp
                    and self.call.phase is Phase.OFFERING
                    and self._pc is not None
                ):
                    self.call.answered(self.clock.monotonic())
                    await self._pc.setRemoteDescription(RTCSessionDescription(view.sdp, "answer"))
                    log.info("call %s answered by the centre", view.call_id)
            elif (
                not mine
                and view.direction is CallDirection.TO_HOME
                and view.state is CallState.RINGING
                and view.sdp
            ):
                await self._answer(view)
            elif not mine and view.state is not CallState.ENDED:
                # a call this hub no longer has (it restarted mid-call): end it, so no
                # console rings or talks into nothing
                log.info("call %s is not running on this hub: ended", view.call_id)
                await self._tell_hangup(view.call_id, CallEndReason.REPLACED)

    async def follow(self) -> None:
        """Long-poll the server's call list (an offer reaches the hub within a second)."""
        seen = ""
        failures = 0
        while True:
            try:
                calls = await self.link.calls(seen, wait_s=20)
            except Exception as e:
                failures += 1
                log.debug("call list unavailable (%s)", e)
                await asyncio.sleep(min(5.0, 0.5 * failures))
                continue
            failures = 0
            await self.apply(calls)
            seen = calls.digest

    # ------------------------------------------------------------ a running call

    async def tick_forever(self) -> None:
        while True:
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()

    async def tick(self) -> None:
        call = self.call
        if call is None or call.ended:
            return
        now = self.clock.monotonic()
        if now - self._alarm_checked_s >= ALARM_CHECK_S:
            self._alarm_checked_s = now
            self._alarm_ok = await self.alarm_open(call.alarm_id)
        if self.mic is not None:
            call.heard(self.mic.level, now, from_centre=False)
        reason = call.tick(now, self._alarm_ok)
        if reason is not None:
            log.info("call %s ends on the hub: %s", call.call_id, reason)
            await self._finish(reason, tell_server=True, already_ended=True)
            return
        if self.mic is not None and self.mic.open != call.mic_open:
            self.mic.open = call.mic_open
            metrics.VOICE_MIC_OPEN.set(1 if call.mic_open else 0)
            log.info("call %s: microphone %s", call.call_id, "open" if call.mic_open else "closed")
            if call.mic_open and not self._told_talking:  # the announcement has played
                self._told_talking = True
                await self.talking(call.alarm_id, True)

    async def _on_state(self, pc: RTCPeerConnection) -> None:
        call = self.call
        if pc is not self._pc or call is None or call.ended:
            return
        state = pc.connectionState
        now = self.clock.monotonic()
        if state == "connected" and call.connected(now):
            log.info("call %s connected: announcement, then the microphone opens", call.call_id)
            self._speaker = Speaker(self.sink)
            self._speaker.play(announcement())
        elif state == "failed":
            log.warning("call %s: media path failed", call.call_id)
            await self._finish(CallEndReason.NETWORK_LOST, tell_server=True)
        self._wake.set()

    async def _listen(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        """The centre's audio: to the loudspeaker once the microphone is open (the
        announcement plays alone)."""
        resampler: av.AudioResampler | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            call = self.call
            if pc is not self._pc or call is None or call.ended:
                return
            if call.phase is Phase.TALKING and self._speaker is not None:
                self._speaker.write(frame)
                level = self._speaker.level
            else:
                resampler = resampler or av.AudioResampler(format="s16", layout="mono", rate=48000)
                level = rms(to_mono(frame, resampler))
            call.heard(level, self.clock.monotonic(), from_centre=True)

    async def hang_up(self, reason: CallEndReason = CallEndReason.HANGUP_HOME) -> None:
        """The home ends the call (the elder's cancel button)."""
        if self.busy:
            await self._finish(reason, tell_server=True)

    async def _finish(
        self, reason: CallEndReason, tell_server: bool, already_ended: bool = False
    ) -> None:
        call, pc, mic, speaker = self.call, self._pc, self.mic, self._speaker
        if call is None:
            return
        if not already_ended and not call.end(reason, self.clock.monotonic()):
            return
        told_talking, self._told_talking = self._told_talking, False
        self._pc, self._speaker = None, None
        if mic is not None:
            mic.open = False
            mic.stop()
        metrics.VOICE_MIC_OPEN.set(0)
        metrics.VOICE_CALLS_ENDED.labels(reason.value).inc()
        log.info("call %s ended (%s): microphone closed", call.call_id, reason)
        if pc is not None:
            await pc.close()
        if speaker is not None:
            speaker.close()
        if told_talking:
            await self.talking(call.alarm_id, False)
        if tell_server:
            await self._tell_hangup(call.call_id, reason)

    async def _tell_hangup(self, call_id: str, reason: CallEndReason) -> None:
        for attempt in range(5):
            try:
                await self.link.hangup_call(call_id, api.CallHangup(reason=reason))
                return
            except Exception as e:
                log.warning("call %s: hang-up not delivered (%s); retrying", call_id, e)
                await asyncio.sleep(0.5 * (attempt + 1))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self.busy:
            await self._finish(CallEndReason.REPLACED, tell_server=True)
        for task in list(self._tasks):
            task.cancel()
