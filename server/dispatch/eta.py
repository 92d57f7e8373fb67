"""A responder's estimate of when they will be at the door, given from the link page after
Accept: who may give one and in what range. The words are the caller's (`eta.<key>`)."""

from __future__ import annotations

import enum

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState

ETA_EVENT = "eta"
"""The alarm event that records an estimate: actor ``member:<id>``, detail the minutes."""
MIN_MINUTES = 1
MAX_MINUTES = 180
"""An estimate outside 1–180 minutes is a typo, not a plan."""


class EtaKey(enum.StrEnum):
    RECORDED = "recorded"
    OUT_OF_RANGE = "out_of_range"  # not a whole number of minutes in 1–180
    NOT_YOURS = "not_yours"  # only the member who accepted gives the estimate
    ALREADY_ARRIVED = "already_arrived"
    ALREADY_OVER = "already_over"  # resolved or cancelled


def judge_eta(
    minutes: int | None,
    state: AlarmState,
    accepted_by: str | None,
    member_id: str,
    arrived: bool,
) -> EtaKey:
    """Whether `member_id`'s estimate of `minutes` is recorded, else why not."""
    if state in FINAL_STATES:
        return EtaKey.ALREADY_OVER
    if accepted_by != member_id:
        return EtaKey.NOT_YOURS
    if arrived:
        return EtaKey.ALREADY_ARRIVED
    if minutes is None or not MIN_MINUTES <= minutes <= MAX_MINUTES:
        return EtaKey.OUT_OF_RANGE
    return EtaKey.RECORDED


def eta_minutes(detail: str) -> int | None:
    """The minutes an `ETA_EVENT`'s detail holds (None if it is not a number)."""
    return int(detail) if detail.isdigit() else None
