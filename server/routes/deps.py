"""Request dependencies: the store and the authenticated hub or admin.

Each is ``async def`` though none awaits anything but the store: FastAPI runs a plain
``def`` dependency in its thread pool, a thread hand-off on every request.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.auth import same_secret
from server.change_signal import HEALTH_KEY
from server.runtime import ServerRuntime
from server.store import HubIdentity

_bearer = HTTPBearer(auto_error=False)
log = logging.getLogger(__name__)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def runtime(request: Request) -> ServerRuntime:
    rt: ServerRuntime = request.app.state.runtime
    return rt


Runtime = Annotated[ServerRuntime, Depends(runtime)]


async def current_hub(rt: Runtime, creds: Credentials) -> HubIdentity:
    if creds is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "send Authorization: Bearer <hub token>")
    hub = await rt.store.hub_by_token(creds.credentials)
    if hub is None:
        # a revoked hub still calling goes on the health board; the answer is the same
        # for every wrong token, so a caller learns nothing from it
        refused = await rt.store.note_refused_token(creds.credentials, rt.clock.now_ms())
        if refused is not None:
            log.warning("hub %s calls with its revoked credential: on the health board", refused)
            await rt.changes.notify(HEALTH_KEY)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown hub token; re-enroll the hub")
    return hub


Hub = Annotated[HubIdentity, Depends(current_hub)]


async def require_admin(rt: Runtime, creds: Credentials) -> None:
    """Raise 403/401 unless the request carries the configured admin token."""
    expected = rt.settings.admin_token
    if expected is None or not expected.get_secret_value():
        raise HTTPException(status.HTTP_403_FORBIDDEN, "set CAREHUB_ADMIN_TOKEN to use this API")
    if creds is None or not same_secret(creds.credentials, expected.get_secret_value()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "admin token required")


Admin = Depends(require_admin)
