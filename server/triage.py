"""Operator triage: the centre's policy (does the console ring first, or does the doctor
ladder start at once?) and what an operator's outcome does to the alarm and its ladder.

Pure: the dispatch store (`DispatchStore.triage`, `DispatchStore._advance`) applies the
decisions in SQL. Times are epoch ms.

*Operator first* holds the ladder's first step for `operator_first_s` after the server
received the alarm; nothing else waits for the operator: with no outcome in that window the
escalator takes the step by itself, at its due time, as it takes every step. *Parallel*
starts the ladder at once and the operator calls alongside.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState

MAX_OPERATOR_FIRST_S = 180
"""The longest operator-first window: the answer-time promise is 99 % within 180 s."""


class TriageMode(enum.StrEnum):
    PARALLEL = "parallel"
    OPERATOR_FIRST = "operator_first"


@dataclass(frozen=True)
class TriagePolicy:
    mode: TriageMode = TriageMode.PARALLEL
    operator_first_s: float = 0.0
    """With `operator_first`: how long the console rings before the ladder starts (s)."""

    def __post_init__(self) -> None:
        if self.mode is TriageMode.OPERATOR_FIRST and not (
            0 < self.operator_first_s <= MAX_OPERATOR_FIRST_S
        ):
            raise ValueError(f"operator_first_s is 1 … {MAX_OPERATOR_FIRST_S} s")


PARALLEL = TriagePolicy()


class TriageOutcome(enum.StrEnum):
    """What the operator found out (by phone, voice call or otherwise)."""

    ACCIDENTAL_PRESS = "accidental_press"
    NO_HELP_NEEDED = "no_help_needed"
    SEND_DOCTOR = "send_doctor"
    AMBULANCE_CALLED = "ambulance_called"


CLOSING = frozenset({TriageOutcome.ACCIDENTAL_PRESS, TriageOutcome.NO_HELP_NEEDED})
"""Outcomes that close the alarm without a visit."""


def first_step_due_ms(
    policy: TriagePolicy, received_ms: int, is_test: bool, outcome: TriageOutcome | None
) -> int:
    """When the ladder's first step may be taken: at once (`received_ms`), or, operator
    first, `operator_first_s` later unless the operator already gave an outcome. A
    self-test is never held: it proves the first SMS arrives."""
    if policy.mode is TriageMode.PARALLEL or is_test or outcome is not None:
        return received_ms
    return received_ms + int(policy.operator_first_s * 1000)


class LadderMove(enum.StrEnum):
    KEEP = "keep"
    """The ladder goes on at its own pace (a step is out, someone accepted, or it is over)."""
    START_NOW = "start_now"
    """The ladder's first step, held for the operator, is due now."""
    CLOSE = "close"
    """The ladder stops; whoever it texted hears the alarm is over."""


@dataclass(frozen=True)
class TriageEffect:
    """What an outcome does: the alarm's new state (None: unchanged), the resolution code
    stored with a closing outcome (`alarms.outcome`), and the ladder's move."""

    state: AlarmState | None
    resolution: str | None
    ladder: LadderMove


class TriageRefused(ValueError):
    """The outcome cannot apply to this alarm now: it is closed (`state`)."""

    def __init__(self, state: AlarmState) -> None:
        super().__init__(state.value)
        self.state = state


def decide(outcome: TriageOutcome, state: AlarmState, ladder_held: bool) -> TriageEffect:
    """What `outcome` does to an alarm in `state` whose ladder is `ladder_held` (still
    waiting for its first step). A closed alarm takes no outcome."""
    if state in FINAL_STATES:
        raise TriageRefused(state)
    if outcome is TriageOutcome.ACCIDENTAL_PRESS:
        return TriageEffect(AlarmState.CANCELLED, "false_alarm", LadderMove.CLOSE)
    if outcome is TriageOutcome.NO_HELP_NEEDED:
        return TriageEffect(AlarmState.RESOLVED, "by_phone", LadderMove.CLOSE)
    # send the doctor, ambulance called: the team is told now, or already being told
    return TriageEffect(None, None, LadderMove.START_NOW if ladder_held else LadderMove.KEEP)
