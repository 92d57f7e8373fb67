"""The admins' view of the audit log: which rows a filter keeps, and the day bounds of a
date filter in a time zone. Pages are keyset pages (rows older than the last row shown,
by id), so every row of a log of any length can be reached and none is skipped or shown
twice while new views are written."""

from __future__ import annotations

import datetime as dt
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


@dataclass(frozen=True)
class AuditPage:
    rows: list[dict[str, Any]]
    older_than: int | None
    """The id to ask the next page for (rows with smaller ids), or None at the oldest row."""
