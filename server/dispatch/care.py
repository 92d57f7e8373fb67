"""The care map as dispatch reads it: the directory's teams, members and escalation
policies, rebuilt only when the directory's version moved (migration 0009)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.care_map import CareMap, Member, TeamView
from server.directory import Doctor, RosterEntry, Team, roster_dutyroster
from server.escalation import EscalationPolicy, GeoPoint, Step, Target
from server.schema import directory_version, doctors, escalation_policies, teams
from server.triage import PARALLEL, TriageMode, TriagePolicy


async def care_map_if_changed(engine: AsyncEngine, known: int | None) -> tuple[int, CareMap] | None:
    """The directory's version (bumped by the database on every change, migration 0009)
    and its care map; None, after one small read, when the version is still `known`."""
    async with engine.connect() as conn:
        # read first: a change made while the rows are read bumps it past this value,
        # so the next check rebuilds again
        version = int((await conn.execute(sa.select(directory_version.c.version))).scalar() or 0)
        if version == known:
            return None
        team_rows = (await conn.execute(sa.select(teams))).all()
        member_rows = (await conn.execute(sa.select(doctors))).all()
        policy_rows = (await conn.execute(sa.select(escalation_policies))).all()
    # building is pure CPU (a second for 10 000 teams): off the event loop, so requests
    # are answered meanwhile
    return version, await asyncio.to_thread(build_care_map, team_rows, member_rows, policy_rows)


def build_care_map(
    team_rows: Sequence[Any], member_rows: Sequence[Any], policy_rows: Sequence[Any]
) -> CareMap:
    """The care map from the directory's rows (teams, members, escalation policies)."""
    members = {
        r.id: Member(r.id, r.team_id, r.name, r.phone, r.language, r.role) for r in member_rows
    }
    by_team: dict[str, list[Any]] = {}
    for m in member_rows:  # grouped once: a scan per team is quadratic in the directory
        by_team.setdefault(m.team_id, []).append(m)
    team_views: dict[str, TeamView] = {}
    for t in team_rows:
        entry = Team(
            id=t.id,
            name=t.name,
            kind=t.kind,
            time_zone=t.time_zone,
            roster=RosterEntry.model_validate(t.roster) if t.roster else None,
        )
        team_members = [
            Doctor(
                id=m.id,
                team=m.team_id,
                name=m.name,
                phone=m.phone,
                on_duty=m.on_duty,
                priority=m.priority,
            )
            for m in by_team.get(t.id, [])
        ]
        base = GeoPoint(t.base_lat, t.base_lon) if t.base_lat is not None else None
        team_views[t.id] = TeamView(
            t.id,
            t.name,
            roster_dutyroster(entry, team_members),
            t.kind,
            base,
            tuple(t.backup_team_ids or ()),
            dict(t.policies or {}),
            triage_policy(t.triage),
        )
    policies = {
        p.id: EscalationPolicy(
            p.id,
            tuple(
                Step(Target(s["target"]), float(s["wait_s"]), int(s.get("rank", 0)))
                for s in p.definition["steps"]
            ),
            int(p.definition.get("repeat", 1)),
        )
        for p in policy_rows
    }
    return CareMap(team_views, members, policies)


def triage_policy(stored: Any) -> TriagePolicy:
    """A team's `teams.triage` (NULL: parallel). A stored value this process cannot read
    (written by a newer one) falls back to parallel: the ladder is never held by mistake."""
    if not stored:
        return PARALLEL
    try:
        return TriagePolicy(TriageMode(stored["mode"]), float(stored["operator_first_s"]))
    except (KeyError, TypeError, ValueError):
        return PARALLEL
