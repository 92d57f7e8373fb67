"""The link in every alarm SMS (`GET /r/{ref}/{token}`): a small page, no login, in the
member's language, that opens only what a responder needs, and Accept / Decline / Arrived
as plain form posts (works without JavaScript).

The token opens one alarm for one member (`server.accept_link`); the door details (full
address, key-safe code, family contacts) appear only to the member who accepted. Every
view and action is recorded in ``link_views``. A guessed token and a token used with
another alarm's ref get the same 404 page, so the page is no oracle; an expired one a 410.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from carehub.alarm_lifecycle import FINAL_STATES, AlarmKind
from server.accept_link import LinkVerdict
from server.dispatch.answers import ACTIONS, Answer, AnswerKey
from server.dispatch.link_view import LinkContext
from server.dispatch.service import outcome
from server.escalation import EscalationPolicy, step_number
from server.routes.deps import Runtime
from server.sealed import Sealer, SealError
from server.sms_text import elder_label

log = logging.getLogger(__name__)
router = APIRouter(tags=["responder"], include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}
"""No cache, no referrer carrying the token to a map site, no search engine."""

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "lang": "en",
        "title": "CareHub alarm",
        "what_label": "What",
        "when_label": "When",
        "who_label": "Who",
        "where_label": "Where",
        "step_label": "Step",
        "address_label": "Address",
        "map": "map",
        "key_safe_label": "Key safe",
        "contact_label": "Family",
        "notes_label": "Medical notes",
        "care_level_label": "Care-needs level",
        "round": "repeat {n}",
        "accept": "Accept — I am going",
        "decline": "Decline",
        "arrived": "I have arrived",
        "you_accepted": "You accepted this alarm: the elder is told you are coming.",
        "you_declined": "You declined; the next responder is being called.",
        "arrival_recorded": "Arrival recorded.",
        "taken": "Already accepted by {who}. No action needed.",
        "closed": "This alarm is {state}. No action needed.",
        "min_ago": "{n} min ago",
    },
    "zh": {
        "lang": "zh",
        "title": "CareHub警报",
        "what_label": "事件",
        "when_label": "时间",
        "who_label": "老人",
        "where_label": "地点",
        "step_label": "呼叫轮次",
        "address_label": "地址",
        "map": "地图",
        "key_safe_label": "钥匙盒密码",
        "contact_label": "家属",
        "notes_label": "医疗备注",
        "care_level_label": "护理等级",
        "round": "第 {n} 轮重复",
        "accept": "接受——我去",
        "decline": "拒绝",
        "arrived": "我已到达",
        "you_accepted": "您已接受此警报，老人会收到您正在前往的通知。",
        "you_declined": "您已拒绝，正在呼叫下一位。",
        "arrival_recorded": "已记录到达。",
        "taken": "已由{who}接手，无需处理。",
        "closed": "此警报已{state}，无需处理。",
        "min_ago": "{n}分钟前",
    },
}
WHAT = {
    "en": {
        AlarmKind.BUTTON: "{who} pressed the call button",
        AlarmKind.FALL: "{who} may have fallen",
        AlarmKind.VITALS: "{who} has abnormal vital signs",
    },
    "zh": {
        AlarmKind.BUTTON: "{who}老人按下了呼叫按钮",
        AlarmKind.FALL: "{who}老人可能跌倒",
        AlarmKind.VITALS: "{who}老人生命体征异常",
    },
}
STATE_WORD = {"zh": {"cancelled": "取消", "resolved": "处理完毕"}, "en": {}}
ANSWER_TEXT: dict[str, dict[AnswerKey, str]] = {
    "en": {
        AnswerKey.ALREADY_OVER: "this alarm is already {state}",
        AnswerKey.TAKEN_BY_OTHER: "already accepted by {who}",
        AnswerKey.ALREADY_YOURS: "you accepted this alarm",
        AnswerKey.ACCEPTED: "accepted: the elder is told you are coming",
        AnswerKey.CANNOT_DECLINE: "you accepted this alarm; call the dispatcher",
        AnswerKey.DECLINED: "declined: the next responder is being called",
        AnswerKey.NOT_YOURS: "only the responder who accepted can arrive",
        AnswerKey.ARRIVED: "arrival recorded",
        AnswerKey.ARRIVAL_KNOWN: "arrival already recorded",
    },
    "zh": {
        AnswerKey.ALREADY_OVER: "此警报已{state}",
        AnswerKey.TAKEN_BY_OTHER: "已由{who}接受",
        AnswerKey.ALREADY_YOURS: "您已接受此警报",
        AnswerKey.ACCEPTED: "已接受：老人会收到您正在前往的通知",
        AnswerKey.CANNOT_DECLINE: "您已接受此警报；如需退出请致电调度员",
        AnswerKey.DECLINED: "已拒绝：正在呼叫下一位",
        AnswerKey.NOT_YOURS: "只有接受警报的人可以确认到达",
        AnswerKey.ARRIVED: "已记录到达",
        AnswerKey.ARRIVAL_KNOWN: "到达已记录",
    },
}
"""A dispatch answer (`server.dispatch.answers.AnswerKey`) in each language; ``{who}``
is the name of who accepted first, ``{state}`` the alarm's final state."""
REFUSED = {
    404: [
        "此链接无效。请使用警报短信中的链接，或致电调度员。",
        "This link is not valid. Use the link in the alarm text, or call the dispatcher.",
    ],
    410: [
        "此链接已过期（有效期24小时）。请致电调度员。",
        "This link has expired (links work for 24 hours). Call the dispatcher.",
    ],
}


