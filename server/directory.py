"""Loading the care directory from a TOML/JSON file: teams (with rosters, bases and backup
teams), members, escalation policies, elders (with emergency contacts), hubs and devices.

Until installer enrollment exists this is how a deployment is provisioned; loading is an
upsert, so the same file can be applied again after edits. Hub tokens are stored hashed and
key-safe codes encrypted (`server.sealed`). `docs/operations.md` documents every field;
errors name the entry and, for TOML files, the line.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from datetime import datetime, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from carehub.api_contract import ID_PATTERN, DeviceKind, WearableChannel
from server.auth import REVOKED_PREFIX, hash_token
from server.console.checklists import list_problem
from server.duty_roster import (
    DEFAULT_TIME_ZONE,
    DutyRoster,
    Override,
    OverrideKind,
    Rotation,
    Rule,
    always_on_duty,
)
from server.elder_facts import BORN, ElderWarning, Sex
from server.escalation import EscalationPolicy, Step, Target
from server.schema import (
    checklists,
    device_homes,
    devices,
    doctors,
    elders,
    emergency_contacts,
    escalation_policies,
    households,
    hubs,
    teams,
)
from server.sealed import Sealer
from server.triage import MAX_OPERATOR_FIRST_S, TriageMode, TriagePolicy

log = logging.getLogger(__name__)
E164 = r"^\+[1-9]\d{6,14}$"
HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
PolicyKey = Literal[
    "urgent", "notice", "button_critical", "fall_critical", "vitals_critical", "vitals_warning"
]
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DirectoryError(ValueError):
    """The directory file cannot be loaded; the message names the entry (and line)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Entry(_Model):
    id: str = Field(pattern=ID_PATTERN)


class GeoEntry(_Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class RotationEntry(_Model):
    id: str = Field(pattern=ID_PATTERN)
    participants: list[str] = Field(min_length=1)
    start: datetime = Field(description="Local time at which the first participant starts.")
    shift_days: int = Field(7, ge=1, le=366)


class RuleEntry(_Model):
    days: str | list[int] = Field(
        "mon-sun", description='"mon-fri", "sat,sun", or weekday numbers (0 = Monday).'
    )
    start: time = time(0, 0)
    end: time = time(0, 0)
    member: str | None = None
    rotation: str | None = None

    @field_validator("days")
    @classmethod
    def _known_days(cls, value: str | list[int]) -> str | list[int]:
        _weekdays(value)
        return value

    def weekdays(self) -> frozenset[int]:
        return _weekdays(self.days)


def _weekdays(days: str | list[int]) -> frozenset[int]:
    """``"mon-fri"``, ``"sat,sun"``, ``"fri-mon"`` or ``[0, 1]`` → weekday numbers."""
    if isinstance(days, list):
        if not all(0 <= d <= 6 for d in days):
            raise ValueError(f"weekday numbers are 0 (Monday) … 6 (Sunday), not {days}")
        return frozenset(days)
    out: set[int] = set()
    for part in days.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"unknown day in {days!r}: use mon … sun")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        out |= {d % 7 for d in range(a, b + 1 if b >= a else b + 8)}
    return frozenset(out)


class OverrideEntry(_Model):
    kind: OverrideKind
    member: str
    replaces: str | None = None
    start: datetime = Field(description="Local time, in the team's time zone.")
    end: datetime


class RosterEntry(_Model):
    """A team's duty roster; without one, every member marked ``on_duty`` is always on duty."""

    order: list[str] = []
    rules: list[RuleEntry] = []
    rotations: list[RotationEntry] = []
    overrides: list[OverrideEntry] = []


class TriageEntry(_Model):
    """Does a press ring the console first, or start the doctor ladder at once?"""

    mode: TriageMode = TriageMode.PARALLEL
    operator_first_s: float = Field(
        default=60,
        gt=0,
        le=MAX_OPERATOR_FIRST_S,
        description="With operator_first: seconds the console rings before the ladder starts.",
    )

    def policy(self) -> TriagePolicy:
        return TriagePolicy(self.mode, self.operator_first_s)

    def stored(self) -> dict[str, Any] | None:
        """`teams.triage`: None for parallel (the default)."""
        if self.mode is TriageMode.PARALLEL:
            return None
        return {"mode": self.mode.value, "operator_first_s": self.operator_first_s}


