"""A responder's answer (accept, decline, arrived) as a rule: from the alarm as it stands,
which outcome it has. Pure: the store applies the outcome, and the page, the SMS reply and
the console each say it in their own words (`AnswerKey` is all they are given)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState

ACTIONS = ("accept", "decline", "arrived")
"""What a responder can answer, by link, reply code or through the console."""


class AnswerKey(enum.StrEnum):
    """What came of an answer; the words for it live with whoever shows it."""

    ALREADY_OVER = "already_over"  # the alarm is resolved or cancelled
    TAKEN_BY_OTHER = "taken_by_other"  # another member accepted first
    ALREADY_YOURS = "already_yours"  # accepted by this member before
    ACCEPTED = "accepted"
    CANNOT_DECLINE = "cannot_decline"  # the member accepted: only the dispatcher can undo it
    DECLINED = "declined"
    NOT_YOURS = "not_yours"  # an arrival from a member who did not accept
    ARRIVED = "arrived"
    ARRIVAL_KNOWN = "arrival_known"  # the arrival was recorded before


DONE = frozenset(
    {
        AnswerKey.ALREADY_YOURS,
        AnswerKey.ACCEPTED,
        AnswerKey.DECLINED,
        AnswerKey.ARRIVED,
        AnswerKey.ARRIVAL_KNOWN,
    }
)
"""The outcomes that did what was asked (or found it done): the rest were refused."""

WRITES = frozenset({AnswerKey.ACCEPTED, AnswerKey.DECLINED, AnswerKey.ARRIVED})
"""The outcomes that change the alarm: every other answer is answered without a write."""


@dataclass(frozen=True)
class Answer:
    """The outcome of a responder's answer, for the page, the reply or the console."""

    key: AnswerKey
    state: AlarmState | None
    accepted_by: str | None = None
    taken_by: str | None = None  # the name of who accepted first (TAKEN_BY_OTHER)
    hub_id: str | None = None  # whose long-poll to wake

    @property
    def ok(self) -> bool:
        return self.key in DONE


def message_key(answer: Answer) -> tuple[str, dict[str, str]]:
    """The catalogue key (`server.catalogue`, ``answer.*``) and placeholders that say an
    answer in the member's or operator's language: a final state has words of its own."""
    if answer.key is AnswerKey.ALREADY_OVER and answer.state is not None:
        return f"answer.closed.{answer.state.value}", {}
    if answer.key is AnswerKey.TAKEN_BY_OTHER:
        return "answer.taken_by_other", {"who": answer.taken_by or ""}
    return f"answer.{answer.key.value}", {}


def judge(
    action: str, state: AlarmState, accepted_by: str | None, member_id: str, arrived: bool
) -> AnswerKey:
    """The outcome of `member_id`'s `action` on an alarm in `state`, accepted by
    `accepted_by` (None: nobody yet), its arrival recorded or not."""
    if state in FINAL_STATES:
        return AnswerKey.ALREADY_OVER
    if action == "accept":
        if accepted_by and accepted_by != member_id:
            return AnswerKey.TAKEN_BY_OTHER
        return AnswerKey.ALREADY_YOURS if accepted_by == member_id else AnswerKey.ACCEPTED
    if action == "decline":
        return AnswerKey.CANNOT_DECLINE if accepted_by == member_id else AnswerKey.DECLINED
    if action == "arrived":
        if accepted_by != member_id:
            return AnswerKey.NOT_YOURS
        return AnswerKey.ARRIVAL_KNOWN if arrived else AnswerKey.ARRIVED
    raise ValueError(f"unknown action {action!r}")
