"""The console's pages, its live feed and its assets (all under ``/console``)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode
from zoneinfo import available_timezones

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi import Path as FastApiPath
from fastapi.responses import RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from carehub.admin_contract import EnrollmentCode, HouseholdView
from carehub.alarm_lifecycle import AlarmState
from carehub.api_contract import ID_PATTERN, CallEndReason
from server.care_map import CareMap
from server.catalogue import LANGUAGES, Word, pick_language, translator
from server.change_signal import ALARMS_KEY, HEALTH_KEY
from server.console.accounts import (
    DUMMY_HASH,
    MEDICAL_ROLES,
    USERNAME,
    Role,
    Session,
    new_csrf_token,
    new_session_id,
    password_matches,
    session_key,
)
from server.console.alarm_actions import (
    ActionRefused,
    actor,
    add_entry,
    claim,
    clean_text,
    edit_entry,
    record_checklist,
    release,
    resolve,
)
from server.console.alarm_detail import (
    OUTCOMES,
    AlarmView,
    TimelineEntry,
    alarm_view,
    fall_window,
    vitals,
    vitals_reason,
)
from server.console.audit_log import BadFilter, PageKey, parse_filter
from server.console.checklist_store import checklist_items
from server.console.checklists import checklist
from server.console.coming import coming
from server.console.elder_card import ElderCard, elder_card, elder_position, sealed_key_safe
from server.console.elder_search import MAX_QUERY, alarm_history, find_elders
from server.console.handover import handover_details, handover_order
from server.console.health_board import health_board, lasted
from server.console.incidents import incident_of, since_first_ms
from server.console.live_queue import (
    CLOSED,
    UNCLAIMED_CUE_S,
    next_alarm,
    open_alarms,
    queue_incidents,
    unclaimed_level,
)
from server.console.plots import Target, acceleration_svg, calendar_days, series_svg
from server.console.selftest_board import homes_to_selftest
from server.console.session_streams import SessionStreams
from server.console.sign_in_limit import Refusal, Refused, SignInLimits, SignInThrottle
from server.console.sound import alert_wav
from server.console.timeline_text import (
    Translate,
    actor_label,
    describe,
    reason_text,
    step_text,
)
from server.console.web import (
    LOGIN_CSRF_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    check_login_csrf,
    client_address,
    console_store,
    current_session,
    render,
    require,
    set_cookie,
    tokens_match,
    wants_fragment,
)
from server.dispatch.answers import message_key
from server.elder_facts import age
from server.household_store import Conflict, HouseholdStore, NotFound
from server.kpi import ACCEPT_TARGETS, ARRIVAL_TARGET, days_start_ms, kpi_report
from server.kpi_store import read_alarm_times
from server.routes.deps import Runtime
from server.runtime import ServerRuntime
from server.sealed import Sealer, SealError
from server.triage import TriageOutcome, TriageRefused
from server.voice_calls import CallStore

log = logging.getLogger(__name__)
router = APIRouter(prefix=PREFIX, tags=["console"], include_in_schema=False)
static = StaticFiles(directory=Path(__file__).resolve().parents[1] / "static" / "console")
STATIC_PATH = f"{PREFIX}/static"

"""The change-signal key every alarm change is notified on (relayed between processes)."""
KEEPALIVE_S = 5.0
AUDIT_NOTES = "medical_notes"
AUDIT_KEY_SAFE = "key_safe"
ALARM_ROLES = (*MEDICAL_ROLES, Role.INSTALLER)
"""Who may open an alarm's page and the health board (installers without medical data)."""


# ------------------------------------------------------------ signing in and out


@router.get("/login")
async def login_page(request: Request, rt: Runtime) -> Response:
    kept = request.cookies.get(LOGIN_CSRF_COOKIE)
    token = kept if kept is not None and tokens_match(kept, kept) else new_csrf_token()
    response = render(
        request,
        "console/login.html",
        None,
        pick_language(request.headers.get("accept-language")),
        login_csrf=token,
    )
    set_cookie(response, rt, LOGIN_CSRF_COOKIE, token, 3600)
    return response


_REFUSAL_TEXT = {Refusal.SOURCE: "login.limited", Refusal.ACCOUNT: "login.delayed"}


