"""Escalation policies walked step by step on a fake clock (pure: no database, no SMS)."""

from __future__ import annotations

import pytest

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.clock import FakeClock
from server.escalation import (
    NOTICE,
    URGENT,
    Candidates,
    EscalationPolicy,
    Exhausted,
    GeoPoint,
    Notify,
    Step,
    Target,
    backup_teams_in_circle,
    default_policy,
    estimated_travel_s,
    haversine_km,
    move_on_early,
    take_step,
)

TEAM = Candidates(team_on_duty=("li", "wang"), backups_on_duty=("zhao", "sun"))


def walk(policy: EscalationPolicy, candidates: Candidates, clock: FakeClock) -> list[Notify]:
    """Let every step time out: what the ladder does when nobody ever answers."""
    taken: list[Notify] = []
    position = 0
    while True:
        decision = take_step(policy, position, candidates, clock.now_ms())
        if isinstance(decision, Exhausted):
            return taken
        taken.append(decision)
        clock.advance((decision.due_ms - clock.now_ms()) / 1000)
        position = decision.position + 1


def test_nobody_answers_it_climbs_team_backup_dispatcher_and_repeats() -> None:
    clock = FakeClock()
    start = clock.now_ms()
    steps = walk(URGENT, TEAM, clock)
    first_round = [(s.members, s.dispatcher) for s in steps[:4]]
    assert first_round == [
        (("li",), False),
        (("wang",), False),
        (("zhao", "sun"), False),
        ((), True),
    ]
    assert [s.due_ms - start for s in steps[:4]] == [60_000, 120_000, 180_000, 300_000]
    assert len(steps) == URGENT.length == 12  # three rounds
    assert steps[4].members == ("li",)


def test_nobody_on_duty_goes_straight_to_the_dispatcher() -> None:
    clock = FakeClock()
    decision = take_step(URGENT, 0, Candidates(team_on_duty=()), clock.now_ms())
    assert isinstance(decision, Notify)
    assert decision.dispatcher and decision.members == ()
    assert decision.position == 3 and decision.skipped == 3
    assert decision.due_ms == clock.now_ms() + 120_000


def test_a_single_doctor_team_skips_the_missing_second_rank() -> None:
    clock = FakeClock()
    steps = walk(URGENT, Candidates(team_on_duty=("li",)), clock)
    assert [(s.members, s.dispatcher) for s in steps[:2]] == [(("li",), False), ((), True)]


def test_a_decline_moves_on_at_once_and_the_decliner_is_not_asked_again() -> None:
    clock = FakeClock()
    first = take_step(URGENT, 0, TEAM, clock.now_ms())
    assert isinstance(first, Notify) and first.members == ("li",)
    excluded = frozenset({"li"})
    assert move_on_early(first.members, excluded, first.dispatcher)
    after = Candidates(TEAM.team_on_duty, TEAM.backups_on_duty, excluded)
    second = take_step(URGENT, first.position + 1, after, clock.now_ms())
    assert isinstance(second, Notify) and second.members == ("wang",)
    # on the next round li is skipped; wang is told again
    again = take_step(URGENT, 4, after, clock.now_ms())
    assert isinstance(again, Notify) and again.members == ("wang",) and again.skipped == 1


def test_one_undelivered_member_of_a_group_step_does_not_end_the_wait() -> None:
    assert not move_on_early(("zhao", "sun"), frozenset({"zhao"}), False)
    assert move_on_early(("zhao", "sun"), frozenset({"zhao", "sun"}), False)
    assert not move_on_early((), frozenset(), True)


def test_warnings_climb_slowly_and_once() -> None:
    assert default_policy(AlarmKind.VITALS, Severity.WARNING) is NOTICE
    assert default_policy(AlarmKind.VITALS, Severity.CRITICAL) is URGENT
    assert default_policy(AlarmKind.BUTTON, Severity.CRITICAL) is URGENT
    clock = FakeClock()
    steps = walk(NOTICE, TEAM, clock)
    assert [s.due_ms for s in steps][0] - FakeClock().now_ms() == 600_000
    assert len(steps) == 3 and steps[-1].dispatcher


@pytest.mark.parametrize(
    "build",
    [
        lambda: EscalationPolicy("empty", ()),
        lambda: EscalationPolicy("zero", (Step(Target.DISPATCHER, 0),)),
        lambda: EscalationPolicy("neg", (Step(Target.DISPATCHER, 10),), repeat=-1),
    ],
)
def test_policies_that_cannot_work_are_refused(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        build()


def test_backup_teams_are_those_whose_base_reaches_the_elder_in_time_nearest_first() -> None:
    elder = GeoPoint(39.9289, 116.3883)  # central Beijing
    near = GeoPoint(39.9400, 116.4000)  # ~1.6 km
    middle = GeoPoint(39.9700, 116.4100)  # ~5 km: 17 min
    far = GeoPoint(40.2000, 116.6000)  # ~35 km
    assert 1.4 < haversine_km(elder, near) < 1.8
    assert estimated_travel_s(elder, near) < 6 * 60
    bases = [("far", far), ("middle", middle), ("near", near)]
    assert backup_teams_in_circle(elder, bases) == ["near", "middle"]
    assert backup_teams_in_circle(elder, bases, circle_s=360) == ["near"]
    # the travel estimate is replaceable (a routing service, a congested hour)
    assert backup_teams_in_circle(elder, bases, travel=lambda a, b: 0.0) == [
        "far",
        "middle",
        "near",
    ]


def test_a_team_can_give_each_kind_of_alarm_its_own_ladder() -> None:
    from server.care_map import CareMap, TeamView
    from server.duty_roster import always_on_duty

    fast = EscalationPolicy("fast-falls", (Step(Target.DISPATCHER, 30),))
    team = TeamView("t", "T", always_on_duty("t", ["a"]), policies={"fall_critical": "fast-falls"})
    care = CareMap({"t": team}, {}, {"fast-falls": fast})
    assert care.policy_for("t", AlarmKind.FALL, Severity.CRITICAL) is fast
    assert care.policy_for("t", AlarmKind.BUTTON, Severity.CRITICAL) is URGENT
    assert care.policy_for("t", AlarmKind.VITALS, Severity.WARNING) is NOTICE
    assert care.policy_for("unknown-team", AlarmKind.FALL, Severity.CRITICAL) is URGENT
