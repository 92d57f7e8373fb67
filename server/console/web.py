"""What every console page shares: the signed-in session, `require` (roles and CSRF in one
dependency), the cookies, and `render` (a template with the account's language)."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from server.catalogue import LANGUAGES, install, translator
from server.console.accounts import Role, Session
from server.console.checklists import words
from server.console.console_store import ConsoleStore
from server.routes.deps import Runtime
from server.runtime import ServerRuntime

PREFIX = "/console"
SESSION_COOKIE = "carehub_session"
LOGIN_CSRF_COOKIE = "carehub_login_csrf"
CSRF_FIELD = "csrf_token"

templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
install(templates.env)
templates.env.globals["check_words"] = words  # a checklist item's words (`checklists.words`)


def console_store(rt: ServerRuntime) -> ConsoleStore:
    return ConsoleStore(rt.store.engine)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def current_session(request: Request, rt: ServerRuntime) -> Session | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    return await console_store(rt).session(session_id, rt.clock.now_ms())


FRAGMENT = "text/html-fragment"
"""The Accept of a live page's script (`live.js`) asking for the live part alone."""


def wants_fragment(request: Request) -> bool:
    """The page's script asks for its live part: one route serves the page and the part."""
    return request.headers.get("accept", "").startswith(FRAGMENT)


def _wants_page(request: Request) -> bool:
    """A browser navigating (sent to the sign-in page), not a script (which gets 401: a
    fragment request is a script's, lest the sign-in page be pasted into the live part)."""
    accept = request.headers.get("accept", "")
    return request.method == "GET" and "text/html" in accept and not wants_fragment(request)


MAX_TOKEN_CHARS = 128
"""Longer than any token we make (`secrets.token_urlsafe(32)`: 43 characters)."""


def tokens_match(given: object, expected: str | None) -> bool:
    """A form's token equals the one we gave out: both present, non-empty, free of NUL,
    of a token's length, compared in constant time. (A missing expected token is never
    replaced by a stand-in a form could also send.)"""
    return (
        isinstance(given, str)
        and isinstance(expected, str)
        and all(0 < len(t) <= MAX_TOKEN_CHARS and "\0" not in t for t in (given, expected))
        and hmac.compare_digest(given.encode(), expected.encode())
    )


async def _csrf_checked(request: Request, expected: str | None) -> None:
    form = await request.form()
    if not tokens_match(form.get(CSRF_FIELD), expected):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale: reload the page"
        )


def from_another_site(
    origin: str | None, fetch_site: str | None, host: str | None, public_base_url: str
) -> bool:
    """Whether a browser says this request comes from a page of another origin: its
    ``Sec-Fetch-Site`` is neither ``same-origin`` nor ``none`` (typed or bookmarked), or its
    ``Origin`` is ``null`` or names another host than the one asked (``Host``) or than the
    server's public address (behind a proxy that rewrites ``Host``). A client that sends
    neither header (a script, an old browser) is not judged here: the CSRF token still is."""
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return True
    if origin is None:
        return False
    own = {(host or "").lower(), urlsplit(public_base_url).netloc.lower()}
    return urlsplit(origin).netloc.lower() not in own - {""}


def require(*roles: Role) -> Any:
    """The dependency of every console route: a live session (else the login page for a
    browser, 401 for a script), one of `roles` (any when none is given; else 403), and on
    every POST the session's CSRF token in the form (else 403)."""

    async def signed_in(request: Request, rt: Runtime) -> Session:
        session = await current_session(request, rt)
        if session is None:
            if _wants_page(request):
                raise HTTPException(
                    status.HTTP_303_SEE_OTHER, "sign in", headers={"Location": f"{PREFIX}/login"}
                )
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in at /console/login")
        if roles and session.account.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this page is for {', '.join(r.value for r in roles)}; "
                f"you are signed in as {session.account.role.value}",
            )
        if request.method == "POST":
            await _csrf_checked(request, session.csrf_token)
        request.state.console_session = session
        return session

    return Depends(signed_in)


async def check_login_csrf(request: Request, rt: Runtime) -> None:
    """The login form has no session yet: its token is a cookie, set by a GET of the form,
    that the form must echo; and a browser's post from another site is refused outright
    (login CSRF: signing a dispatcher in as someone else)."""
    headers = request.headers
    if from_another_site(
        headers.get("origin"),
        headers.get("sec-fetch-site"),
        headers.get("host"),
        rt.settings.public_base_url,
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "a sign-in posted from another site is refused: open the sign-in page itself",
        )
    await _csrf_checked(request, request.cookies.get(LOGIN_CSRF_COOKIE))


def set_cookie(
    response: Response, rt: ServerRuntime, name: str, value: str, max_age_s: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=not rt.settings.console_insecure_cookies,
    )


def render(
    request: Request,
    template: str,
    session: Session | None,
    language: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A page (or fragment) in the account's language, with the session's CSRF token for
    its forms (``{{ csrf_field() }}``)."""
    lang = language or (session.account.language if session else "zh")
    time_zone = request.app.state.runtime.settings.console_time_zone
    token = session.csrf_token if session else context.pop("login_csrf", "")

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)

    return templates.TemplateResponse(
        request,
        template,
        {
            **translator(lang, time_zone).jinja(),
            "languages": LANGUAGES,
            "account": session.account if session else None,
            "csrf_field": csrf_field,
            "prefix": PREFIX,
            "Role": Role,
            "time_zone": time_zone,
            **context,
        },
        status_code=status_code,
    )