@router.post("/login", dependencies=[Depends(check_login_csrf)])
async def login(request: Request, rt: Runtime) -> Response:
    """Sign in. Each try is counted as a failure before its password is checked (one step
    with the limit's check: `ConsoleStore.claim_sign_in`) and taken back if it succeeds."""
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    valid_name = USERNAME.match(username) is not None
    client = client_address(request)
    store = console_store(rt)
    now_ms = rt.clock.now_ms()
    language = pick_language(request.headers.get("accept-language"))
    limit = rt.settings.console_login_max_failures
    throttle = SignInThrottle(
        SignInLimits(
            per_source=limit,
            window_ms=int(rt.settings.console_login_window_s * 1000),
            account_free=limit,
            account_delay_max_ms=int(rt.settings.console_login_delay_max_s * 1000),
        )
    )
    claim = await store.claim_sign_in(username if valid_name else "", client, now_ms, throttle)
    if isinstance(claim, Refused):
        log.warning("console: sign-in refused (%s limit, client %s)", claim.reason.value, client)
        response = render(
            request,
            "console/login.html",
            None,
            language,
            status.HTTP_429_TOO_MANY_REQUESTS,
            login_csrf=request.cookies.get(LOGIN_CSRF_COOKIE, ""),
            error=_REFUSAL_TEXT[claim.reason],
            retry_after_s=claim.retry_after_s,
        )
        response.headers["Retry-After"] = str(claim.retry_after_s)
        return response
    found = await store.credentials(username) if valid_name else None
    # argon2 takes tens of ms of CPU: off the event loop, which serves every alarm
    stored = found[1] if found else DUMMY_HASH
    ok = await asyncio.to_thread(password_matches, stored, password) and found is not None
    if not ok or found is None:
        log.info("console: failed sign-in (client %s)", client)
        return render(
            request,
            "console/login.html",
            None,
            language,
            status.HTTP_401_UNAUTHORIZED,
            login_csrf=request.cookies.get(LOGIN_CSRF_COOKIE, ""),
            error="login.failed",
        )
    account = found[0]
    await store.sign_in_succeeded(claim, username, client, now_ms)
    session_id = new_session_id()
    max_age_s = int(rt.settings.console_session_hours * 3600)
    await store.start_session(
        account.id, session_id, new_csrf_token(), now_ms, now_ms + max_age_s * 1000
    )
    log.info("console: %s signed in", account.username)
    response = RedirectResponse(landing_page(account.role), status.HTTP_303_SEE_OTHER)
    set_cookie(response, rt, SESSION_COOKIE, session_id, max_age_s)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, rt: Runtime, session: Session = require()) -> Response:
    cookie = request.cookies[SESSION_COOKIE]
    await console_store(rt).end_session(cookie)
    _session_streams(request).end(session_key(cookie))  # ended elsewhere at their next send
    response = RedirectResponse(f"{PREFIX}/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@router.post("/language")
async def set_language(request: Request, rt: Runtime, session: Session = require()) -> Response:
    form = await request.form()
    language = str(form.get("language", ""))
    if language not in LANGUAGES:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"language must be one of {', '.join(LANGUAGES)}"
        )
    await console_store(rt).set_language(session.account.id, language)
    back = str(form.get("next", ""))
    safe = back.startswith(f"{PREFIX}/") and "//" not in back
    return RedirectResponse(back if safe else f"{PREFIX}/", status.HTTP_303_SEE_OTHER)


# ------------------------------------------------------------ the queue


def _team_scope(session: Session) -> str | None:
    """Doctors see their own team's elders only; the other medical roles see every team."""
    if session.account.role is Role.DOCTOR:
        return session.account.team_id or "\0none"
    return None


def landing_page(role: Role) -> str:
    """Where an account lands after signing in: the queue, or for an installer (who may not
    see the queue's medical data) the health board."""
    return f"{PREFIX}/health" if role is Role.INSTALLER else f"{PREFIX}/"


@router.get("/")
async def queue_page(request: Request, rt: Runtime, session: Session = require()) -> Response:
    """The queue; its rows alone when the page's live feed asks (`wants_fragment`). An
    installer's browser is sent on to the health board (a script still gets 403)."""
    if session.account.role not in MEDICAL_ROLES:
        if request.method == "GET" and not wants_fragment(request):
            return RedirectResponse(landing_page(session.account.role), status.HTTP_303_SEE_OTHER)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the queue is for medical roles")
    care = await rt.service.care_map()
    rows = await open_alarms(rt.store.engine, _team_scope(session), care.policy)
    ringing = await CallStore(rt.store.engine).ringing_alarms()
    page = "console/_queue_rows.html" if wants_fragment(request) else "console/queue.html"
    return render(
        request,
        page,
        session,
        incidents=queue_incidents(rows, _incident_window_ms(rt)),
        now_ms=rt.clock.now_ms(),
        step_text=step_text,
        cue=unclaimed_level,
        cue_s=UNCLAIMED_CUE_S,
        ringing=ringing,
    )


