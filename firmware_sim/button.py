"""A one-press call terminal: press (call for help) and cancel, retried until acked."""

from __future__ import annotations

import time
from typing import Literal

from carehub.mqtt_contract import ButtonEvent, Channel, DeviceStatus
from firmware_sim.device import SimDevice

FIRMWARE = "sim-button/0.1"


class CallButton(SimDevice):
    def press(
        self, action: Literal["press", "cancel"] = "press", wait_s: float | None = None
    ) -> int:
        """Publish a button event, republished until acked; returns its seq. With `wait_s`,
        block until the hub's first ack (TimeoutError if none), as the terminal's LED would."""
        seq = self.next_seq()
        event = ButtonEvent(v=1, seq=seq, ts=time.time_ns() // 1_000_000, action=action)
        self.publish_until_acked(Channel.BUTTON, event, seq)
        if wait_s is not None and self.acks.wait_for(lambda a: a.seq == seq, wait_s) is None:
            raise TimeoutError(f"{self.device_id}: no ack for seq {seq} within {wait_s} s")
        return seq

    def cancel(self, wait_s: float | None = None) -> int:
        return self.press("cancel", wait_s)

    def send_status(self, battery: float, rssi: float = -60.0) -> None:
        """A heartbeat with the battery level."""
        self.publish(
            Channel.STATUS,
            DeviceStatus(
                v=1,
                seq=self.next_seq(),
                ts=time.time_ns() // 1_000_000,
                battery=battery,
                firmware=FIRMWARE,
                rssi=rssi,
            ),
        )
