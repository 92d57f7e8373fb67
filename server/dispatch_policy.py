"""Who is called for an alarm: pure decisions over the elder's contracted team.

Duty rosters and escalation ladders will extend `DoctorOnDuty` and `choose_doctor`; the
dispatcher only asks "who is next?" and records the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DoctorOnDuty:
    id: str
    team_id: str
    phone: str
    language: str  # "zh" or "en"
    on_duty: bool
    priority: int  # lower is called first


class NoDoctorAvailable(Exception):
    """The elder's team has nobody on duty: the dispatcher console must take the alarm."""


def choose_doctor(team: Sequence[DoctorOnDuty], already_called: Iterable[str] = ()) -> DoctorOnDuty:
    """The on-duty doctor of the team to call next: lowest priority, then id (stable order)."""
    called = set(already_called)
    candidates = sorted(
        (d for d in team if d.on_duty and d.id not in called), key=lambda d: (d.priority, d.id)
    )
    if not candidates:
        raise NoDoctorAvailable(f"no on-duty doctor left in team of {len(team)}")
    return candidates[0]