@router.get("/handover")
async def handover_page(
    request: Request, rt: Runtime, session: Session = require(*MEDICAL_ROLES)
) -> Response:
    """The shift handover, printable: every open alarm (a doctor: their team's), who has
    claimed it, who accepted it and its last note; the unclaimed first."""
    care = await rt.service.care_map()
    rows = await open_alarms(rt.store.engine, _team_scope(session), care.policy)
    notes, accepted = await handover_details(rt.store.engine, [r.alarm_id for r in rows])
    names = {m.id: m.name for m in care.members.values()}

    def who(t: Translate, actor: str) -> str:
        return actor_label(t, actor, names)

    return render(
        request,
        "console/handover.html",
        session,
        rows=handover_order(rows, notes, accepted),
        actor_label=who,
        now_ms=rt.clock.now_ms(),
    )


def _incident_window_ms(rt: ServerRuntime) -> int:
    return int(rt.settings.console_incident_window_s * 1000)


@router.get("/next")
async def next_alarm_page(
    rt: Runtime,
    after: Annotated[str, Query(max_length=64)] = "",
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """The keyboard's "next alarm" (N): the most urgent open alarm nobody has claimed, else
    the most urgent one, other than `after` (the one on screen); the queue when none is."""
    rows = await open_alarms(rt.store.engine, _team_scope(session))
    found = next_alarm(rows, after)
    target = f"{PREFIX}/alarms/{found}" if found else f"{PREFIX}/"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.get("/events")
async def events(
    request: Request, rt: Runtime, session: Session = require(*MEDICAL_ROLES)
) -> StreamingResponse:
    """Server-Sent Events: ``hello`` on (re)connecting, ``queue`` whenever an alarm changed
    in any server process (the page then fetches its rows from `/console/`), comments to
    keep the connection alive. ``retry`` makes the browser reconnect within a second."""
    return _change_stream(request, rt, ALARMS_KEY, "queue")


@router.get("/health/events")
async def health_events(
    request: Request, rt: Runtime, session: Session = require(*ALARM_ROLES)
) -> StreamingResponse:
    """As `events`, for the health board: ``health`` whenever a fault, a hub's heartbeat, a
    failed SMS or a self-test changed it (the page then fetches `/console/health`)."""
    return _change_stream(request, rt, HEALTH_KEY, "health")


def _session_streams(request: Request) -> SessionStreams:
    """This app's registry of open streams (one per app, so per server process)."""
    state = request.app.state
    if not hasattr(state, "console_streams"):
        state.console_streams = SessionStreams()
    registry: SessionStreams = state.console_streams
    return registry


SIGNED_OUT = "event: signed-out\ndata: signed out\n\n"
"""The stream's last words when its session ended (the page goes to the sign-in page)."""


def _change_stream(request: Request, rt: ServerRuntime, key: str, event: str) -> StreamingResponse:
    cookie = request.cookies[SESSION_COOKIE]  # `require` found a live session for it
    registry = _session_streams(request)

    async def stream() -> AsyncIterator[str]:
        version = rt.changes.version(key)
        yield "retry: 1000\nevent: hello\ndata: connected\n\n"
        with registry.watch(session_key(cookie)) as ended:
            while not await request.is_disconnected():
                changed = asyncio.ensure_future(rt.changes.wait(key, version, KEEPALIVE_S))
                signed_out = asyncio.ensure_future(ended.wait())
                await asyncio.wait((changed, signed_out), return_when=asyncio.FIRST_COMPLETED)
                for waiting in (changed, signed_out):
                    waiting.cancel()
                seen = changed.result() if changed.done() and not changed.cancelled() else version
                # every send first asks whether the session still is (ended in another
                # process, or expired): a signed-out browser is told nothing more
                if ended.is_set() or await current_session(request, rt) is None:
                    yield SIGNED_OUT
                    return
                if seen != version:
                    version = seen
                    yield f"event: {event}\ndata: changed\n\n"
                else:
                    yield ": keepalive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# ------------------------------------------------------------ an elder's card (audited)


async def _visible_elder(rt: ServerRuntime, session: Session, elder_id: str) -> ElderCard:
    """The elder, if this account may see them: a doctor only their own team's (another
    team's elder is answered exactly like one that does not exist)."""
    card = await elder_card(rt.store.engine, elder_id)
    scope = _team_scope(session)
    if card is None or (scope is not None and card.team_id != scope):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such elder")
    return card


ConsoleId = Annotated[str, FastApiPath(pattern=ID_PATTERN)]
"""An elder's or alarm's id in a console path (else 422, before any database lookup)."""
JustifyingAlarm = Annotated[
    str | None,
    Query(
        pattern=ID_PATTERN,
        description="The alarm the card was opened from: written to the audit log with the "
        "view, so it must be one of this elder's alarms.",
    ),
]


async def _justifying_alarm(rt: ServerRuntime, card: ElderCard, alarm: str | None) -> str | None:
    """`alarm`, if it is one of this elder's alarms: the audit log records it as the reason
    for the view, so a forged one (free text, another elder's or team's alarm) is refused."""
    if alarm is not None and not await console_store(rt).is_alarm_of(alarm, card.id):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"alarm {alarm} is not an alarm of this elder: open the card from the alarm's "
            "page, or without ?alarm=",
        )
    return alarm


