"""Reply codes for doctors whose provider delivers SMS replies: "1a" accepts alarm 1 of this
recipient, "1d" declines it, "1r" says they have arrived.

Each notification gets the smallest number the recipient's codes do not hold: a code is held
while its alarm is open and for `REPLY_CODE_HOLD_MS` after it was last sent or its alarm last
changed (closed), because a reply can come late (read hours later, delayed by the network).
So a late "2a" still means the alarm it was sent for, and is answered that this alarm is
over, never taken as an answer to a newer alarm that got 2 meanwhile. Replies
are normalised (NFKC: full-width "１ａ" from a Chinese keyboard is "1a"; case and spaces do
not matter). STOP/START (and 退订 / 订阅) switch the number's texts off and on. Pure.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

REPLY_CODE_HOLD_MS = 12 * 3_600_000
"""Default time (ms) a code stays bound to its alarm after it was sent or the alarm closed."""
MAX_CODE = 999
"""Largest code a reply can carry (three digits)."""


class ReplyAction(enum.StrEnum):
    ACCEPT = "a"
    DECLINE = "d"
    ARRIVED = "r"


class Keyword(enum.StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


@dataclass(frozen=True)
class CodedReply:
    number: int
    action: ReplyAction


_CODE = re.compile(r"^(\d{1,3})\s*([adr])$")
_KEYWORDS = {
    "stop": Keyword.STOP,
    "unsubscribe": Keyword.STOP,
    "退订": Keyword.STOP,
    "start": Keyword.START,
    "unstop": Keyword.START,
    "订阅": Keyword.START,
    "help": Keyword.HELP,
    "帮助": Keyword.HELP,
}


def parse_reply(text: str) -> CodedReply | Keyword | None:
    """What a reply means; None when it is not understood (answer with the help text)."""
    clean = unicodedata.normalize("NFKC", text).strip().lower().rstrip(".!。！")
    clean = re.sub(r"\s+", " ", clean)
    if clean in _KEYWORDS:
        return _KEYWORDS[clean]
    m = _CODE.match(clean)
    if m is None or int(m.group(1)) == 0:
        return None
    return CodedReply(int(m.group(1)), ReplyAction(m.group(2)))


@dataclass(frozen=True)
class CodeUse:
    """A code a recipient was sent: whether its alarm is still open, and when (epoch ms) it
    was last sent or its alarm last changed, whichever is later."""

    code: int
    alarm_open: bool
    last_ms: int


def holds(use: CodeUse, now_ms: int, hold_ms: int) -> bool:
    """True while a reply with this code may still mean this use's alarm (the stores' SQL
    filters are this predicate: open, or last used after ``now_ms - hold_ms``)."""
    return use.alarm_open or use.last_ms > now_ms - hold_ms


def next_code(uses: Iterable[CodeUse], now_ms: int, hold_ms: int) -> int:
    """The smallest positive code no use holds. When every code up to `MAX_CODE` is held
    (a thousand alarms in the hold time), the code of a closed alarm released longest ago."""
    uses = list(uses)
    held = {u.code for u in uses if holds(u, now_ms, hold_ms)}
    n = 1
    while n in held:
        n += 1
    if n <= MAX_CODE:
        return n
    open_codes = {u.code for u in uses if u.alarm_open}
    last: dict[int, int] = {}
    for u in uses:
        if u.code not in open_codes and 1 <= u.code <= MAX_CODE:
            last[u.code] = max(last.get(u.code, u.last_ms), u.last_ms)
    return min(last, key=lambda c: (last[c], c)) if last else n
