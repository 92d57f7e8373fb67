"""Request dependencies: the store and the authenticated hub or admin.

Each is ``async def`` though none awaits anything but the store: FastAPI runs a plain
``def`` dependency in its thread pool, a thread hand-off on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.auth import same_secret
from server.runtime import ServerRuntime
from server.store import HubIdentity

_bearer = HTTPBearer(auto_error=False)
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