class Team(_Entry):
    name: str
    kind: Literal["care", "dispatch"] = "care"
    time_zone: str = DEFAULT_TIME_ZONE
    service_area: str = Field(default="", max_length=400)
    base: GeoEntry | None = None
    backups: list[str] = Field(default=[], description="Backup teams, asked inside the circle.")
    roster: RosterEntry | None = None
    policies: dict[PolicyKey, str] = Field(
        default={},
        description="Which escalation policy an alarm climbs: by class (urgent, notice) or "
        "more specifically by kind and severity (button_critical, fall_critical, "
        "vitals_critical, vitals_warning).",
    )
    triage: TriageEntry | None = Field(
        default=None, description="This team's triage policy; unset: the directory's [triage]."
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value


class Doctor(_Entry):
    """A team member: a doctor, a nurse, or (in a dispatch team) a duty dispatcher."""

    team: str
    name: str
    phone: str = Field(pattern=E164, description="E.164, e.g. +8613800000000")
    language: Literal["zh", "en"] = "zh"
    role: Literal["doctor", "nurse", "dispatcher"] = "doctor"
    verified: bool = False
    on_duty: bool = True
    priority: int = Field(0, ge=-1000, le=1000)


class StepEntry(_Model):
    target: Target
    wait_s: float = Field(gt=0, le=24 * 3600)
    rank: int = Field(0, ge=0, le=20)


class PolicyEntry(_Entry):
    steps: list[StepEntry] = Field(min_length=1)
    repeat: int = Field(1, ge=0, le=10)

    def policy(self) -> EscalationPolicy:
        return EscalationPolicy(
            self.id, tuple(Step(s.target, s.wait_s, s.rank) for s in self.steps), self.repeat
        )


class ContactEntry(_Entry):
    name: str
    phone: str = Field(pattern=E164)
    language: Literal["zh", "en"] = "zh"
    relation: str = Field("", max_length=40)
    notify_on: list[Literal["accepted", "arrived", "cancelled", "resolved"]] = ["accepted"]


class CheckInEntry(_Model):
    """The daily check-in (报平安, docs/health-review.md): the elder's first short press in
    the window is the check-in; none by `window_end` raises a welfare check. Local times of
    the elder's team's `time_zone`."""

    window_start: str = Field("07:00", pattern=HH_MM, description="HH:MM, 24-hour clock.")
    window_end: str = Field("10:00", pattern=HH_MM, description="HH:MM, after window_start.")
    movement_counts: bool = Field(
        False,
        description="The pendant's ordinary movement in the window is the check-in instead of a"
        " press (every press is then a call for help).",
    )

    @model_validator(mode="after")
    def _window_ordered(self) -> CheckInEntry:
        if self.window_end <= self.window_start:  # HH:MM sorts as text
            raise ValueError(
                f"window_end {self.window_end} must be after window_start {self.window_start}"
                " (the same day)"
            )
        return self


class Elder(_Entry):
    team: str
    name: str
    address: str = Field("", max_length=400)
    short_address: str = Field("", max_length=100, description="What the SMS may name.")
    location: GeoEntry | None = None
    language: Literal["zh", "en"] = "zh"
    care_level: int = Field(0, ge=0, le=5, description="Care-needs level, 0 (none) … 5.")
    medical_notes: str = Field("", max_length=4000)
    key_safe_code: str | None = Field(None, max_length=40, description="Stored encrypted.")
    spo2_scale2: bool = False
    on_oxygen: bool = Field(False, description="On supplemental oxygen at home (NEWS2).")
    fall_sensitivity: float = Field(0.5, ge=0, le=1)
    wearable_channels: list[WearableChannel] | None = Field(
        None, description="The channels the elder's wearable reports; unset = whatever arrives."
    )
    check_in: CheckInEntry | None = Field(
        None, description="Ask for a daily check-in; unset = none (docs/health-review.md)."
    )
    inactivity: bool = Field(
        True, description="Welfare checks from the pendant's learnt daily rhythm."
    )
    phone: str | None = Field(None, pattern=E164, description="The elder's own phone.")
    home_phone: str | None = Field(None, pattern=E164, description="The phone at home.")
    born: str | None = Field(None, pattern=BORN, description="Year or date of birth.")
    sex: Sex | None = None
    warnings: list[ElderWarning] = Field(
        [], description="Badges for the operator and responder (server.elder_facts)."
    )
    contacts: list[ContactEntry] = []


class Hub(_Entry):
    elder: str
    token: str = Field(min_length=16, description="Shown to the installer; stored hashed.")


class Device(_Entry):
    hub: str
    kind: DeviceKind


class Directory(_Model):
    triage: TriageEntry = Field(
        default=TriageEntry(), description="The centre's triage policy, for every team."
    )
    checklists: dict[str, list[str]] = Field(
        default={},
        description="The centre's own checklist per alarm kind (button, fall, vitals, "
        "welfare), in its own words; a kind left out keeps the built-in list.",
    )
    teams: list[Team] = []
    doctors: list[Doctor] = []
    policies: list[PolicyEntry] = []
    elders: list[Elder] = []
    hubs: list[Hub] = []
    devices: list[Device] = []

    @field_validator("checklists")
    @classmethod
    def _checklists_valid(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for kind, items in value.items():
            problem = list_problem(kind, items)
            _require(problem is None, str(problem), ("checklists", kind))
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> Directory:
        team_ids = {t.id for t in self.teams}
        member_ids = {d.id for d in self.doctors}
        policy_ids = {p.id for p in self.policies}
        for i, t in enumerate(self.teams):
            for j, b in enumerate(t.backups):
                ok = b in team_ids and b != t.id
                _require(ok, f"team {t.id}: unknown backup team {b!r}", ("teams", i, "backups", j))
            for cls, pid in t.policies.items():
                _require(
                    pid in policy_ids,
                    f"team {t.id}: {cls} policy {pid!r} is not defined in [[policies]]",
                    ("teams", i, "policies", cls),
                )
            if t.roster:
                _check_roster(t.id, t.roster, member_ids, ("teams", i, "roster"))
            try:
                roster_dutyroster(t, [])
            except ValueError as problem:
                raise ReferenceProblem(f"team {t.id}: {problem}", ("teams", i, "roster")) from None
        dispatchers = any(d.role == "dispatcher" for d in self.doctors)
        for i, t in enumerate(self.teams):
            mode = (t.triage or self.triage).mode
            _require(
                mode is TriageMode.PARALLEL or dispatchers,
                f"team {t.id}: triage operator_first needs an operator: no member has role"
                ' "dispatcher"',
                ("teams", i, "triage") if t.triage else ("triage",),
            )
        for i, d in enumerate(self.doctors):
            _require(
                d.team in team_ids,
                f"member {d.id}: unknown team {d.team!r}",
                ("doctors", i, "team"),
            )
        for i, e in enumerate(self.elders):
            _require(
                e.team in team_ids, f"elder {e.id}: unknown team {e.team!r}", ("elders", i, "team")
            )
        elder_ids = {e.id for e in self.elders}
        for i, h in enumerate(self.hubs):
            _require(
                h.elder in elder_ids, f"hub {h.id}: unknown elder {h.elder!r}", ("hubs", i, "elder")
            )
        hub_ids = {h.id for h in self.hubs}
        for i, dv in enumerate(self.devices):
            _require(
                dv.hub in hub_ids, f"device {dv.id}: unknown hub {dv.hub!r}", ("devices", i, "hub")
            )
        for name in ("teams", "doctors", "policies", "elders", "hubs", "devices"):
            seen: set[str] = set()
            for i, entry in enumerate(getattr(self, name)):
                _require(entry.id not in seen, f"duplicate id {entry.id!r}", (name, i, "id"))
                seen.add(entry.id)
        return self


def _check_roster(
    team_id: str, roster: RosterEntry, member_ids: set[str], at: tuple[str | int, ...]
) -> None:
    def known(member: str | None, loc: tuple[str | int, ...]) -> None:
        ok = member is None or member in member_ids
        _require(ok, f"team {team_id}: roster names unknown member {member!r}", at + loc)

    rotation_ids = {r.id for r in roster.rotations}
    for j, m in enumerate(roster.order):
        known(m, ("order", j))
    for j, rot in enumerate(roster.rotations):
        for k, m in enumerate(rot.participants):
            known(m, ("rotations", j, "participants", k))
    for j, rule in enumerate(roster.rules):
        known(rule.member, ("rules", j, "member"))
        _require(
            rule.rotation is None or rule.rotation in rotation_ids,
            f"team {team_id}: unknown rotation {rule.rotation!r}",
            at + ("rules", j, "rotation"),
        )
        _require(
            (rule.member is None) != (rule.rotation is None),
            f"team {team_id}: a roster rule names exactly one of member or rotation",
            at + ("rules", j),
        )
    for j, o in enumerate(roster.overrides):
        known(o.member, ("overrides", j, "member"))
        known(o.replaces, ("overrides", j, "replaces"))


class ReferenceProblem(ValueError):
    """A cross-entry check failed; `loc` points at the offending field for the message."""

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.loc = loc


def _require(ok: bool, message: str, loc: tuple[str | int, ...] = ()) -> None:
    if not ok:
        raise ReferenceProblem(message, loc)


def roster_dutyroster(team: Team, members: list[Doctor]) -> DutyRoster:
    """The team's `DutyRoster`; without a roster, its on-duty members always, by priority."""
    if team.roster is None:
        ranked = sorted((m for m in members if m.on_duty), key=lambda m: (m.priority, m.id))
        return always_on_duty(team.id, [m.id for m in ranked])
    zone = ZoneInfo(team.time_zone)
    r = team.roster
    return DutyRoster(
        team.id,
        rules=tuple(
            Rule(x.weekdays(), x.start, x.end, member=x.member, rotation=x.rotation)
            for x in r.rules
        ),
        rotations=tuple(
            Rotation(x.id, tuple(x.participants), x.start.replace(tzinfo=None), x.shift_days)
            for x in r.rotations
        ),
        overrides=tuple(
            Override(x.kind, x.member, _local_ms(x.start, zone), _local_ms(x.end, zone), x.replaces)
            for x in r.overrides
        ),
        order=tuple(r.order),
        time_zone=team.time_zone,
    )


def _local_ms(when: datetime, zone: ZoneInfo) -> int:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=zone)
    return int(aware.timestamp() * 1000)


def read_directory(path: Path) -> Directory:
    """Parse and validate a directory file; `DirectoryError` says what and where."""
    text = path.read_text(encoding="utf-8")
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as e:
        at = re.search(r"\(at line (\d+), column \d+\)", str(e))
        raise DirectoryError(f"{path}:{at.group(1)}: {e}" if at else f"{path}: {e}") from None
    except json.JSONDecodeError as e:
        raise DirectoryError(f"{path}:{e.lineno}: {e.msg}") from None
    try:
        return Directory.model_validate(data)
    except ValidationError as e:
        raise DirectoryError(_describe(path, text, data, e)) from None


def _describe(path: Path, text: str, data: Any, error: ValidationError) -> str:
    lines = []
    for err in error.errors()[:10]:
        cause = (err.get("ctx") or {}).get("error")
        raw = cause.loc if isinstance(cause, ReferenceProblem) else err["loc"]
        loc = [p for p in raw if p != "__root__"]
        where = ".".join(str(p) for p in loc) or "the file"
        line = _toml_line(text, loc) if path.suffix == ".toml" else None
        entry = _entry_id(data, loc)
        prefix = f"{path}:{line}" if line else str(path)
        msg = str(cause) if isinstance(cause, ReferenceProblem) else err["msg"]
        lines.append(f"{prefix}: {where}{f' (id {entry})' if entry else ''}: {msg}")
    return "\n".join(lines)


def _entry_id(data: Any, loc: list[Any]) -> str | None:
    node = data
    found = None
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(node.get("id"), str):
            found = node["id"]
    return found


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _toml_line(text: str, loc: list[Any]) -> int | None:
    """Best effort: follow `loc` through ``[[array]]`` / ``[table]`` headers (the n-th one
    for an index), then to the offending ``key =`` line; else the innermost header found."""
    rows = text.splitlines()
    headers = [
        (i, m.group(1) == "[[", m.group(2).replace(" ", ""))
        for i, ln in enumerate(rows)
        if (m := _HEADER.match(ln))
    ]
    lo, hi, found = 0, len(rows), None  # the region (0-based lines) the path is in
    path: list[str] = []
    for part in loc:
        if isinstance(part, str):
            path.append(part)
            continue
        name = ".".join(path)
        own = [i for i, is_array, h in headers if is_array and h == name and lo <= i < hi]
        if part >= len(own):
            break  # an inline array or table: look for its key below
        start = own[part]
        end = next(
            (i for i, _, h in headers if i > start and (h == name or not h.startswith(name + "."))),
            len(rows),
        )
        lo, hi, found = start, min(end, hi), start + 1
    key = next((p for p in reversed(loc) if isinstance(p, str)), None)
    if key is not None and found is not None:
        for i in range(lo + 1, hi):
            if re.match(rf"^\s*{re.escape(key)}\s*=", rows[i]):
                return i + 1
    if found is None and key is not None:  # a top-level key, or table (`[triage]`)
        table = next((i for i, is_array, h in headers if not is_array and h == loc[0]), None)
        if table is not None:
            end = next((i for i, _, _ in headers if i > table), len(rows))
            for i in range(table + 1, end):
                if len(loc) > 1 and re.match(rf"^\s*{re.escape(key)}\s*=", rows[i]):
                    return i + 1
            return table + 1
        for i, ln in enumerate(rows):
            if re.match(rf"^\s*{re.escape(str(loc[0]))}\s*=", ln):
                return i + 1
    return found


async def _upsert(conn: AsyncConnection, table: sa.Table, key: str, values: dict[str, Any]) -> None:
    col = table.c[key]
    exists = (await conn.execute(sa.select(col).where(col == values[key]))).first()
    if exists:
        await conn.execute(table.update().where(col == values[key]).values(**values))
    else:
        await conn.execute(table.insert().values(**values))


async def load_directory(
    engine: AsyncEngine, directory: Directory, sealer: Sealer | None = None
) -> None:
    """Upsert every entry, parents first, in one transaction."""
    if sealer is None and any(e.key_safe_code for e in directory.elders):
        raise DirectoryError(
            "the directory holds key-safe codes: set CAREHUB_SECRET_KEY so they are stored "
            "encrypted"
        )
    async with engine.begin() as conn:
        await conn.execute(checklists.delete())  # the file's lists, as a whole
        for kind, items in directory.checklists.items():
            await conn.execute(checklists.insert().values(kind=kind, texts=items))
        for p in directory.policies:
            await _upsert(
                conn,
                escalation_policies,
                "id",
                {"id": p.id, "definition": p.model_dump(mode="json", exclude={"id"})},
            )
        for t in directory.teams:
            await _upsert(
                conn,
                teams,
                "id",
                {
                    "id": t.id,
                    "name": t.name,
                    "kind": t.kind,
                    "time_zone": t.time_zone,
                    "service_area": t.service_area,
                    "base_lat": t.base.lat if t.base else None,
                    "base_lon": t.base.lon if t.base else None,
                    "backup_team_ids": t.backups,
                    "roster": t.roster.model_dump(mode="json") if t.roster else None,
                    "policies": dict(t.policies),
                    "triage": (t.triage or directory.triage).stored(),
                },
            )
        for d in directory.doctors:
            await _upsert(
                conn,
                doctors,
                "id",
                {
                    "id": d.id,
                    "team_id": d.team,
                    "name": d.name,
                    "phone": d.phone,
                    "language": d.language,
                    "role": d.role,
                    "verified": d.verified,
                    "on_duty": d.on_duty,
                    "priority": d.priority,
                },
            )
        for e in directory.elders:
            await _upsert(
                conn,
                elders,
                "id",
                {
                    "id": e.id,
                    "team_id": e.team,
                    "name": e.name,
                    "address": e.address,
                    "short_address": e.short_address,
                    "lat": e.location.lat if e.location else None,
                    "lon": e.location.lon if e.location else None,
                    "language": e.language,
                    "care_level": e.care_level,
                    "medical_notes": e.medical_notes,
                    "key_safe_secret": (
                        sealer.seal(e.key_safe_code) if sealer and e.key_safe_code else None
                    ),
                    "spo2_scale2": e.spo2_scale2,
                    "on_oxygen": e.on_oxygen,
                    "fall_sensitivity": e.fall_sensitivity,
                    "wearable_channels": e.wearable_channels,
                    "check_in": e.check_in.model_dump(mode="json") if e.check_in else None,
                    "inactivity": e.inactivity,
                    "phone": e.phone,
                    "home_phone": e.home_phone,
                    "born": e.born,
                    "sex": e.sex.value if e.sex else None,
                    "warnings": [w.value for w in e.warnings],
                },
            )
            await conn.execute(
                emergency_contacts.delete().where(emergency_contacts.c.elder_id == e.id)
            )
            for c in e.contacts:
                await conn.execute(
                    emergency_contacts.insert().values(
                        id=c.id,
                        elder_id=e.id,
                        name=c.name,
                        phone=c.phone,
                        language=c.language,
                        relation=c.relation,
                        notify_on=list(c.notify_on),
                    )
                )
        for h in directory.hubs:
            current = (
                await conn.execute(sa.select(hubs.c.token_hash).where(hubs.c.id == h.id))
            ).scalar()
            if current is not None and current.startswith(REVOKED_PREFIX):
                log.warning("directory: hub %s was moved (credential revoked): left alone", h.id)
                continue
            await _upsert(
                conn,
                hubs,
                "id",
                {
                    "id": h.id,
                    "elder_id": h.elder,
                    "token_hash": hash_token(h.token),
                    "household_id": await _implicit_household(conn, h.elder),
                },
            )
        now_ms = int(datetime.now().timestamp() * 1000)
        for dv in directory.devices:
            await _upsert(
                conn, devices, "id", {"id": dv.id, "hub_id": dv.hub, "kind": dv.kind.value}
            )
            home = (
                await conn.execute(sa.select(hubs.c.household_id).where(hubs.c.id == dv.hub))
            ).scalar()
            if home is not None:  # the device id is that household's (`device_homes`)
                await _upsert(
                    conn,
                    device_homes,
                    "device_id",
                    {"device_id": dv.id, "household_id": home, "claimed_at_ms": now_ms},
                )


async def _implicit_household(conn: AsyncConnection, elder_id: str) -> str:
    """The household of a directory file's hub: its elder's, else a new one named after
    the elder (their address and team), which the elder joins."""
    elder = (
        await conn.execute(
            sa.select(elders.c.household_id, elders.c.address, elders.c.team_id).where(
                elders.c.id == elder_id
            )
        )
    ).one()
    if elder.household_id is not None:
        return str(elder.household_id)
    exists = (
        await conn.execute(sa.select(households.c.id).where(households.c.id == elder_id))
    ).first()
    if exists is None:
        await conn.execute(
            households.insert().values(
                id=elder_id,
                address=elder.address,
                team_id=elder.team_id,
                created_at_ms=int(datetime.now().timestamp() * 1000),
            )
        )
    await conn.execute(elders.update().where(elders.c.id == elder_id).values(household_id=elder_id))
    return elder_id
