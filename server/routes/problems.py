"""Error answers: every 4xx is a `Problem` (``{"detail": "…"}``) and is in the OpenAPI document.

A hub logs the ``detail`` of a refused request, so it says in one line what was wrong.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from carehub.api_contract import Problem

log = logging.getLogger(__name__)

_WHY = {
    400: "The body could not be read (not UTF-8 JSON).",
    401: "No token, or not a known one.",
    403: "The admin API is disabled (CAREHUB_ADMIN_TOKEN is not set).",
    404: "No such record among this caller's own.",
    409: "It contradicts what is stored; `detail` says what to do.",
    410: "It expired; ask for a new one.",
    413: "The body is too large.",
    422: "The request breaks the contract; `detail` says where. Retrying cannot help.",
    429: "Too many attempts: retry after the `Retry-After` header's seconds.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can answer with these error codes."""
    return {code: {"model": Problem, "description": _WHY[code]} for code in codes}


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "request"


def explain(errors: Any) -> str:
    """One line naming each bad field and why (never echoing the input)."""
    parts = [f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors]
    return "; ".join(parts)[:1000] or "invalid request"


async def validation_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = explain(exc.errors())
    log.info("%s %s refused: %s", request.method, request.url.path, detail)
    return JSONResponse(status_code=422, content={"detail": detail})


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def no_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not define (as bodies refuse unknown fields):
    a misspelt `limit` must not silently mean the default."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise HTTPException(422, f"unknown query parameter(s): {', '.join(unknown)[:200]}")