@router.get("/elders")
async def elders_page(
    request: Request,
    rt: Runtime,
    q: Annotated[str, Query(max_length=MAX_QUERY)] = "",
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """Find an elder by name, short address or id (a doctor: their own team's only)."""
    found = await find_elders(rt.store.engine, q, _team_scope(session))
    return render(request, "console/elders.html", session, q=q, found=found)


@router.get("/elders/{elder_id}")
async def elder_page(
    request: Request,
    rt: Runtime,
    elder_id: ConsoleId,
    alarm: JustifyingAlarm = None,
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """The elder's card; showing their medical notes is recorded in the audit log."""
    card = await _visible_elder(rt, session, elder_id)
    alarm = await _justifying_alarm(rt, card, alarm)
    if card.medical_notes:
        await console_store(rt).audit(
            session.account, AUDIT_NOTES, card.id, alarm, rt.clock.now_ms()
        )
    history = await alarm_history(rt.store.engine, card.id)
    return render(
        request,
        "console/elder.html",
        session,
        elder=card,
        elder_age=_age(rt, card),
        alarm=alarm,
        history=history,
    )


def _age(rt: ServerRuntime, card: ElderCard) -> int | None:
    """The elder's age today in the centre's time zone (`server.elder_facts.age`)."""
    return age(card.born, rt.clock.now_ms(), rt.settings.console_time_zone)


@router.post("/elders/{elder_id}/key-safe")
async def reveal_key_safe(
    request: Request,
    rt: Runtime,
    elder_id: ConsoleId,
    alarm: JustifyingAlarm = None,
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """Unseal the key-safe code for this one page view; each reveal is recorded."""
    card = await _visible_elder(rt, session, elder_id)
    alarm = await _justifying_alarm(rt, card, alarm)
    code = await _reveal(rt, session, card, alarm)
    return render(
        request,
        "console/elder.html",
        session,
        elder=card,
        alarm=alarm,
        key_safe_code=code,
        history=await alarm_history(rt.store.engine, card.id),
    )


async def _reveal(rt: ServerRuntime, session: Session, card: ElderCard, alarm: str | None) -> str:
    """The elder's key-safe code, unsealed, the reveal written to the audit log."""
    sealed = await sealed_key_safe(rt.store.engine, card.id)
    if sealed is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this elder has no key-safe code on file")
    if rt.settings.secret_key is None:
        log.error("console: key-safe code of %s cannot be opened: no CAREHUB_SECRET_KEY", card.id)
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the server has no CAREHUB_SECRET_KEY to open the code"
        )
    try:
        code = Sealer(rt.settings.secret_key.get_secret_value()).unseal(sealed)
    except SealError:
        log.error("console: key-safe code of %s does not open with this key", card.id)
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the code was sealed with another CAREHUB_SECRET_KEY"
        ) from None
    await console_store(rt).audit(
        session.account, AUDIT_KEY_SAFE, card.id, alarm, rt.clock.now_ms()
    )
    return code


# ------------------------------------------------------------ admin pages


@router.get("/audit")
async def audit_page(
    request: Request,
    rt: Runtime,
    account: Annotated[str, Query(max_length=80)] = "",
    elder: Annotated[str, Query(max_length=64)] = "",
    day_from: Annotated[str, Query(max_length=10)] = "",
    day_to: Annotated[str, Query(max_length=10)] = "",
    time_zone: Annotated[str, Query(max_length=64)] = "Asia/Shanghai",
    before: Annotated[str | None, Query(max_length=120)] = None,
    session: Session = require(Role.ADMIN),
) -> Response:
    """Who saw medical data and every call, newest first, a page at a time (``before``: the
    page key of an "older" link), filtered by account, elder and days (inclusive, in
    `time_zone`)."""
    try:
        where = parse_filter(account, elder, day_from, day_to, time_zone)
        key = PageKey.parse(before) if before is not None else None
    except BadFilter as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    page = await console_store(rt).audit_log(where, key)
    filters = {
        "account": account,
        "elder": elder,
        "day_from": day_from,
        "day_to": day_to,
        "time_zone": time_zone,
    }
    kept = {k: v for k, v in filters.items() if v}
    older = (
        f"{PREFIX}/audit?{urlencode({**kept, 'before': page.older_than.text()})}"
        if page.older_than is not None
        else None
    )
    newest = f"{PREFIX}/audit?{urlencode(kept)}" if before is not None else None
    return render(
        request,
        "console/audit.html",
        session,
        entries=page.rows,
        filters=filters,
        older_link=older,
        newest_link=newest,
    )


@router.get("/accounts")
async def accounts_page(
    request: Request, rt: Runtime, session: Session = require(Role.ADMIN)
) -> Response:
    accounts = await console_store(rt).list_accounts()
    return render(request, "console/accounts.html", session, accounts=accounts)


# ------------------------------------------------------------ assets


@functools.cache
def _alert() -> bytes:
    return alert_wav()


@router.get("/alert.wav")
async def alert_sound() -> Response:
    return Response(_alert(), media_type="audio/wav", headers={"Cache-Control": "max-age=86400"})


# ------------------------------------------------------------ one alarm: detail and actions


async def _visible_alarm(rt: ServerRuntime, session: Session, alarm_id: str) -> AlarmView:
    """The alarm, if this account may see it: a doctor only their own team's."""
    view = await alarm_view(rt.store.engine, alarm_id)
    scope = _team_scope(session)
    if view is None or (scope is not None and view.team_id != scope):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alarm")
    return view


def _map_link(card: ElderCard, lat: float | None, lon: float | None) -> str:
    if lat is not None and lon is not None:
        return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=18/{lat}/{lon}"
    return "https://www.openstreetmap.org/search?query=" + quote(card.address or card.short_address)


@router.get("/alarms/{alarm_id}")
async def alarm_page(
    request: Request, rt: Runtime, alarm_id: ConsoleId, session: Session = require(*ALARM_ROLES)
) -> Response:
    """The operator screen of one alarm. Installers get it without any medical data; a view
    of the elder's medical notes is recorded in the audit log."""
    return await _alarm_screen(request, rt, alarm_id, session)


async def _alarm_screen(
    request: Request,
    rt: ServerRuntime,
    alarm_id: str,
    session: Session,
    reveal: bool = False,
    audit: bool = True,
) -> Response:
    """The page; `audit` False for the screen an action answers with (the page was opened,
    and audited, before the action: an action is not another view)."""
    view = await _visible_alarm(rt, session, alarm_id)
    card = await elder_card(rt.store.engine, view.elder_id)
    assert card is not None  # alarms.elder_id is a foreign key
    medical = session.account.role in MEDICAL_ROLES
    if medical and card.medical_notes and audit:
        await console_store(rt).audit(
            session.account, AUDIT_NOTES, card.id, alarm_id, rt.clock.now_ms()
        )
    code = await _reveal(rt, session, card, alarm_id) if reveal and medical else None
    plot = None
    window = fall_window(view.details) if view.kind == "fall" else None
    if window is not None:
        t = translator(session.account.language)
        caption = t("plot.acceleration", max="{max}")
        plot = acceleration_svg(*window, caption=caption, second=t("unit.s"))
    scores, readings = vitals(view.details) if medical else ({}, {})
    ticked = [(e.detail, e.actor, e.at_ms) for e in view.timeline if e.kind == "checked"]
    async with rt.store.engine.connect() as conn:
        items = await checklist_items(conn, view.kind)
    lat, lon = await elder_position(rt.store.engine, card.id)
    care = await rt.service.care_map()
    members = _assignable(care, view.team_id, rt.clock.now_ms()) if medical else []
    policy = care.policy(view.policy_id) if view.policy_id else None
    incident = await incident_of(
        rt.store.engine, view.id, view.elder_id, view.received_at_ms, _incident_window_ms(rt)
    )

    def said(t: Translate, entry: TimelineEntry) -> str:
        return describe(t, entry, view.names, policy)

    def who(t: Translate, actor: str) -> str:
        return actor_label(t, actor, view.names)

    return render(
        request,
        "console/alarm.html",
        session,
        alarm=view,
        elder=card,
        elder_age=_age(rt, card),
        coming=coming(
            view.accepted_by,
            view.accepted_at_ms,
            view.timeline,
            view.names,
            {m.id: m.phone for m in care.members.values()},
            rt.clock.now_ms(),
        )
        if medical
        else None,
        medical=medical,
        map_link=_map_link(card, lat, lon),
        plot=plot,
        scores=scores,
        readings=readings,
        reason=vitals_reason(view.details) if medical else None,
        reason_text=reason_text,
        checks=checklist(items, ticked) if medical else [],
        describe=said,
        actor_label=who,
        members=members,
        outcomes=OUTCOMES,
        triage_outcomes=[o.value for o in TriageOutcome],
        now_ms=rt.clock.now_ms(),
        incident=incident,
        incident_since_ms=since_first_ms(incident, rt.clock.now_ms()) if incident else 0,
        incident_first_ms=min(a.received_at_ms for a in incident) if incident else 0,
        key_safe_code=code,
        csrf_token=session.csrf_token,  # the call panel's script posts with it
        call_reasons=[r.value for r in CallEndReason],
    )


@dataclass(frozen=True)
class Assignable:
    id: str
    name: str
    team_id: str
    on_duty: bool


def _assignable(care: CareMap, team_id: str, now_ms: int) -> list[Assignable]:
    """Members who can be assigned the alarm: on duty first (the alarm's team's first), then
    the rest, each marked, so nobody picks an off-duty doctor by accident."""
    on_duty = {m for t in care.teams for m in care.on_duty(t, now_ms)}
    found = [Assignable(m.id, m.name, m.team_id, m.id in on_duty) for m in care.members.values()]
    return sorted(found, key=lambda m: (not m.on_duty, m.team_id != team_id, m.name, m.id))


def _back(alarm_id: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/alarms/{alarm_id}", status.HTTP_303_SEE_OTHER)


@router.post("/alarms/{alarm_id}/{action}")
async def alarm_action(
    request: Request,
    rt: Runtime,
    alarm_id: ConsoleId,
    action: str,
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """acknowledge · assign (member) · note (text) · edit (event, text) · callback (text) ·
    arrived · claim (take_over=1 to take it from another operator) · release · check (item)
    · resolve (outcome) · triage (outcome: `server.triage.TriageOutcome`): each recorded in
    the alarm's events with who and when. key-safe shows the page with the code revealed
    (recorded in the audit log). A script's request (`wants_fragment`) gets the screen as
    it now is instead of a redirect."""
    if action == "key-safe":  # this page again, the code shown (and the reveal audited)
        return await _alarm_screen(request, rt, alarm_id, session, reveal=True)
    done = await _act(request, rt, alarm_id, action, session)
    if wants_fragment(request):  # the page's script: the screen as it now is, no reload
        return await _alarm_screen(request, rt, alarm_id, session, audit=False)
    return done


async def _act(
    request: Request, rt: ServerRuntime, alarm_id: str, action: str, session: Session
) -> Response:
    view = await _visible_alarm(rt, session, alarm_id)
    form = await request.form()
    engine, now, who = rt.store.engine, rt.clock.now_ms(), session.account
    try:
        if action == "acknowledge":
            await add_entry(engine, alarm_id, who, "acknowledged", "", now)
        elif action in ("note", "callback"):
            await add_entry(
                engine, alarm_id, who, action, clean_text(str(form.get("text", ""))), now
            )
        elif action == "edit":
            event = str(form.get("event", ""))
            if not event.isdigit():
                raise ActionRefused("refused.which_note")
            await edit_entry(
                engine, alarm_id, int(event), who, clean_text(str(form.get("text", "")))
            )
        elif action == "assign":
            care = await rt.service.care_map()
            member = str(form.get("member", ""))
            if member not in care.members:
                raise ActionRefused("refused.choose_member")
            if view.state in CLOSED:
                raise ActionRefused("refused.closed_assign", state=Word("state." + view.state))
            await rt.service.assign(alarm_id, view.hub_id, member, actor(who))
            return _back(alarm_id)
        elif action == "arrived":
            await _record_arrival(rt, view, session)
            return _back(alarm_id)
        elif action == "claim":
            taken_from = await claim(engine, alarm_id, who, now, form.get("take_over") == "1")
            if taken_from:
                log.info("console: alarm %s taken over by %s", alarm_id, who.username)
        elif action == "release":
            await release(engine, alarm_id, who, now)
        elif action == "check":
            item = str(form.get("item", ""))
            async with engine.connect() as conn:
                items = await checklist_items(conn, view.kind)
            if item not in items:
                raise ActionRefused(
                    "refused.no_check_item", item=item, kind=Word("kind." + view.kind)
                )
            if item not in {e.detail for e in view.timeline if e.kind == "checked"}:
                await add_entry(engine, alarm_id, who, "checked", item, now)
        elif action == "triage":
            await _triage(rt, view, str(form.get("outcome", "")), actor(who), now)
            return _back(alarm_id)
        elif action == "resolve":
            outcome = str(form.get("outcome", ""))
            also = await _also_resolve(rt, view, [str(v) for v in form.getlist("also")])
            await resolve(rt.service, alarm_id, who, outcome)
            log.info("console: alarm %s resolved by %s", alarm_id, who.username)
            for other in also:  # offered on the page: the incident's other open alarms
                try:
                    await resolve(rt.service, other, who, outcome)
                except ActionRefused as e:  # closed meanwhile (by its responder, the hub)
                    log.info("console: alarm %s of the incident not resolved: %s", other, e)
                else:
                    log.info("console: alarm %s resolved with %s", other, alarm_id)
            return _back(alarm_id)
        else:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action {action!r}")
    except ActionRefused as e:
        log.info("console: %s on alarm %s refused: %s", action, alarm_id, e.key)
        said = translator(session.account.language)(e.key, **e.params)
        raise HTTPException(status.HTTP_409_CONFLICT, said) from e
    await rt.changes.alarms_changed()  # the console's own entries: no hub hears them
    return _back(alarm_id)


async def _also_resolve(rt: ServerRuntime, view: AlarmView, asked: list[str]) -> list[str]:
    """The alarms to resolve with this one: each must be an open alarm of its incident."""
    if not asked:
        return []
    incident = await incident_of(
        rt.store.engine, view.id, view.elder_id, view.received_at_ms, _incident_window_ms(rt)
    )
    open_ones = {a.alarm_id for a in incident if a.state not in CLOSED} - {view.id}
    strangers = [a for a in asked if a not in open_ones]
    if strangers:
        raise ActionRefused(
            f"alarm {strangers[0][:64]} is not an open alarm of this incident: resolve it "
            "on its own page"
        )
    return list(dict.fromkeys(asked))


async def _record_arrival(rt: ServerRuntime, view: AlarmView, session: Session) -> None:
    """A responder phoned in their arrival: recorded as theirs (as if by their link), via
    the console account that took the call, so the service circle counts it."""
    if view.accepted_by is None:
        raise ActionRefused("refused.nobody_accepted")
    if view.state in CLOSED:
        raise ActionRefused("refused.closed_arrival", state=Word("state." + view.state))
    if view.arrived_at_ms is not None:
        raise ActionRefused("refused.arrived_before")
    notification = await console_store(rt).acceptance_of(view.id, view.accepted_by)
    if notification is None:
        raise ActionRefused("refused.no_message")
    answer = await rt.service.answer(notification, "arrived", actor(session.account))
    if not answer.ok:
        key, params = message_key(answer)
        raise ActionRefused(key, **params)
    log.info("console: arrival on alarm %s recorded by %s", view.id, session.account.username)


async def _triage(rt: ServerRuntime, view: AlarmView, value: str, who: str, now: int) -> None:
    """The operator's outcome, applied by the dispatch service in one step; then its
    messages are sent (closing tells whoever was texted) and a ladder started now is taken
    at once."""
    try:
        outcome = TriageOutcome(value)
    except ValueError:
        choices = ", ".join(o.value for o in TriageOutcome)
        raise ActionRefused("refused.outcome", choices=choices) from None
    try:
        effect = await rt.service.triage(view.id, view.hub_id, outcome, who)
    except TriageRefused as e:
        raise ActionRefused("refused.triage_closed", state=Word("state." + e.state.value)) from None
    log.info("console: alarm %s triaged %s by %s", view.id, outcome.value, who)
    if effect.state in (AlarmState.RESOLVED, AlarmState.CANCELLED):  # closed: what was done
        await record_checklist(rt.store.engine, view.id, who, now)
        await rt.changes.alarms_changed(view.hub_id)  # the checklist row: the console's own


# ------------------------------------------------------------ health board and KPI


@router.get("/health")
async def health_page(
    request: Request, rt: Runtime, session: Session = require(*ALARM_ROLES)
) -> Response:
    board = await health_board(rt.store.engine, _team_scope(session))
    return render(
        request,
        "console/_health_board.html" if wants_fragment(request) else "console/health.html",
        session,
        board=board,
        selftests=await homes_to_selftest(rt.store.engine, _team_scope(session)),
        now_ms=rt.clock.now_ms(),
        lasted=lasted,
    )


# ------------------------------------------------------------ households (installers)

INSTALLER_ROLES = (Role.INSTALLER, Role.ADMIN)


async def _households_page(
    request: Request, rt: ServerRuntime, session: Session, code: EnrollmentCode | None = None
) -> Response:
    homes = [
        HouseholdView.model_validate(h)
        for h in await HouseholdStore(rt.store.engine).list_households()
    ]
    return render(
        request,
        "console/households.html",
        session,
        homes=homes,
        code=code,
        server_url=rt.settings.public_base_url,
    )


@router.get("/households")
async def households_page(
    request: Request, rt: Runtime, session: Session = require(*INSTALLER_ROLES)
) -> Response:
    """Households, their elders, hubs and last self-test; a code for each."""
    return await _households_page(request, rt, session)


@router.post("/households/{household_id}/enrollment-code")
async def new_enrollment_code(
    request: Request,
    rt: Runtime,
    household_id: str,
    session: Session = require(*INSTALLER_ROLES),
) -> Response:
    """A one-time enrollment code for a hub of this household, shown on this page only."""
    try:
        code, expires = await HouseholdStore(rt.store.engine).create_code(
            household_id,
            f"console:{session.account.username}",
            rt.clock.now_ms(),
            int(rt.settings.enroll_code_ttl_s * 1000),
        )
    except NotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None
    except Conflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    log.info(
        "console: enrollment code for household %s made by %s",
        household_id,
        session.account.username,
    )
    made = EnrollmentCode(code=code, household_id=household_id, expires_at_ms=expires)
    return await _households_page(request, rt, session, made)


@router.get("/kpi")
async def kpi_page(
    request: Request,
    rt: Runtime,
    days: int = 14,
    time_zone: str = "",
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """Answer times and the service circle per team and per day: the last `days` calendar
    days, today included, counted in `time_zone` (the centre's, `console_time_zone`, as
    `carehub report kpi`'s)."""
    time_zone = time_zone or rt.settings.console_time_zone
    if not 1 <= days <= 92:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "days must be between 1 and 92")
    if time_zone not in available_timezones():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown time zone {time_zone!r}")
    until = rt.clock.now_ms()
    since = days_start_ms(until, days, time_zone)
    rows = await read_alarm_times(rt.store.engine, since, until)
    scope = _team_scope(session)
    if scope is not None:
        rows = [r for r in rows if r.team_id == scope]
    report = kpi_report(rows, since, until, time_zone)
    labels = calendar_days(since, until, time_zone)
    by_day = {d.day: d.overall for d in report.days}

    def per_day(figure: str) -> list[float | None]:
        return [getattr(by_day[d], figure) if d in by_day else None for d in labels]

    t = translator(session.account.language)

    def axis(unit: str, top: str) -> str:
        return t("kpi.axis", unit=unit, max=top)

    def target(v: str) -> str:
        return t("kpi.target", v=v)

    accept_s, accept_share = ACCEPT_TARGETS[0]
    plots = {
        "accepted_60s": series_svg(
            labels,
            per_day("accepted_60s"),
            "%",
            100,
            axis,
            Target(accept_share * 100, label=target),
        ),
        "arrived_in_circle": series_svg(
            labels,
            per_day("arrived_in_circle"),
            "%",
            100,
            axis,
            Target(ARRIVAL_TARGET * 100, label=target),
        ),
        "accept_p50_s": series_svg(
            labels,
            per_day("accept_p50_s"),
            t("unit.s"),
            None,
            axis,
            Target(accept_s, higher_is_better=False, label=target),
        ),
    }
    return render(request, "console/kpi.html", session, report=report, plots=plots, days=days)
