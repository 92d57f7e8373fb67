"""Every word the server shows or sends a person, from one gettext catalogue per language.

The catalogues are ``server/locale/<language>/LC_MESSAGES/carehub.po`` (domain
``carehub``); their msgids are keys (``kind.fall``, ``text.taken``, ``answer.declined``),
never English sentences, so the code speaks in keys and only the catalogue speaks to
people. Placeholders are Python's ``%(name)s`` (what `jinja2.ext.i18n`'s new-style gettext
and Babel's checkers expect); a literal ``%`` is written ``%%`` in every message.

The ``.po`` files are read with Babel when first asked for (no build step, nothing compiled
to keep in step): `translator` gives a `Translator` per language, whose call formats a key;
`install` puts the i18n extension into a Jinja2 environment, and `Translator.jinja`
gives the per-page ``gettext``/``ngettext`` (``{{ _('key', n=3) }}``) together with the date
and number formats of the account's language in the centre's time zone. A key missing from
a language falls back to English, then to the key itself (tests/test_catalogue.py fails on
any such gap before it ships).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel import Locale
from babel.dates import format_date, format_datetime, format_time, get_timezone_location
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import Translations

DOMAIN = "carehub"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = {"zh": "中文", "en": "English"}
"""The languages an account, a member or a page can have, each named in itself."""
DEFAULT_LANGUAGE = "zh"
FALLBACK_LANGUAGE = "en"
BABEL_LOCALES = {"zh": "zh_Hans_CN", "en": "en_GB"}
"""The Babel locale whose date and number formats each language uses."""


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def catalog(language: str) -> Catalog:
    """The language's ``.po`` file as Babel reads it (cached: read once per process)."""
    with po_path(language).open("rb") as f:
        return read_po(f, locale=BABEL_LOCALES[language], domain=DOMAIN)


@cache
def _translations(language: str) -> Translations:
    buf = io.BytesIO()
    write_mo(buf, catalog(language))
    buf.seek(0)
    translations = Translations(buf, domain=DOMAIN)
    if language != FALLBACK_LANGUAGE:
        translations.add_fallback(_translations(FALLBACK_LANGUAGE))
    return translations


def _zone(time_zone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class Word(str):
    """A placeholder's value that is itself a key (``Word("state." + state)``): said in the
    reader's language when the message is, not before."""


class Translator:
    """One language's words (``t("step.n", n=2)``) and its formats of dates and numbers,
    in `time_zone` (the centre's, ``console_time_zone``; UTC when not given)."""

    def __init__(self, language: str, time_zone: str | None = None) -> None:
        self.language = language if language in LANGUAGES else FALLBACK_LANGUAGE
        self.locale = Locale.parse(BABEL_LOCALES[self.language])
        self.zone = _zone(time_zone)
        self._gettext = _translations(self.language).gettext
        self._ngettext = _translations(self.language).ngettext

    def __call__(self, key: str, /, **params: Any) -> str:
        """The message of `key` with its ``%(name)s`` placeholders filled from `params`."""
        said = {k: self(v) if isinstance(v, Word) else v for k, v in params.items()}
        return self._gettext(key) % said

    def plural(self, key: str, key_plural: str, n: int, /, **params: Any) -> str:
        """``ngettext``: `key` or `key_plural` by `n` (given to the message as ``n``)."""
        return self._ngettext(key, key_plural, n) % {"n": n, **params}

    def datetime(self, at_ms: int, fmt: str | None = None) -> str:
        """Epoch milliseconds as a date and time in the centre's time zone; by default in
        the language's own pattern (the catalogue's ``format.datetime``, a CLDR pattern)."""
        pattern = fmt or self("format.datetime")
        return format_datetime(_at(at_ms), pattern, tzinfo=self.zone, locale=self.locale)

    def date(self, at_ms: int, fmt: str = "medium") -> str:
        return format_date(_at(at_ms).astimezone(self.zone).date(), fmt, locale=self.locale)

    def time(self, at_ms: int, fmt: str = "HH:mm") -> str:
        return format_time(_at(at_ms), fmt, tzinfo=self.zone, locale=self.locale)

    def zone_name(self) -> str:
        """The centre's time zone as this language names it ("中国（上海）时间")."""
        return get_timezone_location(self.zone, locale=self.locale)

    def number(self, value: float, fmt: str | None = None) -> str:
        return format_decimal(value, fmt, locale=self.locale)

    def percent(self, fraction: float) -> str:
        return format_percent(fraction, locale=self.locale)

    def jinja(self) -> dict[str, Any]:
        """What a template rendered in this language gets: ``gettext``/``ngettext`` for
        `jinja2.ext.i18n` (``_`` resolves to this ``gettext``), ``t`` (the same), and
        ``fmt`` (this translator, for ``fmt.datetime(ms)``, ``fmt.number(x)``)."""
        return {
            "gettext": self.__call__,
            "ngettext": lambda s, p, n, **kw: self.plural(s, p, n, **kw),
            "t": self,
            "fmt": self,
            "lang": self.language,
        }


def _at(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC)


def translator(language: str, time_zone: str | None = None) -> Translator:
    """``t(key, **params)`` in `language` (English for an unknown one), falling back to
    English, then to the key itself."""
    return Translator(language, time_zone)


def keys(language: str) -> dict[str, str]:
    """Every key of the language's catalogue and its message ("" when untranslated)."""
    return {str(m.id): str(m.string or "") for m in catalog(language) if m.id}


def pick_language(accept_language: str | None) -> str:
    """The login page's language, from the browser's ``Accept-Language`` header."""
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def install(env: jinja2.Environment) -> None:
    """Add `jinja2.ext.i18n` to `env`; each render passes its language's ``gettext``
    (`Translator.jinja`), English being the default for a render that passes none."""
    env.add_extension("jinja2.ext.i18n")
    default = Translator(FALLBACK_LANGUAGE)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda s, **kw: default(s, **kw),
        lambda s, p, n, **kw: default.plural(s, p, n, **kw),
        newstyle=False,
    )


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def gaps(tables: Mapping[str, Mapping[str, str]]) -> list[str]:
    """What keeps the catalogues `tables` (language → key → message) from being whole: a key
    one language has and another lacks or leaves empty, placeholders that differ between
    languages, a message whose ``%`` does not format. Empty when every language is
    complete."""
    problems: list[str] = []
    every = set().union(*(t.keys() for t in tables.values())) if tables else set()
    reference = tables.get(FALLBACK_LANGUAGE, {})
    for language, table in sorted(tables.items()):
        for key in sorted(every):
            message = table.get(key)
            if not message:
                problems.append(f"{language}: {key} is {'empty' if key in table else 'missing'}")
                continue
            names = set(_PLACEHOLDER.findall(message))
            try:
                message % dict.fromkeys(names, "x")
            except (KeyError, ValueError, TypeError):
                problems.append(f"{language}: {key} does not format: {message!r}")
            other = reference.get(key)
            if other and names != set(_PLACEHOLDER.findall(other)):
                problems.append(
                    f"{language}: {key} has placeholders {sorted(names)}, "
                    f"{FALLBACK_LANGUAGE} has {sorted(set(_PLACEHOLDER.findall(other)))}"
                )
    return problems
