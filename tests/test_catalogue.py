"""The message catalogues (server/locale/*/LC_MESSAGES/carehub.po): every language has every
key, none empty, with the same placeholders; the wheel carries them."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from babel.messages.extract import extract_from_dir

from server.catalogue import LANGUAGES, LOCALE_DIR, Word, gaps, keys, po_path, translator

ROOT = Path(__file__).resolve().parents[1]


def test_every_language_has_every_key_with_the_same_placeholders() -> None:
    tables = {language: keys(language) for language in LANGUAGES}
    assert gaps(tables) == []
    assert len(tables["zh"]) > 300


def test_a_missing_empty_or_mismatched_message_is_found() -> None:
    en = {"a": "one", "b": "step %(n)s", "c": "ok", "d": "SpO2 (%%)"}
    zh = {"a": "一", "b": "第 %(m)s 步", "c": "", "d": "血氧 (%)", "e": "多余"}
    assert gaps({"en": en, "zh": zh}) == [
        "en: e is missing",
        "zh: b has placeholders ['m'], en has ['n']",
        "zh: c is empty",
        "zh: d does not format: '血氧 (%)'",
    ]


def test_the_wheel_carries_every_catalogue() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = data["package-data"]["server"]
    for language in LANGUAGES:
        inside = po_path(language).relative_to(LOCALE_DIR.parent).as_posix()
        assert any(fnmatch.fnmatch(inside, g) for g in globs), inside
    assert {p.parent.parent.name for p in LOCALE_DIR.glob("*/LC_MESSAGES/*.po")} == set(LANGUAGES)


def test_a_key_is_formatted_and_falls_back_to_english_then_the_key() -> None:
    zh, en = translator("zh"), translator("en")
    assert zh("step.n", n=3) == "第 3 步" and en("step.n", n=3) == "step 3"
    assert zh("vital.spo2") == "血氧饱和度 (%)"
    assert translator("fr")("logout") == "Sign out"
    assert zh("no.such.key") == "no.such.key"


def test_dates_and_numbers_follow_the_language_in_the_centres_time_zone() -> None:
    at = 1_767_225_600_000  # 2026-01-01 00:00 UTC
    zh, en = translator("zh", "Asia/Shanghai"), translator("en", "Asia/Shanghai")
    assert zh.time(at) == en.time(at) == "08:00"
    assert zh.datetime(at) == "2026/01/01 08:00:00" and en.datetime(at) == "01/01/2026 08:00:00"
    assert zh.zone_name() == "中国（上海）时间" and en.zone_name() == "China (Shanghai) Time"
    assert zh.number(12345.5) == "12,345.5" and en.percent(0.875) == "88%"


def test_every_literal_key_the_code_uses_is_in_the_catalogue() -> None:
    """What ``pybabel extract -F babel.cfg`` finds (docs/i18n.md): a key written out in a
    template or in Python (``_('…')``, ``t("…")``) that no catalogue has would show as
    itself. Keys built from a value (``'kind.' ~ r.kind``) end in a dot and are skipped."""
    found = extract_from_dir(
        str(ROOT / "server"),
        method_map=[("**.py", "python"), ("templates/**.html", "jinja2")],
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "t": None, "gettext": None},
    )
    used = {str(m[2]) for m in found if re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)+", str(m[2]))}
    assert len(used) > 150
    assert sorted(used - set(keys("en"))) == []


def test_a_placeholder_that_is_a_key_is_said_in_the_readers_language() -> None:
    refused = ("refused.closed_resolve", {"state": Word("state.cancelled")})
    assert translator("zh")(refused[0], **refused[1]) == "此警报已取消，不能结案"
    assert translator("en")(refused[0], **refused[1]) == (
        "this alarm is cancelled: it cannot be resolved"
    )
