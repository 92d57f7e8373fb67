"""Audio in and out of a call on the hub: the microphone as an outgoing track that is
silent until the call may open it, the loudspeaker as a sink, and the announcement tone.

Both ends are ALSA devices on a real hub (the USB speakerphone, which does its own echo
cancellation) or files in tests and benches (``voice_source`` / ``voice_sink``). Audio is
16-bit mono at 48 kHz, in 20 ms frames; aiortc encodes it as Opus.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway import metrics

log = logging.getLogger(__name__)

RATE_HZ = 48_000
FRAME_SAMPLES = 960  # 20 ms
FRAME_S = FRAME_SAMPLES / RATE_HZ
TIME_BASE = fractions.Fraction(1, RATE_HZ)
ALSA = "alsa:"
CLICKS = "clicks"
"""A source for `carehub bench voice`: 1 kHz bursts of 100 ms at each whole second of the
wall clock over a faint tone, so the far end can time mouth to ear."""
ONSET_LEVEL = 0.1
"""RMS above which a burst has begun (a sink's onset log)."""


def clicks(start_s: float, count: int, hz: float, offset_s: float = 0.0) -> np.ndarray:
    """`count` samples starting at wall time `start_s`: a burst of `hz` in the first 100 ms
    after each whole second plus `offset_s`, a faint tone (-43 dBFS) otherwise."""
    t = start_s + np.arange(count) / RATE_HZ
    level = np.where(((t - offset_s) % 1.0) < 0.1, 0.5, 0.01)
    return (level * 32767 * np.sin(2 * math.pi * hz * t)).astype(np.int16)


def first_above(samples: np.ndarray, level: float) -> int | None:
    """Index of the first 2.5 ms block of `samples` whose RMS exceeds `level`."""
    block = 120
    for i in range(0, samples.size - block + 1, block):
        if rms(samples[i : i + block]) >= level:
            return i
    return None


class AudioDeviceMissing(Exception):
    """The configured speakerphone cannot be opened."""


def tone(hz: float, seconds: float, level: float = 0.3) -> np.ndarray:
    """A sine of `hz` for `seconds`, faded in and out over 5 ms (int16 mono, 48 kHz)."""
    n = int(RATE_HZ * seconds)
    t = np.arange(n) / RATE_HZ
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * RATE_HZ))
    return (level * 32767 * fade * np.sin(2 * math.pi * hz * t)).astype(np.int16)


def announcement() -> np.ndarray:
    """Two falling beeps (660 then 520 Hz) and a pause: the elder hears it before the
    microphone opens."""
    gap = np.zeros(int(0.1 * RATE_HZ), dtype=np.int16)
    return np.concatenate([tone(660, 0.35), gap, tone(520, 0.35), gap, gap])


def rms(samples: np.ndarray) -> float:
    """Level of int16 samples, full scale = 1."""
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((samples.astype(np.float64) / 32768) ** 2)))


