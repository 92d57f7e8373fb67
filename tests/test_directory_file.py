"""The directory file an operator writes: the documented example loads, broken files are
refused with `file:LINE`, and docs/operations.md describes every field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from server import directory as d
from server.console.checklist_store import checklist_items
from server.console.checklists import DEFAULTS
from server.db import make_engine, migrate
from server.directory import DirectoryError, load_directory, read_directory
from server.schema import elders, emergency_contacts, teams
from server.sealed import Sealer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "directory.toml"
CAREHUB = Path(sys.executable).with_name("carehub")


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CAREHUB), "directory", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ,
    )


async def test_the_documented_example_loads(tmp_path: Path) -> None:
    directory = read_directory(EXAMPLE)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'server.db'}")
    sealer = Sealer("k" * 32)
    try:
        await migrate(engine)
        await load_directory(engine, directory, sealer)
        await load_directory(engine, directory, sealer)  # an upsert: again is fine
        async with engine.connect() as conn:
            kinds = dict((await conn.execute(sa.select(teams.c.id, teams.c.kind))).all())
            wang = (await conn.execute(sa.select(elders).where(elders.c.id == "elder-wang"))).one()
            contacts = (await conn.execute(sa.select(emergency_contacts.c.id))).scalars().all()
            welfare = await checklist_items(conn, "welfare")
            fall = await checklist_items(conn, "fall")
    finally:
        await engine.dispose()
    assert kinds == {"team-east": "care", "team-north": "care", "dispatch": "dispatch"}
    assert sealer.unseal(wang.key_safe_secret) == "4711" and "4711" not in wang.key_safe_secret
    assert sorted(contacts) == ["wang-neighbour", "wang-son"]
    assert welfare == ("已致电老人", "已致电家属或邻居", "已决定是否上门查看")  # the file's
    assert fall == DEFAULTS["fall"]  # left out: the built-in list
    east = next(t for t in directory.teams if t.id == "team-east")
    roster = d.roster_dutyroster(east, directory.doctors)
    assert roster.rules and roster.rotations and len(roster.overrides) == 2


def test_directory_check_accepts_the_example() -> None:
    result = check(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "3 teams" in result.stdout


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


BROKEN = {
    # (replace this line of the example, with this) → the error names that line
    "bad phone": ('phone = "+8613800000102"', 'phone = "13800000102"', "should match pattern"),
    "unknown team": ('team = "team-north"\nname = "Zhang San"', None, "unknown team"),
    "unknown rotation": ('rotation = "east-nights"', 'rotation = "east-days"', "unknown rotation"),
    "unknown day": ('days = "sat,sun"', 'days = "sat,sunday"', "unknown day"),
    "unknown field": ("care_level = 3", "care_levl = 3", "Extra inputs are not permitted"),
    "bad toml": ("shift_days = 7", "shift_days = = 7", "Invalid"),
    "unknown checklist kind": (
        'welfare = ["已致电老人"',
        'wellbeing = ["已致电老人"',
        "unknown alarm kind 'wellbeing': checklists are for button, fall, vitals, welfare",
    ),
    "long checklist item": (
        '"已决定是否上门查看"]',
        '"' + "已决定是否上门查看" * 9 + '"]',
        "is longer than 80 characters",
    ),
    "long triage window": (
        "operator_first_s = 60",
        "operator_first_s = 600",
        "less than or equal to 180",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_is_refused_naming_its_line(tmp_path: Path, case: str) -> None:
    old, new, reason = BROKEN[case]
    text = EXAMPLE.read_text()
    if new is None:  # an elder naming a team that does not exist
        old, new = (
            'team = "team-north"\nname = "Zhang San"',
            'team = "team-west"\nname = "Zhang San"',
        )
    assert old in text
    broken = text.replace(old, new)
    path = tmp_path / "directory.toml"
    path.write_text(broken)
    line = _line_of(broken, new.splitlines()[0])
    with pytest.raises(DirectoryError) as caught:
        read_directory(path)
    assert f"{path}:{line}:" in str(caught.value), str(caught.value)
    assert reason in str(caught.value)
    result = check(path)
    assert result.returncode == 1 and f"{path}:{line}:" in result.stderr
    assert "Traceback" not in result.stderr


def test_operator_first_without_an_operator_is_refused_at_its_table(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    assert 'role = "dispatcher"' in text
    broken = text.replace('mode = "parallel"', 'mode = "operator_first"').replace(
        'role = "dispatcher"', 'role = "nurse"'
    )
    path = tmp_path / "directory.toml"
    path.write_text(broken)
    result = check(path)
    assert result.returncode == 1 and "needs an operator" in result.stderr
    assert f"{path}:{_line_of(broken, '[triage]')}: triage:" in result.stderr
    path.write_text(text.replace('mode = "parallel"', 'mode = "operator_first"'))
    assert check(path).returncode == 0  # with its dispatchers, operator first is fine


def test_json_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "directory.json"
    path.write_text('{"teams": [\n  {"id": "a", "name": "A"},\n  {"id": "b" "name": "B"}\n]}')
    with pytest.raises(DirectoryError, match=rf"{path}:3: "):
        read_directory(path)


def test_operations_guide_describes_every_field() -> None:
    guide = (REPO / "docs" / "operations.md").read_text()
    models: list[type[BaseModel]] = [
        d.Team, d.TriageEntry, d.GeoEntry, d.RosterEntry, d.RotationEntry, d.RuleEntry,
        d.OverrideEntry,
        d.Doctor, d.PolicyEntry, d.StepEntry, d.Elder, d.ContactEntry, d.Hub, d.Device,
    ]  # fmt: skip
    missing = [
        f"{m.__name__}.{name}"
        for m in models
        for name in m.model_fields
        if f"`{name}`" not in guide
    ]
    assert not missing, f"docs/operations.md does not describe {missing}"
