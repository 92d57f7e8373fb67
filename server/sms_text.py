"""The SMS a doctor receives: short, in the doctor's language, no more personal data than
needed to act (the elder's surname, a short address, what happened, the alarm reference).
The words are the catalogue's ``text.*`` keys (`server.catalogue`)."""

from __future__ import annotations

from dataclasses import dataclass

from carehub.alarm_lifecycle import AlarmKind, Severity
from server.catalogue import DEFAULT_LANGUAGE, LANGUAGES, Translator, translator

MAX_SMS_CHARS = 160


@dataclass(frozen=True)
class AlarmSummary:
    alarm_ref: str  # short reference the doctor can quote back
    elder_name: str
    short_address: str
    kind: AlarmKind
    severity: Severity


def elder_label(name: str) -> str:
    """Family name only, written first as in Chinese usage.

    "王秀英" → "王", "Zhang San" → "Zhang".
    """
    name = name.strip()
    if not name:
        return "?"
    if " " in name or name.isascii():
        return name.split()[0]
    return name[0]


def words(language: str) -> Translator:
    """The catalogue in a member's language; Chinese for a language it does not have."""
    return translator(language if language in LANGUAGES else DEFAULT_LANGUAGE)


def compose(summary: AlarmSummary, language: str) -> str:
    """One SMS body, at most `MAX_SMS_CHARS` characters."""
    t = words(language)
    level = "critical" if summary.severity is Severity.CRITICAL else "warning"
    text = t(
        "text.summary",
        level=t("text.level." + level),
        who=elder_label(summary.elder_name),
        what=t("text.what." + summary.kind.value),
        address=summary.short_address,
        ref=summary.alarm_ref,
    )
    return text[:MAX_SMS_CHARS]


# ---------------------------------------------------------------- escalation messages
# Templates and their length (counted by `server.sms_segments`, tested in
# tests/test_sms_templates.py): a Chinese alarm text with its link and reply code takes
# 2 UCS-2 segments, an English one 1–2 GSM-7 segments; "taken", "cancelled" and "arrival
# overdue" notices take 1 segment in either language.

LINK = "{link}"
"""Placeholder for the accept link: the token is derived when the message is sent, so the
stored text never holds it."""


def self_test_mark(language: str) -> str:
    """Opens the text of a self-test's alarm, so no doctor sets out for a test."""
    return words(language)("text.test_mark")


def compose_alarm(
    summary: AlarmSummary, language: str, reply_code: int | None, test: bool = False
) -> str:
    """The alarm text with its accept link (and reply codes where replies are received);
    a self-test's alarm (`test`) opens with `self_test_mark` in the member's language."""
    t = words(language)
    codes = t("text.codes", n=reply_code) if reply_code else ""
    text = t("text.alarm", summary=compose(summary, language), codes=codes, link=LINK)
    return (self_test_mark(language) + text) if test else text


def compose_taken(alarm_ref: str, responder: str, language: str) -> str:
    return words(language)("text.taken", ref=alarm_ref, who=responder)


def compose_cancelled(alarm_ref: str, language: str) -> str:
    return words(language)("text.cancelled", ref=alarm_ref)


def compose_closed_by_operator(alarm_ref: str, accidental: bool, language: str) -> str:
    """To those an alarm was sent: the operator closed it (`server.triage.CLOSING`)."""
    t = words(language)
    why = t("text.why.accidental") if accidental else t("text.why.no_help")
    return t("text.closed_by_operator", ref=alarm_ref, why=why)


def compose_arrival_overdue(alarm_ref: str, responder: str, language: str) -> str:
    return words(language)("text.arrival_overdue", ref=alarm_ref, who=responder)


CONTACT_EVENTS = ("accepted", "arrived", "cancelled", "resolved")


def compose_contact_notice(
    elder_name: str, event: str, responder: str | None, language: str
) -> str:
    """What an emergency contact (family) is told: short, no medical detail."""
    t = words(language)
    who = elder_label(elder_name)
    if event in ("accepted", "arrived"):
        default = "text.contact.a_doctor" if event == "accepted" else "text.contact.the_doctor"
        what = t("text.contact." + event, responder=responder or t(default), who=who)
    else:
        what = t("text.contact." + (event if event in CONTACT_EVENTS else "changed"), who=who)
    return t("text.contact", what=what)
