"""Households, enrollment and what a hub registers (devices, self-tests): the SQL behind
the admin and hub routes of the provisioning issue.

A household is a home: its address, the elder(s) living there and the contracted team. A
hub belongs to one household and speaks for the household's first elder (by id). Codes,
tokens and the attempt counter live in the database, so every server process (SQLite or
PostgreSQL) applies the same one-time and rate-limit rules.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from carehub.api_contract import DeviceKind, SelftestReport
from server.auth import hash_token, new_token, revoked_hash
from server.db import serialise_on
from server.device_homes import Claim, claim
from server.enrollment import (
    CodeRefusal,
    EnrollLimits,
    code_hash,
    household_key,
    new_code,
    retry_after_s,
    source_key,
    why_refused,
)
from server.hub_identities import HubIdentities, HubIdentity
from server.schema import (
    device_homes,
    devices,
    elders,
    enroll_attempts,
    enrollment_codes,
    households,
    hubs,
    selftests,
    teams,
)
from server.store import UnknownDevice, device_household

NOT_PAIRED_HERE = "device not paired with this hub on the server"
"""Detail of a self-test check naming a device the server does not pair with the hub."""


class NotFound(LookupError):
    """A named record does not exist; the message says which."""


class Conflict(ValueError):
    """The request contradicts what is stored; the message says what to do."""


class DeviceTaken(Conflict):
    """Another household owns the device id (409): only an installer or admin can free it."""

    def __init__(self, device_id: str) -> None:
        super().__init__(
            f"device {device_id} belongs to another household: if it really is in this home,"
            f" an installer or admin releases it first (carehub admin release-device"
            f" --device {device_id}), then pair it again"
        )
        self.device_id = device_id


class CodeRefused(ValueError):
    def __init__(self, reason: CodeRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


class RateLimited(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Enrolled:
    hub_id: str
    household_id: str
    token: str


class HouseholdStore:
    def __init__(self, engine: AsyncEngine, hub_identities: HubIdentities | None = None) -> None:
        self.engine = engine
        self._hub_identities = hub_identities
        """This process's cache of hub tokens (`ServerStore.hub_identities`): cleared after
        each commit that changes a hub's token, elder or household, so it holds here at
        once (other processes see `hubs_version` move)."""

    def _hubs_changed(self) -> None:
        if self._hub_identities is not None:
            self._hub_identities.clear()

    # ------------------------------------------------------------ households (admin)

    async def create_household(
        self, household_id: str, address: str, team_id: str | None, now_ms: int
    ) -> None:
        async with self.engine.begin() as conn:
            if team_id is not None:
                await _require_team(conn, team_id)
            try:
                await conn.execute(
                    households.insert().values(
                        id=household_id, address=address, team_id=team_id, created_at_ms=now_ms
                    )
                )
            except IntegrityError:
                raise Conflict(f"household {household_id} exists already") from None

    async def assign_elder(self, household_id: str, elder_id: str) -> None:
        """The elder lives in this household (moving them out of any other); they take the
        household's contracted team when it has one. Hubs of the home they left speak for
        its first remaining elder (if none remains, still for them)."""
        async with self.engine.begin() as conn:
            home = await _household(conn, household_id)
            values: dict[str, Any] = {"household_id": household_id}
            if home.team_id is not None:
                values["team_id"] = home.team_id
            done = await conn.execute(elders.update().where(elders.c.id == elder_id).values(values))
            if done.rowcount == 0:
                raise NotFound(f"no elder {elder_id}")
            # hubs of the home the elder left now speak for whoever still lives there
            left = (
                await conn.execute(
                    sa.select(hubs.c.id, hubs.c.household_id).where(
                        hubs.c.elder_id == elder_id, hubs.c.household_id != household_id
                    )
                )
            ).all()
            for hub in left:
                remaining = await _first_elder(conn, hub.household_id)
                if remaining is not None:
                    await conn.execute(
                        hubs.update().where(hubs.c.id == hub.id).values(elder_id=remaining)
                    )
        if left:
            self._hubs_changed()

    async def assign_team(self, household_id: str, team_id: str) -> None:
        """The household's contracted team, and so its elders' (whom dispatch asks)."""
        async with self.engine.begin() as conn:
            await _household(conn, household_id)
            await _require_team(conn, team_id)
            await conn.execute(
                households.update().where(households.c.id == household_id).values(team_id=team_id)
            )
            await conn.execute(
                elders.update().where(elders.c.household_id == household_id).values(team_id=team_id)
            )

    async def move_hub(self, hub_id: str, household_id: str) -> None:
        """The hub now belongs to `household_id`. Its token is revoked at once (it must
        enroll again with a code of the new household) and its devices are unpaired; they
        stay the old household's (`device_homes`) until an admin releases them. A revoked
        token is still recognised, so the server can show a hub that keeps calling with
        it (`hub_refused`)."""
        async with self.engine.begin() as conn:
            await _household(conn, household_id)
            elder_id = await _first_elder(conn, household_id)
            if elder_id is None:
                raise Conflict(f"household {household_id} has no elder: assign one first")
            current = (
                await conn.execute(sa.select(hubs.c.token_hash).where(hubs.c.id == hub_id))
            ).scalar()
            if current is None:
                raise NotFound(f"no hub {hub_id}")
            await conn.execute(
                hubs.update()
                .where(hubs.c.id == hub_id)
                .values(
                    household_id=household_id,
                    elder_id=elder_id,
                    token_hash=revoked_hash(current),
                    online=False,
                )
            )
            await conn.execute(devices.delete().where(devices.c.hub_id == hub_id))
        self._hubs_changed()  # the revoked token is refused here from now on

    async def list_households(self) -> list[dict[str, Any]]:
        """Every household with its elders, hubs and last self-test, by id."""
        async with self.engine.connect() as conn:
            homes = (await conn.execute(sa.select(households).order_by(households.c.id))).all()
            people = (
                await conn.execute(
                    sa.select(elders.c.id, elders.c.household_id)
                    .where(elders.c.household_id.is_not(None))
                    .order_by(elders.c.id)
                )
            ).all()
            boxes = (
                await conn.execute(
                    sa.select(hubs.c.id, hubs.c.household_id)
                    .where(hubs.c.household_id.is_not(None))
                    .order_by(hubs.c.id)
                )
            ).all()
            last = await _last_selftests(conn)
        out = []
        for h in homes:
            out.append(
                {
                    "id": h.id,
                    "address": h.address,
                    "team_id": h.team_id,
                    "elder_ids": [e.id for e in people if e.household_id == h.id],
                    "hub_ids": [b.id for b in boxes if b.household_id == h.id],
                    "last_selftest": last.get(h.id),
                }
            )
        return out

    # ------------------------------------------------------------ enrollment

    async def create_code(
        self, household_id: str, created_by: str, now_ms: int, ttl_ms: int
    ) -> tuple[str, int]:
        """A new one-time code for the household and when it expires (epoch ms)."""
        code = new_code()
        expires = now_ms + ttl_ms
        async with self.engine.begin() as conn:
            await _household(conn, household_id)
            if await _first_elder(conn, household_id) is None:
                raise Conflict(f"household {household_id} has no elder: assign one first")
            await conn.execute(
                enrollment_codes.insert().values(
                    code_hash=code_hash(code),
                    household_id=household_id,
                    created_by=created_by[:80],
                    created_at_ms=now_ms,
                    expires_at_ms=expires,
                )
            )
        return code, expires

    async def count_attempt(
        self, source: str, code: str, now_ms: int, limits: EnrollLimits
    ) -> None:
        """Count an enrollment attempt from `source` (`server.enrollment.enroll_source`) with
        `code`, or raise `RateLimited` (not counted then, so a source that keeps trying is not
        locked out longer than the window). A code that no longer works (used, expired) also
        counts against its household.

        Checks are serialised across processes, or two could both see room for one more:
        SQLite by its write lock (the first statement writes), PostgreSQL by an advisory lock."""
        since = now_ms - limits.window_ms
        async with self.engine.begin() as conn:
            await serialise_on(conn, "carehub-enroll-attempts")
            await conn.execute(enroll_attempts.delete().where(enroll_attempts.c.at_ms <= since))
            known = (
                await conn.execute(
                    sa.select(
                        enrollment_codes.c.household_id,
                        enrollment_codes.c.used_at_ms,
                        enrollment_codes.c.expires_at_ms,
                    ).where(enrollment_codes.c.code_hash == code_hash(code))
                )
            ).first()
            by_source = source_key(source)
            by_household = (
                household_key(known.household_id)
                if known is not None
                and (known.used_at_ms is not None or known.expires_at_ms <= now_ms)
                else None
            )
            keys = [k for k in (by_source, by_household) if k is not None]
            times: dict[str, list[int]] = {k: [] for k in keys}
            for r in await conn.execute(
                sa.select(enroll_attempts.c.client, enroll_attempts.c.at_ms)
                .where(enroll_attempts.c.client.in_(keys), enroll_attempts.c.at_ms > since)
                .order_by(enroll_attempts.c.at_ms)
            ):
                times[r.client].append(int(r.at_ms))
            wait = retry_after_s(
                times[by_source], times[by_household] if by_household else [], limits, now_ms
            )
            if wait is not None:
                raise RateLimited(wait)
            await conn.execute(
                enroll_attempts.insert(), [{"client": k, "at_ms": now_ms} for k in keys]
            )

    async def enroll(self, code: str, hardware_id: str, now_ms: int) -> Enrolled:
        """Redeem the code (once, atomically, across processes) for a new hub and token.
        Raises `CodeRefused` (unknown, used, expired) or `Conflict` (no elder)."""
        hub_id = f"hub-{uuid.uuid4().hex[:16]}"
        token = new_token()
        digest = code_hash(code)
        async with self.engine.begin() as conn:
            # one statement decides: a second redemption (any process) updates no row
            redeemed = (
                await conn.execute(
                    enrollment_codes.update()
                    .where(
                        enrollment_codes.c.code_hash == digest,
                        enrollment_codes.c.used_at_ms.is_(None),
                        enrollment_codes.c.expires_at_ms > now_ms,
                    )
                    .values(used_at_ms=now_ms, hub_id=hub_id)
                    .returning(enrollment_codes.c.household_id)
                )
            ).first()
            if redeemed is None:
                row = (
                    await conn.execute(
                        sa.select(
                            enrollment_codes.c.used_at_ms, enrollment_codes.c.expires_at_ms
                        ).where(enrollment_codes.c.code_hash == digest)
                    )
                ).first()
                raise CodeRefused(
                    why_refused(
                        row.used_at_ms if row else None, row.expires_at_ms if row else None, now_ms
                    )
                )
            household_id = redeemed.household_id
            elder_id = await _first_elder(conn, household_id)
            if elder_id is None:  # rolls back: the code stays usable
                raise Conflict(f"household {household_id} has no elder: ask the office")
            await conn.execute(
                hubs.insert().values(
                    id=hub_id,
                    elder_id=elder_id,
                    household_id=household_id,
                    token_hash=hash_token(token),
                    hardware_id=hardware_id[:200],
                    enrolled_at_ms=now_ms,
                )
            )
        self._hubs_changed()
        return Enrolled(hub_id, household_id, token)

    # ------------------------------------------------------------ what a hub registers

    async def register_device(
        self, hub: HubIdentity, device_id: str, kind: DeviceKind, now_ms: int
    ) -> bool:
        """Pair the device with this hub; True when newly paired with it. A device of the
        hub's household paired with another of its hubs (a re-enrolled hub) moves to this
        one; another household's device raises `DeviceTaken` (an admin releases it)."""
        async with self.engine.begin() as conn:
            paired = (
                await conn.execute(
                    sa.select(devices.c.hub_id).where(devices.c.id == device_id).with_for_update()
                )
            ).scalar()
            owner = await device_household(conn, device_id)
            decision = claim(owner, paired, hub.hub_id, hub.household_id)
            if decision is Claim.REFUSED:
                raise DeviceTaken(device_id)
            if decision is Claim.SAME:
                await conn.execute(
                    devices.update().where(devices.c.id == device_id).values(kind=kind.value)
                )
                return False
            try:
                if decision is Claim.MOVED:
                    await conn.execute(
                        devices.update()
                        .where(devices.c.id == device_id)
                        .values(hub_id=hub.hub_id, kind=kind.value)
                    )
                else:
                    await conn.execute(
                        devices.insert().values(id=device_id, hub_id=hub.hub_id, kind=kind.value)
                    )
                homed = (
                    await conn.execute(
                        sa.select(device_homes.c.device_id).where(
                            device_homes.c.device_id == device_id
                        )
                    )
                ).first()
                if homed is None and hub.household_id is not None:
                    await conn.execute(
                        device_homes.insert().values(
                            device_id=device_id,
                            household_id=hub.household_id,
                            claimed_at_ms=now_ms,
                        )
                    )
            except IntegrityError:  # another request paired it in between
                raise DeviceTaken(device_id) from None
            return True

    async def remove_device(self, hub: HubIdentity, device_id: str) -> None:
        """Unpair one of this hub's devices: the household gives it up (another home may
        pair it). Another hub's device is answered like an unknown one (`UnknownDevice`)."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                devices.delete().where(devices.c.id == device_id, devices.c.hub_id == hub.hub_id)
            )
            if done.rowcount == 0:
                raise UnknownDevice(device_id)
            await conn.execute(device_homes.delete().where(device_homes.c.device_id == device_id))

    async def release_device(self, device_id: str) -> str | None:
        """An installer or admin frees a device id (unpaired, no household owns it), e.g.
        a button given to another home; the household that had it, if any. `NotFound`
        when no hub and no household had it."""
        async with self.engine.begin() as conn:
            owner = await device_household(conn, device_id)
            unpaired = await conn.execute(devices.delete().where(devices.c.id == device_id))
            freed = await conn.execute(
                device_homes.delete().where(device_homes.c.device_id == device_id)
            )
            if unpaired.rowcount == 0 and freed.rowcount == 0:
                raise NotFound(f"no device {device_id}")
        return owner

    async def record_selftest(self, hub: HubIdentity, report: SelftestReport, now_ms: int) -> bool:
        """Keep the report on the hub's household; True when new (False: a retry). A check
        naming a device this hub does not serve is recorded as failed (`NOT_PAIRED_HERE`),
        never refused: the installer's office must see a failed self-test."""
        async with self.engine.begin() as conn:
            seen = (
                await conn.execute(
                    sa.select(selftests.c.id).where(
                        selftests.c.hub_id == hub.hub_id, selftests.c.report_id == report.report_id
                    )
                )
            ).first()
            if seen is not None:
                return False
            own = set(
                (
                    await conn.execute(
                        sa.select(devices.c.id).where(devices.c.hub_id == hub.hub_id)
                    )
                ).scalars()
            )
            checks = [c.model_dump(mode="json") for c in report.checks]
            for check in checks:  # recorded all the same: a failed self-test is news too
                if check["device_id"] is not None and check["device_id"] not in own:
                    check["passed"] = False
                    check["detail"] = f"{NOT_PAIRED_HERE}; {check['detail']}"[:200]
            passed = report.passed and all(c["passed"] for c in checks)
            household_id = (
                await conn.execute(sa.select(hubs.c.household_id).where(hubs.c.id == hub.hub_id))
            ).scalar()
            if household_id is None:
                raise Conflict("this hub belongs to no household: ask the office to assign it")
            try:
                await conn.execute(
                    selftests.insert().values(
                        household_id=household_id,
                        hub_id=hub.hub_id,
                        report_id=report.report_id,
                        started_at_ms=report.started_at_ms,
                        finished_at_ms=report.finished_at_ms,
                        passed=passed,
                        test_alarm_id=report.test_alarm_id,
                        checks=checks,
                        received_at_ms=now_ms,
                    )
                )
            except IntegrityError:  # the same report, retried concurrently
                return False
            return True


