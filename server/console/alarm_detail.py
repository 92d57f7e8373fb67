"""One alarm as the operator screen shows it: the alarm, its timeline (device event, hub,
server, every notification with its delivery status, every action) and its lifecycle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState
from server.schema import (
    alarm_events,
    alarms,
    doctors,
    elders,
    emergency_contacts,
    escalations,
    notifications,
)

USER_ENTRY_KINDS = frozenset({"note", "callback"})
"""Timeline entries a console user wrote (editable by their author); the rest are system's."""
CONSOLE_ACTOR = "console:"
OUTCOMES = (
    "false_alarm",
    "by_phone",
    "home_visit",
    "ambulance",
    "hospital",
    "death",
    "other",
)
"""Resolution outcome codes (`alarms.outcome`)."""


@dataclass(frozen=True)
class TimelineEntry:
    at_ms: int
    kind: str  # an alarm_events kind, or "sms" for a notification
    actor: str
    detail: str
    state: str | None = None
    event_id: int | None = None  # editable entries carry their row id
    sms_status: str | None = None
    sms_to: str | None = None  # an SMS entry: who it went to, why (purpose), their answer
    sms_purpose: str | None = None
    sms_response: str | None = None
    sms_position: int | None = None
    sms_family: bool = False  # to an emergency contact (not a responder)

    @property
    def by_user(self) -> bool:
        return self.kind in USER_ENTRY_KINDS and self.actor.startswith(CONSOLE_ACTOR)


@dataclass(frozen=True)
class Lifecycle:
    """What the operator needs at a glance: active or cleared × acknowledged or not."""

    active: bool
    acknowledged: bool
    assignee: str | None
    accepted: bool = False  # the assignee accepted (else the console assigned them)


@dataclass(frozen=True)
class AlarmView:
    id: str
    hub_id: str
    elder_id: str
    team_id: str
    device_id: str
    kind: str
    severity: str
    state: str
    outcome: str | None
    event_ts_ms: int | None
    raised_at_ms: int
    received_at_ms: int
    details: dict[str, Any]
    timeline: tuple[TimelineEntry, ...]
    lifecycle: Lifecycle
    repeat_count: int = 0  # raised again while open (server.alarm_repeats)
    is_test: bool = False
    policy_id: str | None = None  # the escalation policy its ladder climbs
    accepted_by: str | None = None  # a member id
    arrived_at_ms: int | None = None
    names: dict[str, str] = field(default_factory=dict)  # member id -> name (for the timeline)
    claimed_by: str | None = None  # the console user who has it
    device_flag: str | None = None  # carehub.api_contract.DeviceFlag: who called is unsure
    triage_outcome: str | None = None  # server.triage.TriageOutcome: the operator's latest
    accepted_at_ms: int | None = None


def lifecycle(state: str, timeline: Sequence[TimelineEntry], accepted_by: str | None) -> Lifecycle:
    """Cleared once resolved or cancelled. Acknowledged once a person took it on: pressed
    acknowledge, accepted it, or resolved it (an alarm a doctor accepted, reached and
    resolved is not "unacknowledged"). The assignee is whoever accepted, else the last one
    the console assigned it to."""
    taken_on = accepted_by is not None or state == AlarmState.RESOLVED.value
    acknowledged = taken_on or any(e.kind == "acknowledged" for e in timeline)
    assignee = accepted_by
    if assignee is None:
        assigned = [e for e in timeline if e.kind == "assigned"]
        assignee = assigned[-1].detail.removeprefix("to ") if assigned else None
    return Lifecycle(
        AlarmState(state) not in FINAL_STATES, acknowledged, assignee, accepted_by is not None
    )


def merged_timeline(
    device_ts_ms: int | None,
    raised_ms: int,
    received_ms: int,
    events: Sequence[TimelineEntry],
    sms: Sequence[TimelineEntry],
) -> list[TimelineEntry]:
    """Device event, hub, server, then events and notifications in time order (stable)."""
    head = [TimelineEntry(raised_ms, "raised", "hub", "")]
    if device_ts_ms is not None:
        head.insert(0, TimelineEntry(device_ts_ms, "device", "device", ""))
    head.append(TimelineEntry(received_ms, "received", "server", ""))
    rest = sorted([*events, *sms], key=lambda e: e.at_ms)
    return head + rest


async def alarm_view(engine: AsyncEngine, alarm_id: str) -> AlarmView | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(alarms, elders.c.team_id)
                .join(elders, elders.c.id == alarms.c.elder_id)
                .where(alarms.c.id == alarm_id)
            )
        ).first()
        if row is None:
            return None
        events = (
            await conn.execute(
                sa.select(alarm_events)
                .where(alarm_events.c.alarm_id == alarm_id)
                .order_by(alarm_events.c.at_ms, alarm_events.c.id)
            )
        ).all()
        sent = (
            await conn.execute(
                sa.select(
                    notifications,
                    sa.func.coalesce(doctors.c.name, emergency_contacts.c.name, "?").label("who"),
                )
                .outerjoin(doctors, doctors.c.id == notifications.c.doctor_id)
                .outerjoin(
                    emergency_contacts, emergency_contacts.c.id == notifications.c.contact_id
                )
                .where(notifications.c.alarm_id == alarm_id)
                .order_by(notifications.c.created_at_ms, notifications.c.id)
            )
        ).all()
        accepted = None
        if row.accepted_by is not None:
            accepted = await conn.scalar(
                sa.select(doctors.c.name).where(doctors.c.id == row.accepted_by)
            )
        policy_id = await conn.scalar(
            sa.select(escalations.c.policy_id).where(escalations.c.alarm_id == alarm_id)
        )
        names = {r.id: r.name for r in await conn.execute(sa.select(doctors.c.id, doctors.c.name))}
    entries = [TimelineEntry(e.at_ms, e.kind, e.actor, e.detail, e.state, e.id) for e in events]
    # an SMS stands where its status was last heard of: "delivered" after the provider
    # took it ("sms_sent"), not at the moment it was queued
    sms = [
        TimelineEntry(
            n.status_at_ms or n.sent_at_ms or n.created_at_ms,
            "sms",
            "server",
            "",
            sms_status=n.status,
            sms_to=n.who,
            sms_purpose=n.purpose,
            sms_response=n.response,
            sms_position=n.position,
            sms_family=n.contact_id is not None,
        )
        for n in sent
    ]
    timeline = merged_timeline(row.event_ts_ms, row.raised_at_ms, row.received_at_ms, entries, sms)
    details = row.details if isinstance(row.details, dict) else {}
    return AlarmView(
        id=row.id,
        hub_id=row.hub_id,
        elder_id=row.elder_id,
        team_id=row.team_id,
        device_id=row.device_id,
        kind=row.kind,
        severity=row.severity,
        state=row.state,
        outcome=row.outcome,
        event_ts_ms=row.event_ts_ms,
        raised_at_ms=row.raised_at_ms,
        received_at_ms=row.received_at_ms,
        details=details,
        timeline=tuple(timeline),
        lifecycle=lifecycle(row.state, timeline, accepted or row.accepted_by),
        repeat_count=int(row.repeat_count or 0),
        is_test=bool(row.is_test),
        policy_id=policy_id,
        accepted_by=row.accepted_by,
        arrived_at_ms=row.arrived_at_ms,
        names=names,
        claimed_by=row.claimed_by,
        device_flag=row.device_flag,
        triage_outcome=row.triage_outcome,
        accepted_at_ms=row.accepted_at_ms,
    )


def vitals(details: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The NEWS2 sub-scores and the latest readings of a vitals alarm (empty when absent or
    malformed). The hub sends ``readings`` as its last epoch medians, oldest first
    (``[{"ts_ms", "hr", "spo2", …}]``, docs/vital-signs.md): the latest is the last one
    that is a dict; a dict of readings (older servers' tests) is taken as it is."""
    scores, readings = details.get("scores"), details.get("readings")
    if isinstance(readings, list):
        epochs = [r for r in readings if isinstance(r, dict)]
        readings = {k: v for k, v in epochs[-1].items() if k != "ts_ms"} if epochs else {}
    return (
        scores if isinstance(scores, dict) else {},
        readings if isinstance(readings, dict) else {},
    )


def vitals_reason(details: dict[str, Any]) -> str | None:
    """The detector's reason (``"red NEWS2 sub-score (spo2) for 90 s"``), if it sent one."""
    reason = details.get("reason")
    return reason[:200] if isinstance(reason, str) and reason else None


def fall_window(
    details: dict[str, Any],
) -> tuple[float, float, list[list[float]], float | None] | None:
    """``details.window`` as (hz, t0 ms, acc samples in g, impact ms), or None if unusable."""
    window = details.get("window")
    if not isinstance(window, dict):
        return None
    hz, t0, acc = window.get("hz"), window.get("t0_ms"), window.get("acc")
    if (
        not isinstance(hz, int | float)
        or not isinstance(t0, int | float)
        or not isinstance(acc, list)
    ):
        return None
    impact = details.get("impact_ts_ms")
    return float(hz), float(t0), acc, float(impact) if isinstance(impact, int | float) else None
