"""Issue 23, acceptance 2: a whole console page in Chinese has no English words left but
names. Over HTTP in process, on the duty shift of `test_console_shift` (a real database,
the escalation worker driven by hand on a fake clock).

What a person reads on the page counts: its text, and the attributes a browser shows
(``title``, ``placeholder``, ``aria-label``, ``alt``) or a script puts on the screen (the
``data-*`` attributes the templates fill from the catalogue); not tags, scripts, styles,
URLs, or the ids and states other attributes hold. An English word there is a run of
letters and digits with a Latin letter in it, and it may stay only when it is
- a name from the directory or the accounts (people, teams, usernames, devices, hubs),
- an id or reference the operator quotes (alarm refs, hex ids),
- a name that is not translated (`NAMES`: the product, NEWS2, SpO2, units of measure),
- a language's own name on the language switch (``English``),
- a key on the keyboard (``<kbd>N</kbd>``: the letter printed on the key).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import sqlalchemy as sa

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.api_contract import AlarmUpload
from server.catalogue import LANGUAGES
from server.schema import alarms
from tests.test_console_shift import DIRECTORY, HUB, Shift, shift  # noqa: F401 (fixture)

NAMES = frozenset({"CareHub", "NEWS2", "SpO2", "mmHg", "g", "a", "C", "bpm"})
"""Words shown as they are in every language: the product, scores and units (g, |a|, °C)."""
TEMPLATES = Path(__file__).resolve().parents[1] / "server" / "templates"
TEXT_DATA = sorted(
    {
        name
        for page in TEMPLATES.rglob("*.html")
        for name in re.findall(r'(data-[\w-]+)="\{\{ _\(', page.read_text())
    }
)
"""The ``data-*`` attributes that hold text a script shows: those the templates fill from
the catalogue (the others hold states, ids and times)."""
SHOWN_ATTRIBUTES = re.compile(
    r"\s(?:title|placeholder|aria-label|alt|" + "|".join(TEXT_DATA) + ')="([^"]*)"'
)

WORD = re.compile(r"[A-Za-z0-9'’]*[A-Za-z][A-Za-z0-9'’]*")


def shown_text(html: str) -> str:
    """What a person reads: the page's text and the attributes shown to them."""
    html = re.sub(r"<(script|style|kbd)\b.*?</\1>", " ", html, flags=re.DOTALL | re.IGNORECASE)
    attributes = " ".join(SHOWN_ATTRIBUTES.findall(html))
    text = re.sub(r"<[^>]+>", " ", html)
    return " ".join((text, attributes)).replace("&amp;", "&")


def names_on_shift() -> set[str]:
    """Every word of a name the directory or the accounts give (people, places, ids)."""
    names: set[str] = {"op", "op-zh", "fitter", "doc-d"}
    for section in ("teams", "doctors", "elders", "hubs", "devices"):
        for entry in DIRECTORY[section]:  # type: ignore[attr-defined]
            names |= {str(entry.get(k, "")) for k in ("id", "name", "team", "hub", "elder")}
    return {w for name in names for w in WORD.findall(name)}


def english_left(html: str, allowed: set[str]) -> list[str]:
    words = WORD.findall(shown_text(html))
    return sorted(
        {
            w
            for w in words
            if w not in allowed and w not in NAMES and not re.fullmatch(r"[0-9A-Fa-f]{6,}", w)
        }
    )


def test_the_check_finds_english_in_text_and_in_shown_attributes() -> None:
    page = (
        '<p>第 1 步 CareHub Dr Wang</p><span title="Raised again">重复</span>'
        '<script>var x = "ignored";</script><a href="/console/alarms/ab12">BDA4F1</a>'
    )
    assert english_left(page, {"Dr", "Wang"}) == ["Raised", "again"]


async def test_a_whole_page_in_chinese_has_no_english_words_but_names(shift: Shift) -> None:  # noqa: F811
    now = shift.clock.now_ms()
    press = await shift.press()
    await shift.press("band-1", AlarmKind.FALL)
    vitals = AlarmUpload(
        alarm_id=uuid.uuid4().hex,
        device_id="band-1",
        kind=AlarmKind.VITALS,
        severity=Severity.CRITICAL,
        raised_at_ms=now,
        details={
            "reason": "red NEWS2 sub-score (spo2) for 90 s (signal in doubt)",
            "scores": {"spo2": 3, "hr": 1, "total": 4},
            "readings": [{"ts_ms": now - 30_000, "hr": 96, "spo2": 89, "rr": 20, "temp": 37.1}],
        },
    )
    await shift.rt.store.store_alarm(HUB, vitals, now)
    vitals_id = await shift.scalar(sa.select(alarms.c.id).where(alarms.c.kind == "vitals"))
    await shift.run()
    await shift.run(60)  # step 2: wang
    await shift.http.post(shift.link("wang") + "/decline")
    await shift.http.post(shift.link("li") + "/accept")
    token = await shift.sign_in("op-zh")
    for path, data in [
        (f"/console/alarms/{press}/claim", {}),
        (f"/console/alarms/{press}/check", {"item": "call_elder"}),
        (f"/console/alarms/{press}/note", {"text": "已电话联系"}),
        (f"/console/alarms/{press}/acknowledge", {}),
    ]:
        r = await shift.http.post(path, data={"csrf_token": token, **data})
        assert r.status_code in (200, 303), (path, r.text)
    shift.clock.advance(90)

    allowed = names_on_shift() | {LANGUAGES["en"]}
    for path in (
        "/console/",
        f"/console/alarms/{press}",
        f"/console/alarms/{vitals_id}",
        "/console/elders/elder-1",
        "/console/elders",
        "/console/health",
        "/console/kpi",
        "/console/handover",
    ):
        page = await shift.console(path)
        assert 'lang="zh-CN"' in page
        left = english_left(page, allowed)
        assert left == [], path


async def test_the_responders_page_and_answers_in_chinese_have_no_english_words(
    shift: Shift,  # noqa: F811
) -> None:
    """李医生 reads Chinese: the link page before and after Accept, a late decline's
    notice, and the refused page's Chinese line."""
    alarm_id = await shift.press()
    await shift.run()
    await shift.run(60 + 120 + 60)  # the whole ladder and li again: a repeat's step
    allowed = names_on_shift() | {"Ref"}
    before = (await shift.http.get(shift.link("li", -1))).text
    assert english_left(before, allowed) == []
    after = (await shift.http.post(shift.link("li", -1) + "/accept")).text
    declined = (await shift.http.post(shift.link("li", -1) + "/decline")).text
    assert alarm_id and english_left(after, allowed) == [] == english_left(declined, allowed)
    refused = (await shift.http.get(shift.link("li", -1) + "x")).text
    assert english_left(refused.split("</p>", 1)[0], allowed) == []
