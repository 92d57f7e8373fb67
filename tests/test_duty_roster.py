"""Duty rosters: weekly rules, rotations and overrides, in the team's local time."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from server.duty_roster import (
    DutyRoster,
    Override,
    OverrideKind,
    Rotation,
    Rule,
    always_on_duty,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEKDAYS = frozenset(range(5))


def at(*args: int, zone: ZoneInfo = SHANGHAI) -> int:
    return int(datetime(*args, tzinfo=zone).timestamp() * 1000)  # type: ignore[misc]


def day_and_night() -> DutyRoster:
    """Weekdays 08–20 the day rotation; every night 20–08 Dr Night; weekends Dr Weekend."""
    return DutyRoster(
        "team-a",
        rules=(
            Rule(WEEKDAYS, time(8), time(20), rotation="days"),
            Rule(frozenset(range(7)), time(20), time(8), member="night"),
            Rule(frozenset({5, 6}), time(8), time(20), member="weekend"),
        ),
        rotations=(Rotation("days", ("li", "wang", "zhao"), datetime(2026, 11, 2, 8), 7),),
    )


def test_a_weekday_belongs_to_the_rotation_whose_turn_it_is() -> None:
    roster = day_and_night()
    assert roster.on_duty(at(2026, 11, 2, 9)) == ["li"]  # Monday of the rotation's first week
    assert roster.on_duty(at(2026, 11, 9, 9)) == ["wang"]
    assert roster.on_duty(at(2026, 11, 16, 19, 59)) == ["zhao"]
    assert roster.on_duty(at(2026, 11, 23, 9)) == ["li"]  # the turn comes round again
    assert roster.on_duty(at(2026, 10, 26, 9)) == ["zhao"]  # before the start: periodic


def test_the_hand_over_is_at_the_rotation_time_in_local_time() -> None:
    roster = day_and_night()
    assert roster.on_duty(at(2026, 11, 9, 8)) == ["wang"]
    # 07:59 Monday local: the night shift that began on Sunday 20:00
    assert roster.on_duty(at(2026, 11, 9, 7, 59)) == ["night"]


def test_a_night_shift_crosses_midnight() -> None:
    roster = day_and_night()
    assert roster.on_duty(at(2026, 11, 4, 23, 30)) == ["night"]
    assert roster.on_duty(at(2026, 11, 5, 3)) == ["night"]
    assert roster.on_duty(at(2026, 11, 7, 12)) == ["weekend"]


def test_local_time_is_the_teams_own() -> None:
    roster = DutyRoster(
        "team-b",
        rules=(Rule(WEEKDAYS, time(9), time(17), member="anna"),),
        time_zone="Europe/Berlin",
    )
    berlin = ZoneInfo("Europe/Berlin")
    assert roster.on_duty(at(2026, 11, 2, 9, zone=berlin)) == ["anna"]
    assert roster.on_duty(at(2026, 11, 2, 9)) == []  # 09:00 in Shanghai is 02:00 in Berlin


def test_overrides_add_remove_and_replace_for_their_span_only() -> None:
    roster = day_and_night()
    start, end = at(2026, 11, 4, 12), at(2026, 11, 4, 14)
    sick = DutyRoster(
        roster.team_id,
        roster.rules,
        roster.rotations,
        overrides=(
            Override(OverrideKind.REPLACE, "chen", start, end, replaces="li"),
            Override(OverrideKind.ADD, "trainee", start, end),
            Override(OverrideKind.REMOVE, "night", at(2026, 11, 4, 20), at(2026, 11, 5, 8)),
        ),
        order=("chen", "trainee"),
    )
    assert sick.on_duty(at(2026, 11, 4, 11, 59)) == ["li"]
    assert sick.on_duty(start) == ["chen", "trainee"]
    assert sick.on_duty(end) == ["li"]
    assert sick.on_duty(at(2026, 11, 4, 22)) == []  # nobody: the dispatcher takes alarms


def test_several_on_duty_are_ranked_by_the_roster_order() -> None:
    roster = always_on_duty("team-a", ["dr-b", "dr-a", "dr-c"])
    assert roster.on_duty(at(2026, 11, 4, 3)) == ["dr-b", "dr-a", "dr-c"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Rule(member="a", rotation="r"),
        lambda: Rule(),
        lambda: Rule(frozenset({7}), member="a"),
        lambda: Rotation("r", (), datetime(2026, 1, 1)),
        lambda: Override(OverrideKind.ADD, "a", 10, 10),
        lambda: Override(OverrideKind.REPLACE, "a", 1, 10),
        lambda: DutyRoster("t", (Rule(rotation="missing"),)),
        lambda: DutyRoster("t", (), time_zone="Mars/Olympus"),
    ],
)
def test_inconsistent_rosters_are_refused(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((ValueError, KeyError)):
        build()
