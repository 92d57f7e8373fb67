"""How many SMS segments a text takes, so templates can be held to one or two.

A text in the GSM 03.38 alphabet travels as 7-bit characters: 160 in one segment, 153 per
segment when split (the rest is the concatenation header). Anything else (any Chinese
character) makes the whole text UCS-2: 70 in one segment, 67 per segment when split; a
character outside the Basic Multilingual Plane (an emoji) takes two UCS-2 units. Carriers
bill, and sometimes drop, by segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")
"""Escaped characters: each takes two 7-bit units."""


@dataclass(frozen=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # 7-bit characters or UTF-16 code units
    count: int


def segments(text: str) -> Segments:
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        return Segments("GSM-7", units, 1 if units <= 160 else math.ceil(units / 153))
    units = len(text.encode("utf-16-le")) // 2
    return Segments("UCS-2", units, 1 if units <= 70 else math.ceil(units / 67))
