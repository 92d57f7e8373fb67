"""Which outbox entry the hub uploads next: fair across devices, in order per device.

A device that floods (thousands of alarms while the server was away, or a device gone mad)
must not make another device's alarm wait behind its backlog. So the outbox is drained one
device at a time in turn (round robin over device ids, after the one served last), each
device's entries strictly in the order they were queued, and alarms (and alarm reports)
before faults. Exactly-once is untouched: the server keys each entry by its own id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutboxHead:
    """A device's oldest unsent entry of one class."""

    device_id: str
    urgent: bool
    """An alarm or alarm report (else a fault)."""
    entry_id: int


def next_head(heads: list[OutboxHead], after_device: str | None) -> int | None:
    """The entry to send next: among the urgent heads if any, else the faults', the first
    device after `after_device` in id order (wrapping round); None when nothing waits."""
    urgent = [h for h in heads if h.urgent]
    pool = sorted(urgent or heads, key=lambda h: h.device_id)
    if not pool:
        return None
    if after_device is not None:
        for head in pool:
            if head.device_id > after_device:
                return head.entry_id
    return pool[0].entry_id
