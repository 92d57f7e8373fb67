"""The family doctor's review pages (docs/health-review.md, "The review page"): a team's
elders with their trend flags, a doctor's "reviewed" with a note, and the printable
follow-up record per elder. A doctor sees their own team only; dispatchers and admins any
team (read only); installers nothing. Each elder whose flags a page shows is written to the
audit log, like a view of the medical notes."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi import Path as FastApiPath
from fastapi.responses import RedirectResponse

from carehub.api_contract import ID_PATTERN
from server.console.accounts import MEDICAL_ROLES, Role, Session
from server.console.health_review import MAX_NOTE, ElderReview, HealthReviews
from server.console.i18n import translator
from server.console.web import PREFIX, console_store, render, require
from server.health_flags import UNITS, FlagKind
from server.routes.deps import Runtime
from server.runtime import ServerRuntime

log = logging.getLogger(__name__)
router = APIRouter(prefix=PREFIX, tags=["console"], include_in_schema=False)

AUDIT_REVIEW = "health_review"
"""The audit log's action for a view of an elder's trend flags and figures."""
AUDIT_RECORD = "health_record"
"""…and for a view of the elder's follow-up record (printed or saved as PDF)."""
REVIEWERS = (Role.DOCTOR,)
"""Who may mark a flag reviewed: the family doctors (others see the page read only)."""
ElderId = Annotated[str, FastApiPath(pattern=ID_PATTERN)]


def _reviews(rt: ServerRuntime, session: Session | None = None) -> HealthReviews:
    words = None
    if session is not None:
        t = translator(session.account.language)
        words = {u: t(f"tunit.{u}") for u in UNITS}  # the plots' axis in the reader's words
    return HealthReviews(rt.store.engine, rt.settings.review_thresholds, words)


def _today(rt: ServerRuntime) -> dt.date:
    zone = ZoneInfo(rt.settings.console_time_zone)
    return dt.datetime.fromtimestamp(rt.clock.now_ms() / 1000, zone).date()


async def _team_of(
    rt: ServerRuntime, session: Session, team: str
) -> tuple[str, list[tuple[str, str]]]:
    """The team the page is about, and the teams this account may pick from: a doctor
    their own (another team is answered as one that does not exist), the others any."""
    known = await _reviews(rt).teams()
    if session.account.role is Role.DOCTOR:
        own = session.account.team_id
        if team and team != own:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such team")
        return own or "\0none", []
    if team:
        if not any(team == t for t, _ in known):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such team")
        return team, known
    if not known:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no team on file")
    return known[0][0], known


async def _audit_shown(rt: ServerRuntime, session: Session, shown: list[ElderReview]) -> None:
    store, now = console_store(rt), rt.clock.now_ms()
    for elder in shown:
        await store.audit(session.account, AUDIT_REVIEW, elder.id, None, now)


@router.get("/review")
async def review_page(
    request: Request,
    rt: Runtime,
    team: Annotated[str, Query(max_length=64, pattern=f"^$|{ID_PATTERN}")] = "",
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """A team's elders, open flags first, each flag with its figures and plot."""
    team_id, choices = await _team_of(rt, session, team)
    known = choices or await _reviews(rt).teams()
    found = await _reviews(rt, session).team(team_id, _today(rt))
    await _audit_shown(rt, session, [e for e in found if e.flags])
    return render(
        request,
        "console/review.html",
        session,
        team_id=team_id,
        team_name=dict(known).get(team_id, team_id),
        teams=choices,
        elders=found,
        can_review=session.account.role in REVIEWERS,
        thresholds=rt.settings.review_thresholds,
    )


async def _visible(rt: ServerRuntime, session: Session, elder_id: str) -> ElderReview:
    """The elder's review, if this account may see it (as `routes._visible_elder`)."""
    from server.console.routes import _team_scope  # the team scope, in one place

    found = await _reviews(rt, session).elder(elder_id, _today(rt))
    scope = _team_scope(session)
    if found is None or (scope is not None and found.team_id != scope):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such elder")
    return found


@router.get("/review/elders/{elder_id}")
async def follow_up_record(
    request: Request,
    rt: Runtime,
    elder_id: ElderId,
    session: Session = require(*MEDICAL_ROLES),
) -> Response:
    """The elder's follow-up record (随访): flags, figures, plots and every review, laid
    out for the browser's print (or save as PDF) into the team's paper file."""
    elder = await _visible(rt, session, elder_id)
    await console_store(rt).audit(session.account, AUDIT_RECORD, elder.id, None, rt.clock.now_ms())
    return render(
        request,
        "console/review_record.html",
        session,
        elder=elder,
        history=await _reviews(rt).history(elder.id),
        printed_at_ms=rt.clock.now_ms(),
        thresholds=rt.settings.review_thresholds,
    )


@router.post("/review/elders/{elder_id}/flags/{kind}")
async def mark_reviewed(
    request: Request,
    rt: Runtime,
    elder_id: ElderId,
    kind: FlagKind,
    session: Session = require(*REVIEWERS),
) -> Response:
    """Record the doctor's review of a flag the elder's summaries raise now (recomputed
    here: the figures stored are the server's, never the form's)."""
    elder = await _visible(rt, session, elder_id)
    note = str((await request.form()).get("note", "")).strip()
    if len(note) > MAX_NOTE:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"the note is longer than {MAX_NOTE} characters"
        )
    flag = next((f.flag for f in elder.flags if f.flag.kind is kind), None)
    if flag is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "this flag is no longer raised: reload the page"
        )
    await _reviews(rt).record(elder.id, flag, session.account, note, rt.clock.now_ms())
    log.info(
        "console: flag %s of %s reviewed by %s", kind.value, elder.id, session.account.username
    )
    return RedirectResponse(
        f"{PREFIX}/review?team={elder.team_id}#elder-{elder.id}", status.HTTP_303_SEE_OTHER
    )
