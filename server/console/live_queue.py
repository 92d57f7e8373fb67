"""The dispatcher's queue: open alarms, most severe first, then oldest first, each with its
elder, its escalation step and who was notified; welfare checks (`server.welfare`) last."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.alarm_lifecycle import AlarmState, Severity
from server.console.incidents import group_incidents
from server.escalation import EscalationPolicy, StepNumber, step_number
from server.schema import alarms, doctors, elders, emergency_contacts, escalations, notifications
from server.welfare import WelfareView, is_welfare, welfare_view

CLOSED = (AlarmState.RESOLVED.value, AlarmState.CANCELLED.value)
LADDER_PURPOSES = ("step-%", "assigned-%")
"""The notifications that asked someone to answer (the ladder's steps and the console's
assignments): the queue's "Notified" column. Family texts and notices ("taken",
"cancelled", "arrival-overdue", "raised-critical") are on the alarm's timeline only."""
SEVERITY_RANK = {Severity.CRITICAL.value: 0, Severity.WARNING.value: 1}
"""Lower is shown first; an unknown severity goes last."""


@dataclass(frozen=True)
class Notified:
    name: str
    status: str  # carehub.admin_contract.NotificationStatus
    response: str | None  # accepted | declined


@dataclass(frozen=True)
class QueueRow:
    alarm_id: str
    elder_id: str
    elder_name: str
    short_address: str
    team_id: str
    kind: str
    severity: str
    state: str
    received_at_ms: int
    step_position: int | None = None  # escalations.position: steps taken (0: none yet)
    step_status: str | None = None
    step_due_at_ms: int | None = None
    notified: tuple[Notified, ...] = field(default=())
    repeat_count: int = 0  # repeats from the same device and kind (server.alarm_repeats)
    last_repeat_at_ms: int | None = None
    is_test: bool = False
    step: StepNumber | None = None  # the step taken last, as people count it
    claimed_by: str | None = None  # the console user who has it
    device_flag: str | None = None  # carehub.api_contract.DeviceFlag: who called is unsure
    welfare: WelfareView | None = None  # a welfare check: for the dispatcher, no ladder


UNCLAIMED_CUE_S = (60, 180)
"""An open alarm nobody at the console has claimed is marked after the first (level 1) and
cries out after the second (level 2: the row pulses and the tone repeats), seconds after
it was received: the shift sees what is left lying."""


def unclaimed_level(received_at_ms: int, now_ms: int, claimed_by: str | None) -> int:
    """0 (claimed, or fresh), 1 or 2: how loudly the queue asks someone to take it."""
    if claimed_by is not None:
        return 0
    waited_s = (now_ms - received_at_ms) / 1000
    return sum(waited_s >= limit for limit in UNCLAIMED_CUE_S)


def notified_once(sent: Sequence[tuple[str, str, str, str | None]]) -> tuple[Notified, ...]:
    """One chip per person asked to answer, in the order first asked: the status of the
    latest message to them, and their answer if they gave one. `sent`: (key, name, status,
    response) rows, oldest first; the key tells two people of one name apart."""
    latest: dict[str, Notified] = {}
    for key, name, status, response in sent:
        kept = latest.get(key)
        answer = response or (kept.response if kept else None)
        latest[key] = Notified(name, status, answer)
    return tuple(latest.values())


def queue_order(rows: Sequence[QueueRow]) -> list[QueueRow]:
    """Emergencies before welfare checks (low priority), then severity (critical first),
    then age (oldest first), then id for a stable order."""
    return sorted(
        rows,
        key=lambda r: (
            r.welfare is not None,
            SEVERITY_RANK.get(r.severity, len(SEVERITY_RANK)),
            r.received_at_ms,
            r.alarm_id,
        ),
    )


@dataclass(frozen=True)
class QueueIncident:
    """One queue row per incident (`server.console.incidents`): its open alarms, the most
    urgent first, and when its first one was received."""

    rows: tuple[QueueRow, ...]
    first_at_ms: int


