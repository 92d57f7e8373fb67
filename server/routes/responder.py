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
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from carehub.alarm_lifecycle import FINAL_STATES
from server.accept_link import LinkVerdict
from server.catalogue import LANGUAGES, Translator, install, translator
from server.dispatch.answers import ACTIONS, Answer, message_key
from server.dispatch.eta import MAX_MINUTES, MIN_MINUTES
from server.dispatch.link_view import LinkContext
from server.dispatch.service import outcome
from server.escalation import EscalationPolicy, step_number
from server.routes.deps import Runtime
from server.sealed import Sealer, SealError
from server.sms_text import elder_label, words

log = logging.getLogger(__name__)
router = APIRouter(tags=["responder"], include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
install(templates.env)

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}
"""No cache, no referrer carrying the token to a map site, no search engine."""

REFUSED = {404: "link.invalid", 410: "link.expired"}
"""A refused link's page says why in every language: it cannot know the member's."""


def map_url(lat: float | None, lon: float | None, language: str) -> str | None:
    """A map of the elder's home: Amap in Chinese (it opens on phones in China), else
    OpenStreetMap. Coordinates are WGS-84."""
    if lat is None or lon is None:
        return None
    if language == "zh":
        return f"https://uri.amap.com/marker?position={lon},{lat}&coordinate=wgs84"
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=18/{lat}/{lon}"


def local_time(at_ms: int, now_ms: int, t: Translator) -> str:
    """``14:05 (3 min ago)`` in the team's time zone (`t`'s)."""
    minutes = max(0, (now_ms - at_ms) // 60_000)
    return t("link.when", time=t.time(at_ms), minutes=minutes)


def answer_text(answer: Answer, language: str) -> str:
    """A dispatch answer in the member's language (a link page's notice, an SMS reply)."""
    key, params = message_key(answer)
    return words(language)(key, **params)


def step_shown(ctx: LinkContext, policy: EscalationPolicy, t: Translator) -> str | None:
    """The step the member was called at, numbered as the console numbers it."""
    if ctx.step is None:
        return None
    n = step_number(policy, ctx.step)
    if n.round == 1:
        return str(n.step)
    return t("link.step_round", step=n.step, n=n.round - 1)


def _refused(request: Request, status: int) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "link_refused.html",
        {"lines": [words(lang)(REFUSED[status]) for lang in LANGUAGES], "lang": "zh"},
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
    t = translator(words(ctx.member_language).language, ctx.time_zone)
    key_safe = None
    closed = None
    if ctx.state in FINAL_STATES:
        closed = t("link.closed." + ctx.state.value)
    elif ctx.mine and ctx.key_safe_sealed:
        key_safe = _unseal(rt, ctx)
        if key_safe is not None:
            await rt.service.record_view(ctx.notification_id, "key_safe")
    who = elder_label(ctx.elder_name)
    context: dict[str, Any] = {
        **t.jinja(),
        "ctx": ctx,
        "notice": notice,
        "closed": closed,
        "what": t("link.what." + ctx.kind.value, who=who),
        "who": who,
        "when": local_time(ctx.raised_at_ms, now, t),
        "taken": t("link.taken", who=ctx.accepted_by_name),
        "step": step_shown(ctx, (await rt.service.care_map()).policy(ctx.policy_id or ""), t),
        "map_url": map_url(ctx.lat, ctx.lon, t.language),
        "key_safe": key_safe,
        "base": f"/r/{ctx.ref}/{token}",
        "eta_range": (MIN_MINUTES, MAX_MINUTES),
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


@router.post("/r/{ref}/{token}/eta", response_class=HTMLResponse)
async def link_eta(request: Request, ref: str, token: str, rt: Runtime) -> HTMLResponse:
    """The accepting member's estimate, in whole minutes (1–180), then the page again
    with what came of it."""
    opened = await _open(request, rt, ref, token)
    if isinstance(opened, HTMLResponse):
        return opened
    given = str((await request.form()).get("minutes", "")).strip()
    minutes = int(given) if given.isdigit() and len(given) <= 4 else None
    key = await rt.service.give_eta(opened.notification_id, minutes)
    await rt.service.record_view(opened.notification_id, "eta")
    log.info("alarm %s: eta by link: %s", opened.alarm_id, key.value)
    _, fresh = await rt.service.open_link(ref, token)
    t = words(opened.member_language)
    notice = t("eta." + key.value, n=minutes or 0, low=MIN_MINUTES, high=MAX_MINUTES)
    return await _page(request, rt, fresh or opened, token, notice)


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
