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
        AlarmKind.WELFARE: "needs a welfare check",
    },
    "zh": {
        AlarmKind.BUTTON: "按下了呼叫按钮",
        AlarmKind.FALL: "可能跌倒",
        AlarmKind.VITALS: "生命体征异常",
        AlarmKind.WELFARE: "需要上门或电话关怀确认",
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


# ---------------------------------------------------------------- escalation messages
# Templates and their length (counted by `server.sms_segments`, tested in
# tests/test_sms_templates.py): a Chinese alarm text with its link and reply code takes
# 2 UCS-2 segments, an English one 1–2 GSM-7 segments; "taken", "cancelled" and "arrival
# overdue" notices take 1 segment in either language.

LINK = "{link}"
"""Placeholder for the accept link: the token is derived when the message is sent, so the
stored text never holds it."""


TEST_MARK = {
    "en": "[TEST - installer check, no action needed] ",
    "zh": "【测试：安装检查，无需出诊】",
}
"""Opens the text of a self-test's alarm, so no doctor sets out for a test."""


def compose_alarm(
    summary: AlarmSummary, language: str, reply_code: int | None, test: bool = False
) -> str:
    """The alarm text with its accept link (and reply codes where replies are received);
    a self-test's alarm (`test`) opens with `TEST_MARK` in the member's language."""
    base = compose(summary, language)
    if language == "en":
        codes = f" Reply {reply_code}a accept, {reply_code}d decline." if reply_code else ""
        text = f"{base}.{codes} Open: {LINK}"
    else:
        codes = f"回复{reply_code}a接受，{reply_code}d拒绝。" if reply_code else ""
        text = f"{base}。{codes}打开：{LINK}"
    return (TEST_MARK["en" if language == "en" else "zh"] + text) if test else text


def compose_taken(alarm_ref: str, responder: str, language: str) -> str:
    if language == "en":
        return f"CareHub: alarm {alarm_ref} has been accepted by {responder}. No action needed."
    return f"CareHub：警报{alarm_ref}已由{responder}接手，无需处理。"


def compose_cancelled(alarm_ref: str, language: str) -> str:
    if language == "en":
        return f"CareHub: alarm {alarm_ref} was cancelled by the elder. No action needed."
    return f"CareHub：警报{alarm_ref}已被老人取消，无需处理。"


def compose_closed_by_operator(alarm_ref: str, accidental: bool, language: str) -> str:
    """To those an alarm was sent: the operator closed it (`server.triage.CLOSING`)."""
    if language == "en":
        why = "an accidental press" if accidental else "no help needed"
        return f"CareHub: alarm {alarm_ref} was closed by the operator ({why}). No need to go."
    why_zh = "误按" if accidental else "经通话无需上门"
    return f"CareHub：警报{alarm_ref}已由值班员结案（{why_zh}），无需前往。"


def compose_arrival_overdue(alarm_ref: str, responder: str, language: str) -> str:
    if language == "en":
        return (
            f"CareHub URGENT: alarm {alarm_ref} accepted by {responder}, no arrival within "
            "the service circle. Please follow up."
        )
    return f"CareHub紧急：警报{alarm_ref}由{responder}接手，但服务圈时限内未到达，请跟进。"


def compose_contact_notice(
    elder_name: str, event: str, responder: str | None, language: str
) -> str:
    """What an emergency contact (family) is told: short, no medical detail."""
    who = elder_label(elder_name)
    if language == "en":
        what = {
            "accepted": f"{responder or 'a doctor'} is on the way to {who}",
            "arrived": f"{responder or 'the doctor'} has arrived at {who}'s home",
            "cancelled": f"{who}'s call for help was cancelled",
            "resolved": f"{who}'s alarm has been closed",
        }.get(event, f"{who}'s alarm changed")
        return f"CareHub: {what}."
    what_zh = {
        "accepted": f"{responder or '医生'}正在前往{who}老人家",
        "arrived": f"{responder or '医生'}已到达{who}老人家",
        "cancelled": f"{who}老人的呼叫已取消",
        "resolved": f"{who}老人的警报已处理完毕",
    }.get(event, f"{who}老人的警报有更新")
    return f"CareHub：{what_zh}。"
