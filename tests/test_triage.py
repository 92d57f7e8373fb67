"""Operator triage (issue 21): the policy and the outcomes as pure decisions, then what they
do through the real dispatch store and escalator on a simulated clock (SQLite and
PostgreSQL), SMS going to a recording notifier."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from carehub.admin_contract import AlarmDetail
from carehub.alarm_lifecycle import AlarmState
from server.directory import Directory
from server.dispatch.care import triage_policy
from server.schema import alarm_events, alarms, escalations, notifications
from server.triage import (
    PARALLEL,
    LadderMove,
    TriageEffect,
    TriageMode,
    TriageOutcome,
    TriagePolicy,
    TriageRefused,
    decide,
    first_step_due_ms,
)
from tests.test_escalation_scenarios import DIRECTORY, HUB, PHONE, World, open_world

FIRST = TriagePolicy(TriageMode.OPERATOR_FIRST, 60)
T0 = 1_700_000_000_000
SON = "+8613900000001"


# ------------------------------------------------------------ the core


def test_operator_first_holds_the_first_step_for_its_window_only() -> None:
    assert first_step_due_ms(FIRST, T0, False, None) == T0 + 60_000
    assert first_step_due_ms(PARALLEL, T0, False, None) == T0
    # an outcome lifts the hold; a self-test is never held (it proves the first SMS)
    assert first_step_due_ms(FIRST, T0, False, TriageOutcome.SEND_DOCTOR) == T0
    assert first_step_due_ms(FIRST, T0, True, None) == T0


def test_what_each_outcome_does() -> None:
    held, running = True, False
    for state in (AlarmState.RECEIVED, AlarmState.DISPATCHED, AlarmState.ACCEPTED):
        for ladder in (held, running):
            assert decide(TriageOutcome.ACCIDENTAL_PRESS, state, ladder) == TriageEffect(
                AlarmState.CANCELLED, "false_alarm", LadderMove.CLOSE
            )
            assert decide(TriageOutcome.NO_HELP_NEEDED, state, ladder) == TriageEffect(
                AlarmState.RESOLVED, "by_phone", LadderMove.CLOSE
            )
    for outcome in (TriageOutcome.SEND_DOCTOR, TriageOutcome.AMBULANCE_CALLED):
        assert decide(outcome, AlarmState.RECEIVED, held) == TriageEffect(
            None, None, LadderMove.START_NOW
        )
        # a step is already out (or someone accepted): the ladder keeps its pace
        assert decide(outcome, AlarmState.DISPATCHED, running).ladder is LadderMove.KEEP
    for final in (AlarmState.RESOLVED, AlarmState.CANCELLED):
        with pytest.raises(TriageRefused, match=final.value):
            decide(TriageOutcome.SEND_DOCTOR, final, held)


def test_the_policy_is_bounded_and_read_back_safely() -> None:
    with pytest.raises(ValueError):
        TriagePolicy(TriageMode.OPERATOR_FIRST, 0)
    with pytest.raises(ValueError):
        TriagePolicy(TriageMode.OPERATOR_FIRST, 181)
    assert triage_policy({"mode": "operator_first", "operator_first_s": 45}) == TriagePolicy(
        TriageMode.OPERATOR_FIRST, 45
    )
    # NULL, or a value a newer server wrote: never held by mistake
    for stored in (None, {}, {"mode": "ask_the_cat"}, {"mode": "operator_first"}):
        assert triage_policy(stored) == PARALLEL


def test_the_directory_sets_the_policy_per_team_or_for_the_centre() -> None:
    d = copy.deepcopy(DIRECTORY)
    d["triage"] = {"mode": "operator_first", "operator_first_s": 30}
    d["teams"][1]["triage"] = {"mode": "parallel"}  # type: ignore[index]
    directory = Directory.model_validate(d)
    stored = [(t.triage or directory.triage).stored() for t in directory.teams]
    assert stored[0] == {"mode": "operator_first", "operator_first_s": 30} and stored[1] is None
    without_operator = copy.deepcopy(d)
    without_operator["doctors"] = [
        m
        for m in without_operator["doctors"]  # type: ignore[attr-defined]
        if m.get("role") != "dispatcher"
    ]
    with pytest.raises(ValueError, match="needs an operator"):
        Directory.model_validate(without_operator)
    with pytest.raises(ValueError, match="operator_first_s"):
        Directory.model_validate(
            {**d, "triage": {"mode": "operator_first", "operator_first_s": 600}}
        )


# ------------------------------------------------------------ through the store and escalator


def _operator_first(seconds: float = 60) -> dict[str, Any]:
    d = copy.deepcopy(DIRECTORY)
    d["triage"] = {"mode": "operator_first", "operator_first_s": seconds}
    return d


@pytest.fixture
async def first(database_url: str) -> AsyncIterator[World]:
    async with open_world(database_url, _operator_first(), merge_repeats=False) as w:
        yield w


@pytest.fixture
async def parallel(database_url: str) -> AsyncIterator[World]:
    async with open_world(database_url, DIRECTORY, merge_repeats=False) as w:
        yield w


async def _triage(world: World, alarm: str, outcome: TriageOutcome) -> TriageEffect:
    """What the console route does: one service call, then send and kick."""
    care = await world.escalator.care_map()
    effect, msgs = await world.dispatch.triage(
        alarm, outcome, care, world.clock.now_ms(), "console:disp"
    )
    await world.escalator.send(msgs)
    world.escalator.kick()
    return effect


async def _alarm(world: World, alarm: str) -> Any:
    async with world.store.engine.connect() as conn:
        return (await conn.execute(sa.select(alarms).where(alarms.c.id == alarm))).one()


async def _events(world: World, alarm: str) -> list[tuple[str, str, str]]:
    async with world.store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(alarm_events.c.kind, alarm_events.c.actor, alarm_events.c.detail)
            .where(alarm_events.c.alarm_id == alarm)
            .order_by(alarm_events.c.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def _ladder_status(world: World, alarm: str) -> str:
    async with world.store.engine.connect() as conn:
        return str(
            await conn.scalar(
                sa.select(escalations.c.status).where(escalations.c.alarm_id == alarm)
            )
        )


async def test_operator_first_accidental_press_sends_no_sms(first: World) -> None:
    alarm = await first.press()
    await first.run(20)  # the console rings; the ladder waits
    assert first.sms.sent == []
    effect = await _triage(first, alarm, TriageOutcome.ACCIDENTAL_PRESS)
    assert effect.ladder is LadderMove.CLOSE
    await first.run(600)  # past the window, every step and repeat
    assert first.sms.sent == []  # no doctor, no dispatcher, no family
    row = await _alarm(first, alarm)
    assert (row.state, row.outcome, row.triage_outcome) == (
        "cancelled",
        "false_alarm",
        "accidental_press",
    )
    assert row.operator_at_ms == row.received_at_ms + 20_000
    assert await _ladder_status(first, alarm) == "closed"
    kinds = [(k, a) for k, a, _ in await _events(first, alarm)]
    assert ("operator_first", "system") in kinds and ("triage", "console:disp") in kinds
    assert ("operator_unanswered", "system") not in kinds


async def test_the_elder_cancelling_in_the_window_sends_no_sms(first: World) -> None:
    alarm = await first.press()
    await first.run(10)
    hub_alarm_id = (await _alarm(first, alarm)).hub_alarm_id
    now = first.clock.now_ms()
    await first.store.report_state(HUB, hub_alarm_id, AlarmState.CANCELLED, now, "r1", "hub", "")
    await first.dispatch.kick(alarm, now)
    await first.run(600)
    assert first.sms.sent == []  # the son asked to hear of cancellations, of an alarm sent
    assert await _ladder_status(first, alarm) == "closed"


async def test_a_kick_in_the_window_does_not_start_the_ladder(first: World) -> None:
    """A repeat press or another change makes the ladder due now: it is held again, to
    the same end of the window (not extended, not cut short)."""
    alarm = await first.press()
    await first.run(30)
    await first.dispatch.kick(alarm, first.clock.now_ms())
    await first.run(29)
    assert first.sms.sent == []
    await first.run(1)
    assert len(first.sms.to("li")) == 1
    assert [k for k, _, _ in await _events(first, alarm)].count("operator_first") == 1


async def test_operator_first_unanswered_starts_the_ladder_by_itself(first: World) -> None:
    alarm = await first.press()
    await first.run(59)
    assert first.sms.sent == []
    await first.run(1)  # the window is over: the escalator takes the first step
    assert len(first.sms.to("li")) == 1 and await first.state(alarm) is AlarmState.DISPATCHED
    await first.run(60)  # and climbs as in parallel mode, one window later
    assert len(first.sms.to("wang")) == 1
    kinds = [k for k, _, _ in await _events(first, alarm)]
    assert kinds.count("operator_first") == 1 and kinds.count("operator_unanswered") == 1
    assert (await _alarm(first, alarm)).operator_at_ms is None


@pytest.mark.parametrize("outcome", [TriageOutcome.SEND_DOCTOR, TriageOutcome.AMBULANCE_CALLED])
async def test_send_the_doctor_or_an_ambulance_starts_the_ladder_at_once(
    first: World, outcome: TriageOutcome
) -> None:
    alarm = await first.press()
    await first.run(10)
    assert await _triage(first, alarm, outcome) == TriageEffect(None, None, LadderMove.START_NOW)
    await first.run()  # the same second: no wait for the window
    assert len(first.sms.to("li")) == 1
    assert await first.state(alarm) is AlarmState.DISPATCHED
    row = await _alarm(first, alarm)
    assert row.triage_outcome == outcome.value and row.operator_at_ms is not None
    await first.run(60)  # the ladder goes on at its pace from there
    assert len(first.sms.to("wang")) == 1
    assert ("triage", "console:disp", outcome.value) in await _events(first, alarm)


async def test_parallel_is_unchanged_and_send_doctor_keeps_its_pace(parallel: World) -> None:
    alarm = await parallel.press()
    await parallel.run()
    assert len(parallel.sms.to("li")) == 1  # at once, as before triage
    kinds = [k for k, _, _ in await _events(parallel, alarm)]
    assert "operator_first" not in kinds and "operator_unanswered" not in kinds
    effect = await _triage(parallel, alarm, TriageOutcome.SEND_DOCTOR)
    assert effect.ladder is LadderMove.KEEP
    await parallel.run(59)
    assert len(parallel.sms.to("li")) == 1 and not parallel.sms.to("wang")
    await parallel.run(1)
    assert len(parallel.sms.to("wang")) == 1


async def test_closing_after_the_ladder_texted_tells_who_was_texted(parallel: World) -> None:
    alarm = await parallel.press()
    await parallel.run()
    assert "accepted" in await parallel.answer(alarm, "li", "accept")
    son_before = [b for to, b, _ in parallel.sms.sent if to == SON]
    await _triage(parallel, alarm, TriageOutcome.ACCIDENTAL_PRESS)
    await parallel.run(300)
    told = parallel.sms.to("li")[-1]
    assert alarm[-6:].upper() in told and "值班员" in told  # the acceptor too: no need to go
    son = [b for to, b, _ in parallel.sms.sent if to == SON]
    assert len(son) == len(son_before) + 1 and "取消" in son[-1]  # asked for "cancelled"
    assert not parallel.sms.to("wang") and await parallel.state(alarm) is AlarmState.CANCELLED


async def test_no_help_needed_resolves_and_outcomes_on_a_closed_alarm_are_refused(
    parallel: World,
) -> None:
    alarm = await parallel.press()
    await parallel.run()
    await _triage(parallel, alarm, TriageOutcome.NO_HELP_NEEDED)
    await parallel.run(300)
    row = await _alarm(parallel, alarm)
    assert (row.state, row.outcome, row.resolved_at_ms is not None) == (
        "resolved",
        "by_phone",
        True,
    )
    assert len(parallel.sms.to("li")) == 2 and not parallel.sms.to("wang")
    assert not [b for to, b, _ in parallel.sms.sent if to == SON]  # the son asked not to hear
    with pytest.raises(TriageRefused):
        await _triage(parallel, alarm, TriageOutcome.SEND_DOCTOR)
    assert (await _alarm(parallel, alarm)).triage_outcome == "no_help_needed"


async def test_a_self_test_is_not_held_for_the_operator(first: World) -> None:
    await first.press(test=True)
    await first.run()
    assert len(first.sms.to("li")) == 1


async def test_the_first_answer_time_stays(first: World) -> None:
    alarm = await first.press()
    first.clock.advance(5)
    await first.dispatch.operator_answered(alarm, first.clock.now_ms())
    first.clock.advance(5)
    await first.dispatch.operator_answered(alarm, first.clock.now_ms())
    await _triage(first, alarm, TriageOutcome.SEND_DOCTOR)
    row = await _alarm(first, alarm)
    assert row.operator_at_ms == row.received_at_ms + 5_000


async def test_an_outcome_waits_for_a_step_being_taken_and_answers_it(pg_url: str) -> None:
    """PostgreSQL, several processes: a step being taken holds its ladder's lock while it
    writes its notifications and events. An outcome given meanwhile waits for that step
    (without blocking its event rows, which lock the alarm's key) and then tells the
    member it texted that the alarm is over."""
    async with open_world(pg_url, DIRECTORY, merge_repeats=False) as world:
        alarm = await world.press()
        engine = world.store.engine
        care = await world.escalator.care_map()
        step = await engine.connect()
        try:
            taking = await step.begin()
            await step.execute(
                sa.select(escalations.c.alarm_id)
                .where(escalations.c.alarm_id == alarm)
                .with_for_update()
            )
            outcome = asyncio.create_task(
                world.dispatch.triage(
                    alarm, TriageOutcome.ACCIDENTAL_PRESS, care, world.clock.now_ms(), "console:d"
                )
            )
            await _until_waiting_for_a_lock(engine, "escalations")
            # the step's rows, as `_take` writes them, after the outcome took the alarm
            now = world.clock.now_ms()
            await step.execute(
                alarm_events.insert().values(
                    alarm_id=alarm, hub_id=HUB.hub_id, kind="step", at_ms=now, actor="system"
                )
            )
            await step.execute(
                notifications.insert().values(
                    id=uuid.uuid4().hex,
                    alarm_id=alarm,
                    doctor_id="li",
                    purpose="step-0",
                    status="sent",
                    body="…",
                    attempts=1,
                    created_at_ms=now,
                    to_phone=PHONE["li"],
                )
            )
            await taking.commit()
        finally:
            await step.close()
        effect, msgs = await asyncio.wait_for(outcome, 30)
        assert effect.ladder is LadderMove.CLOSE
        # li, and the son (who asked to hear of cancellations of an alarm that went out)
        assert sorted((m.member_id, m.purpose) for m in msgs) == [
            ("", "cancelled"),
            ("li", "closed"),
        ]


async def _until_waiting_for_a_lock(engine: Any, table: str) -> None:
    """Poll until another backend waits for a row lock in a statement naming `table`."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND pid <> pg_backend_pid() AND query LIKE :like"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            if await conn.scalar(query, {"like": f"%FROM {table}%"}):
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nobody waited for a lock on {table}")


async def test_the_admin_api_shows_the_operators_outcome(first: World) -> None:
    """The admin API's alarm (`AlarmDetail`, which refuses unknown fields) carries the
    outcome and answer time: with the columns but not the fields it answered 500."""
    alarm = await first.press()
    await _triage(first, alarm, TriageOutcome.ACCIDENTAL_PRESS)
    detail = AlarmDetail.model_validate(await first.store.alarm(alarm))
    assert detail.triage_outcome == "accidental_press"
    assert detail.operator_at_ms == detail.received_at_ms
