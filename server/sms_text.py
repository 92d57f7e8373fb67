"""The SMS a doctor receives: short, in the doctor's language, no more personal data than
needed to act (the elder's surname, a short address, what happened, the alarm reference)."""

from __future__ import annotations

from dataclasses import dataclass

from carehub.alarm_lifecycle import AlarmKind, Severity

_WHAT = {
    "en": {
        AlarmKind.BUTTON: "pressed the call button",
        AlarmKind.FALL: "may have fallen",
        AlarmKind.VITALS: "has abnormal vital signs",
    },
    "zh": {
        AlarmKind.BUTTON: "按下了呼叫按钮",
        AlarmKind.FALL: "可能跌倒",
        AlarmKind.VITALS: "生命体征异常",
    },
}
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


def compose(summary: AlarmSummary, language: str) -> str:
    """One SMS body, at most `MAX_SMS_CHARS` characters."""
    lang = language if language in _WHAT else "zh"
    what = _WHAT[lang][summary.kind]
    who = elder_label(summary.elder_name)
    if lang == "en":
        level = "URGENT" if summary.severity is Severity.CRITICAL else "Notice"
        text = f"CareHub {level}: {who} {what}. {summary.short_address}. Ref {summary.alarm_ref}"
    else:
        level = "紧急" if summary.severity is Severity.CRITICAL else "提醒"
        text = f"CareHub{level}：{who}老人{what}。{summary.short_address}。编号{summary.alarm_ref}"
    return text[:MAX_SMS_CHARS]