def map_url(lat: float | None, lon: float | None, language: str) -> str | None:
    """A map of the elder's home: Amap in Chinese (it opens on phones in China), else
    OpenStreetMap. Coordinates are WGS-84."""
    if lat is None or lon is None:
        return None
    if language == "zh":
        return f"https://uri.amap.com/marker?position={lon},{lat}&coordinate=wgs84"
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=18/{lat}/{lon}"


def local_time(at_ms: int, now_ms: int, time_zone: str, language: str) -> str:
    """``14:05 (3 min ago)`` in the team's time zone."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    clock = datetime.fromtimestamp(at_ms / 1000, zone).strftime("%H:%M")
    minutes = max(0, (now_ms - at_ms) // 60_000)
    return f"{clock} ({TEXT[language]['min_ago'].format(n=minutes)})"


def answer_text(answer: Answer, language: str) -> str:
    """A dispatch answer in the member's language (a link page's notice, an SMS reply)."""
    lang = "zh" if language == "zh" else "en"
    state = answer.state.value if answer.state else ""
    return ANSWER_TEXT[lang][answer.key].format(
        who=answer.taken_by or "", state=STATE_WORD[lang].get(state, state)
    )


def step_shown(ctx: LinkContext, policy: EscalationPolicy, language: str) -> str | None:
    """The step the member was called at, numbered as the console numbers it."""
    if ctx.step is None:
        return None
    n = step_number(policy, ctx.step)
    if n.round == 1:
        return str(n.step)
    return f"{n.step} ({TEXT[language]['round'].format(n=n.round - 1)})"


def _refused(request: Request, status: int) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "link_refused.html",
        {"lines": REFUSED[status], "lang": "zh"},
        status_code=status,
        headers=HEADERS,
    )


async def _open(request: Request, rt: Runtime, ref: str, token: str) -> LinkContext | HTMLResponse:
    verdict, ctx = await rt.service.open_link(ref, token)
    if verdict is LinkVerdict.EXPIRED:
        log.info("link for alarm ref %s refused: expired", ref[:8])
        return _refused(request, 410)
    if ctx is None:
        log.info("link for alarm ref %s refused: unknown token", ref[:8])
        return _refused(request, 404)
    return ctx


async def _page(
    request: Request, rt: Runtime, ctx: LinkContext, token: str, notice: str | None = None
) -> HTMLResponse:
    now = rt.clock.now_ms()
    lang = ctx.member_language
    t = TEXT[lang]
    key_safe = None
    closed = None
    if ctx.state in FINAL_STATES:
        closed = t["closed"].format(state=STATE_WORD[lang].get(ctx.state.value, ctx.state.value))
    elif ctx.mine and ctx.key_safe_sealed:
        key_safe = _unseal(rt, ctx)
        if key_safe is not None:
            await rt.service.record_view(ctx.notification_id, "key_safe")
    context: dict[str, Any] = {
        "t": t,
        "ctx": ctx,
        "notice": notice,
        "closed": closed,
        "what": WHAT[lang][ctx.kind].format(who=elder_label(ctx.elder_name)),
        "who": elder_label(ctx.elder_name),
        "when": local_time(ctx.raised_at_ms, now, ctx.time_zone, lang),
        "taken": t["taken"].format(who=ctx.accepted_by_name),
        "step": step_shown(ctx, (await rt.service.care_map()).policy(ctx.policy_id or ""), lang),
        "map_url": map_url(ctx.lat, ctx.lon, lang),
        "key_safe": key_safe,
        "base": f"/r/{ctx.ref}/{token}",
    }
    return templates.TemplateResponse(request, "responder.html", context, headers=HEADERS)


def _unseal(rt: Runtime, ctx: LinkContext) -> str | None:
    key = rt.settings.secret_key
    if key is None or ctx.key_safe_sealed is None:
        return None
    try:
        return Sealer(key.get_secret_value()).unseal(ctx.key_safe_sealed)
    except (SealError, ValueError):
        log.warning("alarm %s: the key-safe code does not open with this key", ctx.alarm_id)
        return None


@router.get("/r/{ref}/{token}", response_class=HTMLResponse)
async def link_page(request: Request, ref: str, token: str, rt: Runtime) -> HTMLResponse:
    """What happened, when, who and where, and Accept / Decline; after Accept the door
    details and Arrived."""
    opened = await _open(request, rt, ref, token)
    if isinstance(opened, HTMLResponse):
        return opened
    await rt.service.record_view(opened.notification_id, "view")
    return await _page(request, rt, opened, token)


@router.post("/r/{ref}/{token}/{action}", response_class=HTMLResponse)
async def link_action(
    request: Request, ref: str, token: str, action: str, rt: Runtime
) -> HTMLResponse:
    """Accept, decline or arrived, then the page as it now is (with what happened)."""
    opened = await _open(request, rt, ref, token)
    if isinstance(opened, HTMLResponse):
        return opened
    if action not in ACTIONS:
        return _refused(request, 404)
    answer = await rt.service.answer(opened.notification_id, action, "link")
    await rt.service.record_view(opened.notification_id, action)
    log.info(  # the answer may name the responder: the log keeps its outcome
        "alarm %s: %s by link: %s", opened.alarm_id, action, outcome(answer)
    )
    _, fresh = await rt.service.open_link(ref, token)
    return await _page(
        request, rt, fresh or opened, token, answer_text(answer, opened.member_language)
    )