def queue_incidents(rows: Sequence[QueueRow], window_ms: int) -> list[QueueIncident]:
    """The open alarms as incidents, each in queue order (`queue_order`), the incidents
    ordered by their most urgent alarm as the queue orders alarms."""
    incidents = [
        QueueIncident(tuple(queue_order(g)), min(r.received_at_ms for r in g))
        for g in group_incidents(rows, window_ms)
    ]
    rank = {r.alarm_id: i for i, r in enumerate(queue_order(rows))}
    return sorted(incidents, key=lambda i: rank[i.rows[0].alarm_id])


def next_alarm(rows: Sequence[QueueRow], after: str = "") -> str | None:
    """The alarm an operator should take next: the first in queue order nobody has claimed,
    else the first of all; never `after` (the one they are on)."""
    others = [r for r in queue_order(rows) if r.alarm_id != after]
    free = [r for r in others if r.claimed_by is None]
    best = free or others
    return best[0].alarm_id if best else None


async def open_alarms(
    engine: AsyncEngine,
    team_id: str | None = None,
    policy_of: Callable[[str], EscalationPolicy] | None = None,
) -> list[QueueRow]:
    """Alarms neither resolved nor cancelled; only `team_id`'s elders when it is given.
    `policy_of` (a policy id's policy) numbers the steps as every view does."""
    query = (
        sa.select(
            alarms.c.id,
            alarms.c.elder_id,
            alarms.c.kind,
            alarms.c.severity,
            alarms.c.state,
            alarms.c.received_at_ms,
            alarms.c.repeat_count,
            alarms.c.last_repeat_at_ms,
            alarms.c.is_test,
            alarms.c.claimed_by,
            alarms.c.device_flag,
            alarms.c.details,
            elders.c.name,
            elders.c.short_address,
            elders.c.team_id,
            escalations.c.position,
            escalations.c.status,
            escalations.c.due_at_ms,
            escalations.c.policy_id,
        )
        .join(elders, elders.c.id == alarms.c.elder_id)
        .outerjoin(escalations, escalations.c.alarm_id == alarms.c.id)
        .where(alarms.c.state.not_in(CLOSED))
    )
    if team_id is not None:
        query = query.where(elders.c.team_id == team_id)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).all()
        ids = [r.id for r in found]
        sent = (
            (
                await conn.execute(
                    sa.select(
                        notifications.c.alarm_id,
                        notifications.c.doctor_id,
                        notifications.c.status,
                        notifications.c.response,
                        sa.func.coalesce(doctors.c.name, emergency_contacts.c.name, "?").label(
                            "who"
                        ),
                    )
                    .outerjoin(doctors, doctors.c.id == notifications.c.doctor_id)
                    .outerjoin(
                        emergency_contacts, emergency_contacts.c.id == notifications.c.contact_id
                    )
                    .where(
                        notifications.c.alarm_id.in_(ids),
                        notifications.c.doctor_id.is_not(None),
                        sa.or_(*(notifications.c.purpose.like(p) for p in LADDER_PURPOSES)),
                    )
                    .order_by(notifications.c.created_at_ms, notifications.c.id)
                )
            ).all()
            if ids
            else []
        )
    by_alarm: dict[str, list[tuple[str, str, str, str | None]]] = {}
    for n in sent:
        by_alarm.setdefault(n.alarm_id, []).append((n.doctor_id, n.who, n.status, n.response))

    def step(policy_id: str | None, position: int | None) -> StepNumber | None:
        if not position or policy_of is None or policy_id is None:
            return None
        return step_number(policy_of(policy_id), position - 1)

    return queue_order(
        [
            QueueRow(
                alarm_id=r.id,
                elder_id=r.elder_id,
                elder_name=r.name,
                short_address=r.short_address,
                team_id=r.team_id,
                kind=r.kind,
                severity=r.severity,
                state=r.state,
                received_at_ms=r.received_at_ms,
                step_position=r.position,
                step_status=r.status,
                step_due_at_ms=r.due_at_ms,
                notified=notified_once(by_alarm.get(r.id, [])),
                step=step(r.policy_id, r.position),
                claimed_by=r.claimed_by,
                repeat_count=r.repeat_count,
                last_repeat_at_ms=r.last_repeat_at_ms,
                is_test=bool(r.is_test),
                device_flag=r.device_flag,
                welfare=welfare_view(r.details) if is_welfare(r.kind) else None,
            )
            for r in found
        ]
    )
