"""Which of a batch of device fault reports change what is stored.

A fault report is not an emergency, but a city's hubs send many at once: when the power
comes back, each hub flushes the faults it queued. Deciding them one transaction each kept
SQLite's one writer busy for seconds while alarms waited behind it. The store now reads
what a whole batch needs in three statements and writes the new rows in one; this module
is the decision, pure, in the order the reports arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from carehub.api_contract import FaultReport, HubFaultReport

FaultKey = tuple[str, str, str]
"""(hub id, device id, fault)."""


class Outcome(Enum):
    NEW = "new"
    """Stored: a fault raised, or cleared, that the dispatcher has not seen."""
    UNCHANGED = "unchanged"
    """Already stored (a retried report), the state it already has, or older than it."""
    UNKNOWN_DEVICE = "unknown_device"
    """The device is not paired with the hub that reported it (refused, 422)."""


@dataclass(frozen=True)
class Latest:
    """The newest stored report of one fault of one device."""

    active: bool
    since_ms: int


@dataclass(frozen=True)
class Incoming:
    hub_id: str
    report: FaultReport | HubFaultReport
    received_ms: int

    @property
    def subject(self) -> str:
        """The device, or the hub itself for a fault of the hub."""
        return self.report.device_id if isinstance(self.report, FaultReport) else self.hub_id

    @property
    def key(self) -> FaultKey:
        return (self.hub_id, self.subject, self.report.fault)


def decide(
    batch: Sequence[Incoming],
    stored_reports: Iterable[tuple[str, str]],
    paired: Iterable[tuple[str, str]],
    latest: Mapping[FaultKey, Latest],
) -> list[Outcome]:
    """One outcome per report, as if each had been decided alone in arrival order.

    `stored_reports`: (hub, report id) already stored; `paired`: (hub, device) pairs that
    exist; `latest`: the newest stored state of each fault the batch names. A report that
    changes nothing is not stored, so its id is not "seen" (a retry is decided afresh)."""
    seen = set(stored_reports)
    devices = set(paired)
    newest = dict(latest)
    out: list[Outcome] = []
    for item in batch:
        report = item.report
        if (item.hub_id, report.report_id) in seen:
            out.append(Outcome.UNCHANGED)
            continue
        if isinstance(report, FaultReport) and (item.hub_id, report.device_id) not in devices:
            out.append(Outcome.UNKNOWN_DEVICE)
            continue
        last = newest.get(item.key)
        if last is not None and (last.active == report.active or last.since_ms > report.at_ms):
            out.append(Outcome.UNCHANGED)  # a repeat after a hub restart, or an older report
            continue
        newest[item.key] = Latest(report.active, report.at_ms)
        seen.add((item.hub_id, report.report_id))
        out.append(Outcome.NEW)
    return out
