"""Who is coming to an alarm, as the operator's screen shows it: the member who accepted,
how long ago, their number to call, and the ETA they gave from the link page (the latest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.console.alarm_detail import TimelineEntry
from server.dispatch.eta import ETA_EVENT, eta_minutes


@dataclass(frozen=True)
class Coming:
    member_id: str
    name: str
    phone: str | None  # E.164, for a tel: link
    accepted_at_ms: int
    minutes_since: int  # whole minutes since the acceptance
    eta_minutes: int | None = None  # the latest estimate the member gave
    eta_at_ms: int | None = None  # when they expect to be at the door


def coming(
    accepted_by: str | None,
    accepted_at_ms: int | None,
    timeline: Sequence[TimelineEntry],
    names: Mapping[str, str],
    phones: Mapping[str, str],
    now_ms: int,
) -> Coming | None:
    """None until someone accepted. Only the accepting member's own estimates count."""
    if accepted_by is None or accepted_at_ms is None:
        return None
    estimates = [
        (e.at_ms, m)
        for e in timeline
        if e.kind == ETA_EVENT
        and e.actor == f"member:{accepted_by}"
        and (m := eta_minutes(e.detail)) is not None
    ]
    given_at, minutes = estimates[-1] if estimates else (None, None)
    return Coming(
        member_id=accepted_by,
        name=names.get(accepted_by, accepted_by),
        phone=phones.get(accepted_by),
        accepted_at_ms=accepted_at_ms,
        minutes_since=max(0, (now_ms - accepted_at_ms) // 60_000),
        eta_minutes=minutes,
        eta_at_ms=None if given_at is None or minutes is None else given_at + minutes * 60_000,
    )
