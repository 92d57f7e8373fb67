"""The admins' view of the audit log: which rows a filter keeps, and the day bounds of a
date filter in a time zone. The log has two sources: the views an account made
(`console_audit`, medical notes, key-safe codes, calls an operator took or made) and the
home's calls that nobody answered (`voice_calls`, which has no account to name), so that
every call is in it (docs/voice.md, Privacy). Pages are keyset pages, newest first by
(time, source, id): every row of a log of any length can be reached and none is skipped or
shown twice while new rows are written."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from carehub.api_contract import ID_PATTERN
from server.console.accounts import USERNAME

PAGE_ROWS = 100
_ELDER_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class AuditFilter:
    account: str | None = None
    """The username that saw the data."""
    elder_id: str | None = None
    since_ms: int | None = None
    """Epoch ms, inclusive."""
    until_ms: int | None = None
    """Epoch ms, exclusive."""


class BadFilter(ValueError):
    """A filter the page cannot apply; the message says which field and why."""


def parse_filter(
    account: str, elder: str, day_from: str, day_to: str, time_zone: str
) -> AuditFilter:
    """The filter of the page's form (an empty field filters nothing), or `BadFilter`."""
    if account and not USERNAME.match(account):
        raise BadFilter("account: a console username (letters, digits, _ . @ -)")
    if elder and not _ELDER_ID.match(elder):
        raise BadFilter("elder: an elder's id (letters, digits, _ . : -)")
    if time_zone not in available_timezones():
        raise BadFilter("time_zone: an IANA time zone such as Asia/Shanghai")
    days = []
    for name, text in (("day_from", day_from), ("day_to", day_to)):
        try:
            days.append(dt.date.fromisoformat(text) if text else None)
        except ValueError:
            raise BadFilter(f"{name}: a date as YYYY-MM-DD") from None
    since, until = day_bounds_ms(days[0], days[1], time_zone)
    return AuditFilter(account or None, elder or None, since, until)


def day_bounds_ms(
    day_from: dt.date | None, day_to: dt.date | None, time_zone: str
) -> tuple[int | None, int | None]:
    """[start of `day_from`, end of `day_to`) in `time_zone`, as epoch ms (None: open)."""
    zone = ZoneInfo(time_zone)

    def midnight_ms(day: dt.date) -> int:
        return int(dt.datetime.combine(day, dt.time(), zone).timestamp() * 1000)

    since = midnight_ms(day_from) if day_from is not None else None
    until = midnight_ms(day_to + dt.timedelta(days=1)) if day_to is not None else None
    return since, until


UNANSWERED_CALL = "voice_call_unanswered"
"""The action of a home's call that rang out with nobody answering (no account)."""


class RowSource(enum.StrEnum):
    """Where a row of the log comes from; part of the page key."""

    VIEW = "v"
    CALL = "c"


@dataclass(frozen=True, order=True)
class PageKey:
    """A row's place in the log, newest first: a page holds the rows below a key."""

    at_ms: int
    source: RowSource
    row_id: str
    """The row's id in its source (a `console_audit` id as text, a call's id)."""

    def text(self) -> str:
        return f"{self.at_ms}.{self.source.value}.{self.row_id}"

    @classmethod
    def parse(cls, text: str) -> PageKey:
        """The key of the page link `before=…`, or `BadFilter`."""
        match = _PAGE_KEY.fullmatch(text)
        if match is None:
            raise BadFilter("before: a page key from an 'older' link")
        return cls(int(match[1]), RowSource(match[2]), match[3])


_PAGE_KEY = re.compile(r"(\d{1,19})\.([vc])\.(" + ID_PATTERN.strip("^$") + ")")


@dataclass(frozen=True)
class AuditPage:
    rows: list[dict[str, Any]]
    older_than: PageKey | None
    """The key to ask the next page for (older rows), or None at the oldest row."""
