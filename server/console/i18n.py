"""The console's words in Chinese and English: one dict per language, same keys in each.

Alarm kinds, states and delivery statuses are keyed ``kind.<value>``, ``state.<value>``,
``sms.<value>``; a key missing from a language falls back to English, then to the key.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = {"zh": "中文", "en": "English"}
DEFAULT_LANGUAGE = "zh"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app": "CareHub console",
        "login.title": "Sign in",
        "login.username": "Username",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.failed": "Wrong username or password.",
        "login.limited": "Too many failed sign-ins. Wait a few minutes and try again.",
        "logout": "Sign out",
        "nav.queue": "Queue",
        "nav.accounts": "Accounts",
        "nav.audit": "Audit log",
        "language": "Language",
        "queue.title": "Open alarms",
        "queue.empty": "No open alarms.",
        "col.elder": "Elder",
        "col.kind": "Alarm",
        "col.state": "State",
        "col.step": "Escalation step",
        "col.notified": "Notified",
        "col.next": "Next step in",
        "col.age": "Received",
        "step.none": "not started",
        "step.n": "step {n}",
        "ladder.running": "waiting for an answer",
        "ladder.accepted": "accepted, on the way",
        "ladder.arrived": "arrived",
        "ladder.overdue": "overdue: no arrival",
        "ladder.exhausted": "nobody accepted",
        "ladder.closed": "closed",
        "live.on": "Live",
        "live.reconnecting": "Reconnecting…",
        "live.new": "New alarm",
        "sound.enable": "Enable sound",
        "overdue": "due now",
        "ago": "ago",
        "audit.title": "Who saw medical data",
        "audit.at": "When",
        "audit.user": "Account",
        "audit.action": "Seen",
        "audit.elder": "Elder",
        "audit.alarm": "Alarm",
        "audit.empty": "Nobody has viewed medical notes or key-safe codes yet.",
        "action.medical_notes": "medical notes",
        "action.key_safe": "key-safe code",
        "accounts.title": "Accounts",
        "accounts.how": "Create accounts with: carehub user add --username U --role R",
        "role": "Role",
        "team": "Team",
        "kind.button": "Help button",
        "kind.fall": "Fall",
        "kind.vitals": "Vital signs",
        "state.raised": "raised",
        "state.pending_cancel": "cancel window",
        "state.received": "received",
        "state.dispatched": "dispatched",
        "state.accepted": "accepted",
        "sms.queued": "queued",
        "sms.sending": "sending",
        "sms.sent": "sent",
        "sms.delivered": "delivered",
        "sms.undelivered": "undelivered",
        "sms.failed": "failed",
        "response.accepted": "accepted",
        "response.declined": "declined",
        "severity.critical": "critical",
        "severity.warning": "warning",
    },
    "zh": {
        "app": "CareHub 调度台",
        "login.title": "登录",
        "login.username": "用户名",
        "login.password": "密码",
        "login.submit": "登录",
        "login.failed": "用户名或密码错误。",
        "login.limited": "登录失败次数过多，请几分钟后再试。",
        "logout": "退出",
        "nav.queue": "警报队列",
        "nav.accounts": "账户",
        "nav.audit": "审计日志",
        "language": "语言",
        "queue.title": "未处理的警报",
        "queue.empty": "没有未处理的警报。",
        "col.elder": "老人",
        "col.kind": "警报",
        "col.state": "状态",
        "col.step": "升级步骤",
        "col.notified": "已通知",
        "col.next": "下一步",
        "col.age": "接收",
        "step.none": "未开始",
        "step.n": "第 {n} 步",
        "ladder.running": "等待应答",
        "ladder.accepted": "已接受，正在前往",
        "ladder.arrived": "已到达",
        "ladder.overdue": "超时：未到达",
        "ladder.exhausted": "无人接受",
        "ladder.closed": "已关闭",
        "live.on": "实时",
        "live.reconnecting": "正在重新连接…",
        "live.new": "新警报",
        "sound.enable": "开启声音",
        "overdue": "已到期",
        "ago": "前",
        "audit.title": "谁查看了医疗信息",
        "audit.at": "时间",
        "audit.user": "账户",
        "audit.action": "查看内容",
        "audit.elder": "老人",
        "audit.alarm": "警报",
        "audit.empty": "尚无人查看医疗备注或钥匙盒密码。",
        "action.medical_notes": "医疗备注",
        "action.key_safe": "钥匙盒密码",
        "accounts.title": "账户",
        "accounts.how": "创建账户：carehub user add --username U --role R",
        "role": "角色",
        "team": "团队",
        "kind.button": "呼救按钮",
        "kind.fall": "跌倒",
        "kind.vitals": "生命体征",
        "state.raised": "已触发",
        "state.pending_cancel": "取消窗口",
        "state.received": "已接收",
        "state.dispatched": "已派发",
        "state.accepted": "已接受",
        "sms.queued": "排队中",
        "sms.sending": "发送中",
        "sms.sent": "已发送",
        "sms.delivered": "已送达",
        "sms.undelivered": "未送达",
        "sms.failed": "失败",
        "response.accepted": "已接受",
        "response.declined": "已拒绝",
        "severity.critical": "危急",
        "severity.warning": "警告",
    },
}


def translator(language: str) -> Callable[[str], str]:
    """``t(key)`` in `language`, falling back to English, then to the key itself."""
    table = MESSAGES.get(language, MESSAGES["en"])
    english = MESSAGES["en"]

    def t(key: str) -> str:
        return table.get(key) or english.get(key) or key

    return t


def pick_language(accept_language: str | None) -> str:
    """The login page's language, from the browser's ``Accept-Language`` header."""
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE
