"""Who the elder is, as the operator needs it on the phone: sex, age and the warnings that
matter on the phone or at the door. Pure values; the directory file sets them
(`docs/operations.md`), the console shows them as badges (catalogue keys `sex.<value>`,
`warning.<value>`)."""

from __future__ import annotations

import enum
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

BORN = r"^(19|20)\d\d(-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))?$"
"""A year of birth (``1941``) or a date of birth (``1941-03-08``)."""


class Sex(enum.StrEnum):
    FEMALE = "female"
    MALE = "male"


class ElderWarning(enum.StrEnum):
    """What an operator or a responder must know before speaking or knocking."""

    HARD_OF_HEARING = "hard_of_hearing"  # speak loudly and slowly; a call may go unheard
    DEMENTIA = "dementia"  # may not remember pressing, or give a wrong answer
    DIALECT = "dialect"  # speaks a dialect only: a relative or a local speaker may help
    OXYGEN_AT_HOME = "oxygen_at_home"  # oxygen at home: no open flame, tell the ambulance
    LIVES_ALONE = "lives_alone"  # nobody at home to open the door or answer
    KEY_WITH_NEIGHBOUR = "key_with_neighbour"  # a neighbour keeps a key (see the contacts)


def age(born: str | None, now_ms: int, time_zone: str) -> int | None:
    """Whole years of age today in `time_zone` (the centre's). From a year alone the age
    the elder reaches this calendar year (one more than their age before their birthday);
    None when `born` is unset or malformed."""
    if born is None or not re.match(BORN, born):
        return None
    today = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(time_zone)).date()
    if len(born) == 4:
        return today.year - int(born)
    birthday = date.fromisoformat(born)
    before = (today.month, today.day) < (birthday.month, birthday.day)
    return today.year - birthday.year - int(before)


def warnings_of(stored: object) -> tuple[ElderWarning, ...]:
    """The stored JSON list as warnings in the fixed order; an unknown value (a newer
    server's) is left out."""
    if not isinstance(stored, list):
        return ()
    known = {str(w) for w in stored}
    return tuple(w for w in ElderWarning if w.value in known)
