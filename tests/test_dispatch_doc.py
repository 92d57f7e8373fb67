"""docs/dispatch.md states how many SMS segments each template takes; this holds the
templates to it (a template that grows past its count fails here, and so does a table
row that no longer matches a template)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from carehub.alarm_lifecycle import AlarmKind, Severity
from server import sms_text as t
from server.sms_segments import segments

DOC = Path(__file__).resolve().parents[1] / "docs" / "dispatch.md"
LINK = "https://carehub.example.org/r/BDA4F1/WtT118HwtJDw9M9KstjFOg"  # 60 characters
ELDER = {"zh": ("王秀英", "和平里3-2-501"), "en": ("Zhang San", "Andingmen 12-3")}
RESPONDER = {"zh": "陈伟东", "en": "Chen Wei"}


def _texts(template: str, lang: str) -> list[str]:
    """Every variant of one template with typical values (see the doc's table)."""
    name, address = ELDER[lang]
    who = RESPONDER[lang]
    variants: dict[str, Callable[[], list[str]]] = {
        "alarm": lambda: [
            t.compose_alarm(t.AlarmSummary("BDA4F1", name, address, k, s), lang, code).replace(
                t.LINK, LINK
            )
            for k in AlarmKind
            for s in Severity
            for code in (None, 1, 12)
        ],
        "taken": lambda: [t.compose_taken("BDA4F1", who, lang)],
        "cancelled": lambda: [t.compose_cancelled("BDA4F1", lang)],
        "closed_by_operator": lambda: [
            t.compose_closed_by_operator("BDA4F1", accidental, lang) for accidental in (True, False)
        ],
        "arrival_overdue": lambda: [t.compose_arrival_overdue("BDA4F1", who, lang)],
        "contact_notice": lambda: [
            t.compose_contact_notice(name, event, r, lang)
            for event in ("accepted", "arrived", "cancelled", "resolved", "other")
            for r in (who, None)
        ],
    }
    return variants[template]()


def _stated() -> dict[tuple[str, str], tuple[str, int]]:
    rows = re.findall(
        r"^\| `(\w+)` \| (zh|en) \| (UCS-2|GSM-7) \| (\d+) \|$", DOC.read_text(), re.MULTILINE
    )
    return {(name, lang): (enc, int(n)) for name, lang, enc, n in rows}


def test_every_template_fits_its_stated_segment_count() -> None:
    stated = _stated()
    templates = {
        "alarm",
        "taken",
        "cancelled",
        "closed_by_operator",
        "arrival_overdue",
        "contact_notice",
    }
    assert set(stated) == {(name, lang) for name in templates for lang in ("zh", "en")}
    for (name, lang), (encoding, count) in stated.items():
        for text in _texts(name, lang):
            seg = segments(text)
            assert seg.encoding == encoding, (name, lang, text)
            assert seg.count <= count, f"{name} ({lang}) takes {seg.count} segments: {text}"


def test_the_stated_counts_are_tight() -> None:
    """A stated count is what the template takes, not a loose upper bound."""
    for (name, lang), (_, count) in _stated().items():
        assert max(segments(x).count for x in _texts(name, lang)) == count, (name, lang)
