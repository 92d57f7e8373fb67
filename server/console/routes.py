"""The console's pages, its live feed and its assets (all under ``/console``)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from server.console.accounts import (
    DUMMY_HASH,
    MEDICAL_ROLES,
    Role,
    Session,
    login_allowed,
    new_csrf_token,
    new_session_id,
    password_matches,
)
from server.console.elder_card import ElderCard, elder_card, sealed_key_safe
from server.console.i18n import LANGUAGES, pick_language
from server.console.live_queue import open_alarms
from server.console.sound import alert_wav
from server.console.web import (
    LOGIN_CSRF_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    check_login_csrf,
    client_address,
    console_store,
    render,
    require,
    set_cookie,
)
from server.routes.deps import Runtime
from server.runtime import ServerRuntime
from server.sealed import Sealer, SealError

log = logging.getLogger(__name__)
router = APIRouter(prefix=PREFIX, tags=["console"], include_in_schema=False)
static = StaticFiles(directory=Path(__file__).resolve().parents[1] / "static" / "console")
STATIC_PATH = f"{PREFIX}/static"

ALARMS_KEY = "alarms"
"""The change-signal key every alarm change is notified on (relayed between processes)."""
KEEPALIVE_S = 5.0
AUDIT_NOTES = "medical_notes"
AUDIT_KEY_SAFE = "key_safe"


# ------------------------------------------------------------ signing in and out


@router.get("/login")
async def login_page(request: Request, rt: Runtime) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_csrf_token()
    response = render(
        request,
        "console/login.html",
        None,
        pick_language(request.headers.get("accept-language")),
        login_csrf=token,
    )
    set_cookie(response, rt, LOGIN_CSRF_COOKIE, token, 3600)
    return response


@router.post("/login", dependencies=[Depends(check_login_csrf)])
async def login(request: Request, rt: Runtime) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    client = client_address(request)
    store = console_store(rt)
    now_ms = rt.clock.now_ms()
    window_ms = int(rt.settings.console_login_window_s * 1000)
    language = pick_language(request.headers.get("accept-language"))
    by_user, by_client = await store.recent_failures(username, client, now_ms - window_ms)
    if not login_allowed(by_user, by_client, rt.settings.console_login_max_failures):
        log.warning("console: sign-in refused, too many failures (client %s)", client)
        return render(
            request,
            "console/login.html",
            None,
            language,
            status.HTTP_429_TOO_MANY_REQUESTS,
            login_csrf=request.cookies.get(LOGIN_CSRF_COOKIE, ""),
            error="login.limited",
        )
    found = await store.credentials(username)
    ok = password_matches(found[1] if found else DUMMY_HASH, password) and found is not None
    if not ok or found is None:
        await store.record_failure(username, client, now_ms, window_ms)
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
    session_id = new_session_id()
    max_age_s = int(rt.settings.console_session_hours * 3600)
    await store.start_session(
        account.id, session_id, new_csrf_token(), now_ms, now_ms + max_age_s * 1000
    )
    log.info("console: %s signed in", account.username)
    response = RedirectResponse(f"{PREFIX}/", status.HTTP_303_SEE_OTHER)
    set_cookie(response, rt, SESSION_COOKIE, session_id, max_age_s)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, rt: Runtime, session: Session = require()) -> Response:
    await console_store(rt).end_session(request.cookies[SESSION_COOKIE])
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


@router.get("/")
async def queue_page(
    request: Request, rt: Runtime, session: Session = require(*MEDICAL_ROLES)
) -> Response:
    rows = await open_alarms(rt.store.engine, _team_scope(session))
    return render(request, "console/queue.html", session, rows=rows, now_ms=rt.clock.now_ms())


@router.get("/queue")
async def queue_rows(
    request: Request, rt: Runtime, session: Session = require(*MEDICAL_ROLES)
) -> Response:
    """The queue's rows alone: what the page fetches when the live feed says it changed."""
    rows = await open_alarms(rt.store.engine, _team_scope(session))
    return render(request, "console/_queue_rows.html", session, rows=rows, now_ms=rt.clock.now_ms())


@router.get("/events")
async def events(
    request: Request, rt: Runtime, session: Session = require(*MEDICAL_ROLES)
) -> StreamingResponse:
    """Server-Sent Events: ``hello`` on (re)connecting, ``queue`` whenever an alarm changed
    in any server process (the page then fetches `/console/queue`), comments to keep the
    connection alive. ``retry`` makes the browser reconnect within a second."""

    async def stream() -> AsyncIterator[str]:
        version = rt.changes.version(ALARMS_KEY)
        yield "retry: 1000\nevent: hello\ndata: connected\n\n"
        while not await request.is_disconnected():
            seen = await rt.changes.wait(ALARMS_KEY, version, KEEPALIVE_S)
            if seen != version:
                version = seen
                yield "event: queue\ndata: changed\n\n"
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


@router.get("/elders/{elder_id}")
async def elder_page(
    request: Request,
    rt: Runtime,
    elder_id: str,
    alarm: str | None = None,
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """The elder's card; showing their medical notes is recorded in the audit log."""
    card = await _visible_elder(rt, session, elder_id)
    if card.medical_notes:
        await console_store(rt).audit(
            session.account, AUDIT_NOTES, card.id, alarm, rt.clock.now_ms()
        )
    return render(request, "console/elder.html", session, elder=card, alarm=alarm)


@router.post("/elders/{elder_id}/key-safe")
async def reveal_key_safe(
    request: Request,
    rt: Runtime,
    elder_id: str,
    alarm: str | None = None,
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """Unseal the key-safe code for this one page view; each reveal is recorded."""
    card = await _visible_elder(rt, session, elder_id)
    sealed = await sealed_key_safe(rt.store.engine, elder_id)
    if sealed is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this elder has no key-safe code on file")
    if rt.settings.secret_key is None:
        log.error("console: key-safe code of %s cannot be opened: no CAREHUB_SECRET_KEY", elder_id)
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the server has no CAREHUB_SECRET_KEY to open the code"
        )
    try:
        code = Sealer(rt.settings.secret_key.get_secret_value()).unseal(sealed)
    except SealError:
        log.error("console: key-safe code of %s does not open with this key", elder_id)
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the code was sealed with another CAREHUB_SECRET_KEY"
        ) from None
    await console_store(rt).audit(
        session.account, AUDIT_KEY_SAFE, card.id, alarm, rt.clock.now_ms()
    )
    return render(
        request, "console/elder.html", session, elder=card, alarm=alarm, key_safe_code=code
    )


# ------------------------------------------------------------ admin pages


@router.get("/audit")
async def audit_page(
    request: Request, rt: Runtime, session: Session = require(Role.ADMIN)
) -> Response:
    entries = await console_store(rt).audit_log()
    return render(request, "console/audit.html", session, entries=entries)


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
