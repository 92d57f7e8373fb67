"""Reply codes for doctors whose provider delivers SMS replies: "1a" accepts alarm 1 of this
recipient, "1d" declines it, "1r" says they have arrived.

Each notification gets the smallest number not used by the recipient's other open alarms,
so two alarms open at once are never confused and the code stays one or two digits. Replies
are normalised (NFKC: full-width "１ａ" from a Chinese keyboard is "1a"; case and spaces do
not matter). STOP/START (and 退订 / 订阅) switch the number's texts off and on. Pure.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


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


def next_code(in_use: Iterable[int]) -> int:
    """The smallest positive number the recipient's open alarms do not use."""
    used = set(in_use)
    n = 1
    while n in used:
        n += 1
    return n


HELP_TEXT = {
    "en": "CareHub: reply e.g. 1a to accept alarm 1, 1d to decline, 1r when you arrive. "
    "Or open the link in the alarm text.",
    "zh": "CareHub：回复如 1a 接受警报1，1d 拒绝，1r 已到达。也可打开警报短信中的链接。",
}
