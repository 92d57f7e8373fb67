"""The installers' health board: hubs offline or refused, devices offline, low batteries,
wearables not worn and failed SMS, each with the moment it began (never mixed into the alarm
queue)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.schema import alarms, doctors, elders, faults, hubs, notifications

FAULT_SECTIONS = (
    "hub_refused",
    "device_offline",
    "battery_low",
    "sensor_not_worn",
    "hub_store_damaged",
)
"""`hub_refused`: a hub moved to another household still calls with its revoked credential
(it may hold alarms nobody has seen); `hub_store_damaged`: a hub set its damaged store aside
(alarms it held may be lost)."""
SMS_FAILED = ("undelivered", "failed")


@dataclass(frozen=True)
class Problem:
    subject: str  # a hub, a device or a notified person
    where: str  # the elder's short address (no medical data)
    since_ms: int | None  # when it began (None: never seen)
    detail: str = ""


@dataclass(frozen=True)
class HealthBoard:
    hubs_offline: list[Problem]
    faults: dict[str, list[Problem]]  # keyed by FAULT_SECTIONS
    sms_failed: list[Problem]
    speakerphone_missing: list[Problem] = dataclasses.field(default_factory=list)
    """Hubs set up for voice calls whose audio device (or voice extra) is missing, from
    their last heartbeat: their alarms still arrive, but nobody can talk to the elder."""


async def health_board(engine: AsyncEngine, team_id: str | None = None) -> HealthBoard:
    """Open problems, oldest first; only `team_id`'s elders when it is given."""
    scope = [] if team_id is None else [elders.c.team_id == team_id]
    async with engine.connect() as conn:
        offline = (
            await conn.execute(
                sa.select(hubs.c.id, hubs.c.last_seen_ms, elders.c.short_address)
                .join(elders, elders.c.id == hubs.c.elder_id)
                .where(hubs.c.online.is_(False), *scope)
                .order_by(hubs.c.last_seen_ms, hubs.c.id)
            )
        ).all()
        # `faults` keeps every report (raised, cleared, raised again): a fault is open when
        # the newest report of its (hub, device, fault) says active, not while any row does
        key = (faults.c.hub_id, faults.c.device_id, faults.c.fault)
        newest = sa.select(sa.func.max(faults.c.id)).group_by(*key)
        active = (
            await conn.execute(
                sa.select(faults, elders.c.short_address)
                .join(hubs, hubs.c.id == faults.c.hub_id)
                .join(elders, elders.c.id == hubs.c.elder_id)
                .where(faults.c.id.in_(newest), faults.c.active.is_(True), *scope)
                .order_by(faults.c.since_ms, faults.c.id)
            )
        ).all()
        voiced = (
            await conn.execute(
                sa.select(hubs.c.id, hubs.c.last_seen_ms, hubs.c.health, elders.c.short_address)
                .join(elders, elders.c.id == hubs.c.elder_id)
                .where(hubs.c.online.is_(True), hubs.c.health.is_not(None), *scope)
                .order_by(hubs.c.id)
            )
        ).all()
        failed = (
            await conn.execute(
                sa.select(
                    notifications.c.status,
                    notifications.c.status_at_ms,
                    notifications.c.created_at_ms,
                    notifications.c.purpose,
                    notifications.c.alarm_id,
                    sa.func.coalesce(doctors.c.name, notifications.c.to_phone, "?").label("who"),
                )
                .join(alarms, alarms.c.id == notifications.c.alarm_id)
                .join(elders, elders.c.id == alarms.c.elder_id)
                .outerjoin(doctors, doctors.c.id == notifications.c.doctor_id)
                .where(notifications.c.status.in_(SMS_FAILED), *scope)
                .order_by(notifications.c.created_at_ms)
                .limit(200)
            )
        ).all()
    by_kind: dict[str, list[Problem]] = {k: [] for k in FAULT_SECTIONS}
    for f in active:
        subject = f.hub_id if f.device_id == f.hub_id else f"{f.hub_id} / {f.device_id}"
        by_kind.setdefault(f.fault, []).append(
            Problem(subject, f.short_address, f.since_ms, f.detail)
        )
    return HealthBoard(
        hubs_offline=[Problem(h.id, h.short_address, h.last_seen_ms) for h in offline],
        faults=by_kind,
        sms_failed=[
            Problem(
                n.who,
                n.alarm_id[-6:].upper(),
                n.status_at_ms or n.created_at_ms,
                n.status,
            )
            for n in failed
        ],
        speakerphone_missing=[
            Problem(h.id, h.short_address, h.last_seen_ms)
            for h in voiced
            if isinstance(h.health, dict) and h.health.get("speakerphone") == "missing"
        ],
    )


UNITS_EN = {"s": "s", "min": "min", "h": "h", "d": "d"}


def lasted(now_ms: int, since_ms: int | None, units: Mapping[str, str] = UNITS_EN) -> str:
    """How long a problem has lasted, coarsely: "45 s", "12 min", "3 h", "2 d" (`units`:
    the reader's words for s, min, h, d)."""
    if since_ms is None:
        return "—"
    s = max(0, now_ms - since_ms) // 1000
    if s < 60:
        return f"{s} {units['s']}"
    if s < 3600:
        return f"{s // 60} {units['min']}"
    if s < 86400:
        return f"{s // 3600} {units['h']}"
    return f"{s // 86400} {units['d']}"
