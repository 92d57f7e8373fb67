"""Error answers: every 4xx is a `Problem` (``{"detail": "…"}``) and is in the OpenAPI document.

A hub logs the ``detail`` of a refused request, so it says in one line what was wrong.
"""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Sequence
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
    503: "Overloaded: maintenance traffic waits the `Retry-After` header's seconds (alarms are "
    "never refused).",
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


def _query_fields(dependant: Any) -> dict[str, Any]:
    fields = {p.alias: p for p in dependant.query_params}
    for sub in dependant.dependencies:
        fields |= _query_fields(sub)
    return fields


def _takes_many(field: Any) -> bool:
    """Whether a query parameter is declared as a list (so it may be repeated)."""
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    kinds = typing.get_args(annotation) if typing.get_origin(annotation) in _UNIONS else ()
    for kind in kinds or (annotation,):
        if typing.get_origin(kind) in (list, tuple, set, frozenset, Sequence):
            return True
    return False


_UNIONS = (typing.Union, types.UnionType)


async def no_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not define (as bodies refuse unknown fields):
    a misspelt `limit` must not silently mean the default. Refuse a single-valued one given
    twice too: `limit=5&limit=2` would silently mean the last."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    fields = _query_fields(route.dependant)
    unknown = sorted(set(request.query_params) - set(fields))
    if unknown:
        raise HTTPException(422, f"unknown query parameter(s): {', '.join(unknown)[:200]}")
    repeated = sorted(
        name
        for name in set(request.query_params)
        if len(request.query_params.getlist(name)) > 1 and not _takes_many(fields[name])
    )
    if repeated:
        raise HTTPException(422, f"query parameter(s) given more than once: {', '.join(repeated)}")
