"""The shell of `server.admission`: an ASGI middleware that asks it about every request,
and a task that measures how late the event loop runs.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs a task and a
stream per request): a refusal is answered from the request line alone, before routing,
the hub's token lookup or any SQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from server.admission import Admission, Lane, lane_of

log = logging.getLogger(__name__)

REFUSED = Counter(
    "carehub_server_maintenance_refused_total",
    "Maintenance requests (heartbeats, fault reports, config, console reads) answered 503 "
    "with Retry-After because the server was overloaded, by reason",
    ["reason"],
)
LOOP_LAG = Gauge("carehub_server_loop_lag_seconds", "How late the event loop ran, last tick")
LAG_TICK_S = 0.1
"""The lag monitor's period: a sleep this long that wakes late by the loop's lag."""
LOG_EVERY_S = 10.0


class AlarmsFirst:
    """Maintenance requests get ``503`` + ``Retry-After`` while `admission` says overloaded;
    alarms always pass."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission
        self._logged_at = -LOG_EVERY_S
        self._refused_since_log = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lane = lane_of(scope["method"], scope["path"])
        verdict = self.admission.admit(lane)
        if not verdict.admitted:
            assert verdict.reason is not None
            REFUSED.labels(verdict.reason.value).inc()
            self._log_refusal(verdict.reason.value)
            await _busy(send, verdict.retry_after_s)
            return
        if lane is not Lane.MAINTENANCE:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.done()

    def _log_refusal(self, reason: str) -> None:
        """One line per `LOG_EVERY_S` at most, with how many were refused since the last."""
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            log.warning(
                "overloaded (%s): %d maintenance requests answered 503 since the last note; "
                "alarms are admitted",
                reason,
                self._refused_since_log,
            )
            self._logged_at, self._refused_since_log = now, 0


async def _busy(send: Send, retry_after_s: int) -> None:
    body = json.dumps(
        {"detail": f"server busy with alarms: retry after {retry_after_s} s"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def watch_loop_lag(admission: Admission, tick_s: float = LAG_TICK_S) -> None:
    """Forever: sleep `tick_s` and tell `admission` how much later than that we woke."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(tick_s)
        lag = max(0.0, loop.time() - start - tick_s)
        LOOP_LAG.set(lag)
        admission.note_lag(lag)
