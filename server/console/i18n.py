"""The console's words: `server.catalogue` (one gettext catalogue per language, keyed
messages). Kept so ``from server.console.i18n import translator`` goes on working; add a
word to ``server/locale/*/LC_MESSAGES/carehub.po``, not here (docs/i18n.md)."""

from __future__ import annotations

from server.catalogue import DEFAULT_LANGUAGE, LANGUAGES, Translator, pick_language, translator

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "Translator", "pick_language", "translator"]