def read_audio(path: Path) -> np.ndarray:
    """A whole audio file as int16 mono 48 kHz."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE_HZ)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise ValueError(f"{path}: no audio")
    return np.concatenate(chunks)


def to_mono(frame: Any, resampler: av.AudioResampler) -> np.ndarray:
    """An aiortc audio frame (any layout and rate) as int16 mono 48 kHz samples."""
    return np.concatenate(
        [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        or [np.zeros(0, dtype=np.int16)]
    )


def frame_of(samples: np.ndarray, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = RATE_HZ, pts, TIME_BASE
    return frame


class Microphone(MediaStreamTrack):
    """The outgoing track: silence while `open` is False (ringing, the announcement), the
    source's audio while True. `frames_sent` counts the frames of the microphone's own
    audio handed to the sender (after a hang-up it stops growing)."""

    kind = "audio"

    def __init__(self, source: str) -> None:
        super().__init__()
        self.open = False
        self.frames_sent = 0
        self.level = 0.0  # RMS of the last frame sent
        self._pcm: np.ndarray | None = None
        self._player: Any = None
        self._live: MediaStreamTrack | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE_HZ)
        self._pos = 0
        self._pts = 0
        self._start: float | None = None
        self._buffer = np.zeros(0, dtype=np.int16)
        self._clicks = source == CLICKS
        self._start_wall = 0.0
        if self._clicks:
            pass  # made from the wall clock, frame by frame
        elif source.startswith(ALSA):
            self._player = open_alsa_source(source[len(ALSA) :])
            self._live = self._player.audio
        else:
            self._pcm = read_audio(Path(source))

    async def _next_source(self) -> np.ndarray:
        if self._clicks:
            # a device hands over a frame once its last sample was captured
            start = self._start_wall + (self._pts - FRAME_SAMPLES) / RATE_HZ
            return clicks(start, FRAME_SAMPLES, 1000.0)
        if self._pcm is not None:
            out = np.take(self._pcm, range(self._pos, self._pos + FRAME_SAMPLES), mode="wrap")
            self._pos = (self._pos + FRAME_SAMPLES) % len(self._pcm)
            return out
        assert self._live is not None
        while self._buffer.size < FRAME_SAMPLES:
            frame = await self._live.recv()
            self._buffer = np.concatenate([self._buffer, to_mono(frame, self._resampler)])
        out, self._buffer = self._buffer[:FRAME_SAMPLES], self._buffer[FRAME_SAMPLES:]
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._live is None:  # a file: pace it as a device would
            if self._start is None:
                self._start, self._start_wall = time.monotonic(), time.time()
            wait = self._start + self._pts / RATE_HZ - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = await self._next_source()  # a live device is read while closed too
        if self.open:
            self.frames_sent += 1
            metrics.VOICE_MIC_FRAMES.inc()
            self.level = rms(samples)
        else:
            samples = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            self.level = 0.0
        frame = frame_of(samples, self._pts)
        self._pts += FRAME_SAMPLES
        return frame

    def stop(self) -> None:
        self.open = False
        super().stop()
        if self._player is not None and self._live is not None:
            self._live.stop()


def open_alsa_source(device: str) -> Any:
    """The speakerphone's microphone through ffmpeg's ALSA input."""
    try:
        return MediaPlayer(
            device, format="alsa", options={"channels": "1", "sample_rate": str(RATE_HZ)}
        )
    except (av.FFmpegError, OSError) as e:
        raise AudioDeviceMissing(f"ALSA capture device {device!r}: {e}") from e


def check_device(source: str) -> None:
    """Raise `AudioDeviceMissing` unless the source can be opened (a file must be readable,
    an ALSA device must open for capture)."""
    if source == CLICKS:
        return
    if source.startswith(ALSA):
        player = open_alsa_source(source[len(ALSA) :])
        if player.audio is not None:
            player.audio.stop()
        return
    if not Path(source).is_file():
        raise AudioDeviceMissing(f"audio source file {source!r} does not exist")


class Speaker:
    """The loudspeaker: frames written as they arrive (an ALSA device paces itself; a WAV
    file records them, tests read it)."""

    def __init__(self, sink: str) -> None:
        if sink.startswith(ALSA):
            self._container = av.open(sink[len(ALSA) :], "w", format="alsa")
        else:
            self._container = av.open(sink, "w", format="wav")
        self._stream: Any = self._container.add_stream("pcm_s16le", rate=RATE_HZ, layout="mono")
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE_HZ)
        self._pts = 0
        self.level = 0.0
        self._log = None if sink.startswith(ALSA) else Path(sink + ".json")
        self.first_ms: float | None = None  # wall clock, ms: the first frame from the far end
        self.onsets_ms: list[float] = []  # wall clock, ms: bursts from the far end began
        self._loud = False

    def play(self, samples: np.ndarray) -> None:
        for start in range(0, samples.size, FRAME_SAMPLES):
            chunk = samples[start : start + FRAME_SAMPLES]
            for packet in self._stream.encode(frame_of(chunk, self._pts)):
                self._container.mux(packet)
            self._pts += chunk.size

    def write(self, frame: Any) -> None:
        """A frame from the far end, played now (its onsets noted for a file sink's log)."""
        samples = to_mono(frame, self._resampler)
        self.level = rms(samples)
        if self._log is not None:
            now_ms = time.time() * 1000
            self.first_ms = self.first_ms or now_ms
            at = first_above(samples, ONSET_LEVEL)
            if at is not None and not self._loud:
                self.onsets_ms.append(now_ms + at / RATE_HZ * 1000)
            self._loud = self.level >= ONSET_LEVEL / 2
        self.play(samples)

    def close(self) -> None:
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
        if self._log is not None:  # beside a file sink: when the far end was heard
            self._log.write_text(
                json.dumps({"first_ms": self.first_ms, "onsets_ms": self.onsets_ms})
            )
