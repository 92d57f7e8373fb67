"""What a fall pendant owes the hub after an outage: the IMU frames it could not publish.

IMU frames travel at QoS 0, which an MQTT client drops while disconnected; a fall during an
outage would never reach the hub. The contract (`docs/mqtt.md`, "Pendants across outages")
makes the pendant keep them and replay them, marked ``replayed``, in order, before its live
frames. :class:`ReplayBuffer` is that bookkeeping, pure: no I/O and no clock — time is the
frames' own ``t0`` (ms), so it is tested without sockets.
"""

from __future__ import annotations

from collections import deque

from carehub.mqtt_contract import REPLAY_BUFFER_S, ImuFrame

__all__ = ["IN_DOUBT_MS", "ReplayBuffer", "frame_end_ms"]

IN_DOUBT_MS = 15_000
"""Frames sent this long (stream time) before a lost link was noticed may have been lost
with it: paho notices a dead link only after up to 1.5 × keepalive (10 s)."""


def frame_end_ms(frame: ImuFrame) -> float:
    """Stream time just after the frame's last sample (ms)."""
    return frame.t0 + len(frame.acc) * 1000.0 / frame.hz


class ReplayBuffer:
    """Frames owed to the hub, oldest first, and the recently sent frames still in doubt.

    The firmware calls :meth:`sent` for each frame the client accepted, :meth:`hold` for
    each frame it could not publish (and for every live frame while anything is owed, so
    order is kept), :meth:`link_lost` when the client notices the link is down, and
    :meth:`replay` on reconnect. At least the last ``keep_s`` seconds of owed frames are
    kept; older ones are dropped, oldest first (``dropped`` counts them).
    """

    def __init__(self, keep_s: float = REPLAY_BUFFER_S, in_doubt_ms: float = IN_DOUBT_MS) -> None:
        if keep_s <= 0 or in_doubt_ms < 0:
            raise ValueError("keep_s must be > 0 and in_doubt_ms >= 0")
        self.keep_ms = keep_s * 1000.0
        self.in_doubt_ms = in_doubt_ms
        self._owed: deque[ImuFrame] = deque()
        self._recent: deque[ImuFrame] = deque()
        self.dropped = 0

    @property
    def owed(self) -> int:
        """How many frames wait to be replayed."""
        return len(self._owed)

    def sent(self, frame: ImuFrame) -> None:
        """The client accepted ``frame``; remember it while it is in doubt."""
        self._recent.append(frame)
        horizon = frame_end_ms(frame) - self.in_doubt_ms
        while self._recent and frame_end_ms(self._recent[0]) <= horizon:
            self._recent.popleft()

    def hold(self, frame: ImuFrame) -> None:
        """``frame`` could not be published (or must wait behind owed ones)."""
        self._owed.append(frame)
        self._trim()

    def link_lost(self) -> None:
        """The link is found down: the frames sent just before may have gone with it."""
        self._owed.extendleft(reversed(self._recent))
        self._recent.clear()
        self._trim()

    def replay(self) -> list[ImuFrame]:
        """Everything owed, oldest first, marked ``replayed``; the buffer is then empty.
        Hand back what could not be published with :meth:`put_back`."""
        frames = [f.model_copy(update={"replayed": True}) for f in self._owed]
        self._owed.clear()
        return frames

    def put_back(self, frames: list[ImuFrame]) -> None:
        """Frames a replay could not publish go back in front of anything owed since."""
        self._owed.extendleft(reversed(frames))
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest owed frames while the rest still cover the last ``keep_ms``."""
        if not self._owed:
            return
        horizon = frame_end_ms(self._owed[-1]) - self.keep_ms
        while len(self._owed) > 1 and self._owed[1].t0 <= horizon:
            self._owed.popleft()
            self.dropped += 1
