"""A one-press call terminal: `press()` calls for help, `cancel()` says it was a mistake."""

from __future__ import annotations

import time

from carehub.mqtt_contract import ButtonEvent, Channel
from firmware_sim.device import SimDevice


class CallButton(SimDevice):
    def press(self, action: str = "press") -> int:
        """Publish a button event until acked; returns its seq."""
        seq = self.next_seq()
        event = ButtonEvent(v=1, seq=seq, ts=time.time_ns() // 1_000_000, action=action)  # type: ignore[arg-type]
        self.publish_until_acked(Channel.BUTTON, event, seq)
        return seq

    def cancel(self) -> int:
        return self.press("cancel")
