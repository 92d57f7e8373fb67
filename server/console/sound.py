"""The alert tone a new alarm plays: a short WAV made here, so no audio file is shipped."""

from __future__ import annotations

import io
import math
import struct
import wave

RATE_HZ = 16_000


def alert_wav(tones_hz: tuple[float, ...] = (880.0, 1320.0), tone_s: float = 0.15) -> bytes:
    """Two rising beeps (mono, 16-bit PCM), faded in and out over 5 ms to avoid clicks."""
    frames = bytearray()
    n = int(RATE_HZ * tone_s)
    fade = int(RATE_HZ * 0.005)
    for hz in tones_hz:
        for i in range(n):
            envelope = min(1.0, i / fade, (n - 1 - i) / fade)
            sample = 0.5 * envelope * math.sin(2 * math.pi * hz * i / RATE_HZ)
            frames += struct.pack("<h", int(sample * 32767))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(bytes(frames))
    return out.getvalue()