async def _household(conn: AsyncConnection, household_id: str) -> Any:
    row = (await conn.execute(sa.select(households).where(households.c.id == household_id))).first()
    if row is None:
        raise NotFound(f"no household {household_id}")
    return row


async def _require_team(conn: AsyncConnection, team_id: str) -> None:
    if (await conn.execute(sa.select(teams.c.id).where(teams.c.id == team_id))).first() is None:
        raise NotFound(f"no team {team_id}")


async def _first_elder(conn: AsyncConnection, household_id: str) -> str | None:
    """The elder a household's hubs speak for: the first by id."""
    value = (
        await conn.execute(
            sa.select(elders.c.id)
            .where(elders.c.household_id == household_id)
            .order_by(elders.c.id)
            .limit(1)
        )
    ).scalar()
    return str(value) if value is not None else None


async def _last_selftests(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    """Each household's latest self-test (by when it finished)."""
    latest = (
        sa.select(
            selftests.c.household_id,
            sa.func.max(selftests.c.finished_at_ms).label("finished_at_ms"),
        )
        .group_by(selftests.c.household_id)
        .subquery()
    )
    rows = (
        await conn.execute(
            sa.select(
                selftests.c.household_id,
                selftests.c.hub_id,
                selftests.c.report_id,
                selftests.c.passed,
                selftests.c.finished_at_ms,
                selftests.c.checks,
            )
            .join(
                latest,
                sa.and_(
                    latest.c.household_id == selftests.c.household_id,
                    latest.c.finished_at_ms == selftests.c.finished_at_ms,
                ),
            )
            .order_by(selftests.c.id)
        )
    ).all()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        out[r.household_id] = {
            "hub_id": r.hub_id,
            "report_id": r.report_id,
            "passed": r.passed,
            "finished_at_ms": r.finished_at_ms,
            "failed_checks": [c["name"] for c in r.checks if not c.get("passed")],
        }
    return out
