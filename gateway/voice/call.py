"""One call's life on the hub, decided without sockets: when the microphone may open, and
when the call ends (ring, connect, length and silence limits; the alarm closing).

Phases and their legal moves are one table (`MOVES`). The elder always hears the
announcement tone before the microphone opens: the microphone is open only in `TALKING`,
which is reached only through `ANNOUNCING`, and only while the alarm is open (or for the
installer's test call).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from carehub.api_contract import CallDirection, CallEndReason

ANNOUNCEMENT_S = 1.2
"""The tone the elder hears before the microphone opens (seconds)."""
NETWORK_LOST_S = 5.0
"""No audio packet from the centre for this long in a running call: the path dropped."""
SILENCE_LEVEL = 0.01
"""RMS (full scale = 1) below which a 20 ms frame counts as silence."""


class Phase(enum.StrEnum):
    OFFERING = "offering"  # our offer rings in the consoles
    CONNECTING = "connecting"  # SDPs exchanged, ICE/DTLS under way
    ANNOUNCING = "announcing"  # connected: the tone plays, the microphone is still closed
    TALKING = "talking"  # the microphone is open
    ENDED = "ended"


MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.OFFERING: frozenset({Phase.CONNECTING, Phase.ENDED}),
    Phase.CONNECTING: frozenset({Phase.ANNOUNCING, Phase.ENDED}),
    Phase.ANNOUNCING: frozenset({Phase.TALKING, Phase.ENDED}),
    Phase.TALKING: frozenset({Phase.ENDED}),
    Phase.ENDED: frozenset(),
}


@dataclass(frozen=True)
class CallLimits:
    """Seconds: ring (unanswered offer), connect (answered, no media yet), max length
    (from connection), silence (nothing heard either way while talking)."""

    ring_s: float = 90.0
    connect_s: float = 10.0
    max_s: float = 900.0
    silence_s: float = 120.0
    announcement_s: float = ANNOUNCEMENT_S
    network_lost_s: float = NETWORK_LOST_S


def mic_allowed(alarm_open: bool, test_call: bool) -> bool:
    """The privacy rule: the microphone opens only for an open alarm of this home or the
    installer's test call."""
    return alarm_open or test_call


class Call:
    """One call, fed the shell's observations with the time (monotonic seconds)."""

    def __init__(
        self,
        call_id: str,
        alarm_id: str,
        direction: CallDirection,
        limits: CallLimits,
        now_s: float,
        test: bool = False,
    ) -> None:
        self.call_id = call_id
        self.alarm_id = alarm_id
        self.direction = direction
        self.test = test
        self.limits = limits
        self.phase = Phase.OFFERING if direction is CallDirection.FROM_HOME else Phase.CONNECTING
        self.since_s = now_s  # entered the current phase
        self.connected_at_s: float | None = None
        self.last_sound_s = now_s
        self.last_packet_s = now_s
        self.end_reason: CallEndReason | None = None

    @property
    def mic_open(self) -> bool:
        return self.phase is Phase.TALKING

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED

    def _move(self, to: Phase, now_s: float) -> bool:
        if to not in MOVES[self.phase]:
            return False
        self.phase, self.since_s = to, now_s
        return True

    def answered(self, now_s: float) -> None:
        """The console answered our offer."""
        self._move(Phase.CONNECTING, now_s)

    def connected(self, now_s: float) -> bool:
        """The media path is up: the announcement starts (True when it just did)."""
        if self._move(Phase.ANNOUNCING, now_s):
            self.connected_at_s = self.last_sound_s = self.last_packet_s = now_s
            return True
        return False

    def heard(self, rms: float, now_s: float, from_centre: bool) -> None:
        """A 20 ms frame, either way: its level keeps the call from ending in silence; one
        from the centre proves the path is alive."""
        if from_centre:
            self.last_packet_s = now_s
        if rms >= SILENCE_LEVEL:
            self.last_sound_s = now_s

    def end(self, reason: CallEndReason, now_s: float) -> bool:
        """End the call (True when this ended it; an ended call keeps its first reason)."""
        if self._move(Phase.ENDED, now_s):
            self.end_reason = reason
            return True
        return False

    def tick(self, now_s: float, alarm_open: bool) -> CallEndReason | None:
        """Advance on time: open the microphone after the announcement, or end the call
        (returns the reason when this tick ended it)."""
        reason = self._due_end(now_s, alarm_open)
        if reason is not None:
            return reason if self.end(reason, now_s) else None
        if self.phase is Phase.ANNOUNCING and now_s - self.since_s >= self.limits.announcement_s:
            self._move(Phase.TALKING, now_s)
        return None

    def _due_end(self, now_s: float, alarm_open: bool) -> CallEndReason | None:
        limits, phase, waited = self.limits, self.phase, now_s - self.since_s
        if phase is Phase.ENDED:
            return None
        if not mic_allowed(alarm_open, self.test):
            return CallEndReason.ALARM_CLOSED
        if phase is Phase.OFFERING and waited >= limits.ring_s:
            return CallEndReason.NO_ANSWER
        if phase is Phase.CONNECTING and waited >= limits.connect_s:
            return CallEndReason.NO_CONNECTION
        if self.connected_at_s is None:
            return None
        if now_s - self.connected_at_s >= limits.max_s:
            return CallEndReason.MAX_LENGTH
        if now_s - self.last_packet_s >= limits.network_lost_s:
            return CallEndReason.NETWORK_LOST
        if phase is Phase.TALKING and now_s - self.last_sound_s >= limits.silence_s:
            return CallEndReason.SILENCE
        return None
