"""The lock files (`requirements/<extra>.lock`, made by `make lock`) stay in step with
pyproject.toml: each extra has one, every dependency the extra names (through
`carehub[...]` self-references too) is pinned there to a version its range allows, and
every pin carries hashes, so `pip install --require-hashes` installs exactly that."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def direct(
    extras: dict[str, list[str]], extra: str, seen: frozenset[str] = frozenset()
) -> list[Requirement]:
    """What `carehub[extra]` asks for itself: the base dependencies and the extra's, with
    `carehub[a,b]` followed."""
    found = []
    for line in PYPROJECT["project"]["dependencies"] + extras[extra]:
        req = Requirement(line)
        if canonicalize_name(req.name) == "carehub":
            for inner in sorted(req.extras - seen):
                found += direct(extras, inner, seen | {inner})
        else:
            found.append(req)
    return found


def pins(lock: Path) -> tuple[dict[str, str], list[str]]:
    """name → pinned version, and the pins without a hash."""
    pinned: dict[str, str] = {}
    unhashed: list[str] = []
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    for entry in entries:
        m = PIN.match(entry)
        if m is None:
            continue
        pinned[canonicalize_name(m.group(1))] = m.group(2)
        if "--hash=sha256:" not in entry:
            unhashed.append(m.group(1))
    return pinned, unhashed


def problems(extra: str, extras: dict[str, list[str]] = EXTRAS) -> list[str]:
    lock = REPO / "requirements" / f"{extra}.lock"
    if not lock.is_file():
        return [f"no {lock.relative_to(REPO)}: run `make lock`"]
    pinned, unhashed = pins(lock)
    found = [f"{lock.name}: {name} has no hash" for name in unhashed]
    for req in direct(extras, extra):
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue  # not for this platform
        version = pinned.get(canonicalize_name(req.name))
        if version is None:
            found.append(f"{lock.name}: {req.name} is missing (run `make lock`)")
        elif not req.specifier.contains(version, prereleases=True):
            found.append(f"{lock.name}: {req.name}=={version} outside {req.specifier}")
    return found


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_has_a_lock_in_step_with_its_ranges(extra: str) -> None:
    assert problems(extra) == []


def test_a_lock_out_of_step_is_named() -> None:
    """The check itself: a range moved past the pin, and a dependency added, are caught."""
    hub = [r.replace("aiomqtt>=2.3,<3", "aiomqtt>=9") for r in EXTRAS["hub"]]
    found = problems("hub", {**EXTRAS, "hub": [*hub, "left-pad>=1"]})
    assert any("aiomqtt==" in p and "outside >=9" in p for p in found), found
    assert any("left-pad is missing" in p for p in found), found


def test_make_installs_the_tests_from_the_test_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "--require-hashes -r requirements/test.lock" in makefile
    assert "--no-deps -e ." in makefile
