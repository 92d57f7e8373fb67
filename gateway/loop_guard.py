"""Keeps each of the hub's long-running loops alive: no single failure silences the hub.

A loop that raises is logged with its name and the exception (a traceback only for the
first failure of a burst), counted in `carehub_hub_loop_restarts_total{loop=...}`, and
restarted after an exponential backoff; a loop that then runs `calm_s` without failing
starts a new burst (short delay, one traceback again). Each start, failure and the end are
told to a `LoopHealth` when one is given (the watchdog reads it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway import metrics
from gateway.loop_health import LoopHealth

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    initial_s: float = 0.5
    cap_s: float = 30.0
    calm_s: float = 60.0
    """A loop that ran this long before failing starts a new burst."""

    def delay(self, failures_in_burst: int) -> float:
        """Seconds before restart number `failures_in_burst` (1-based) of a burst."""
        return min(self.cap_s, self.initial_s * 2 ** min(failures_in_burst - 1, 30))


async def keep_running(
    name: str,
    loop: Callable[[], Awaitable[None]],
    policy: RestartPolicy = RestartPolicy(),
    health: LoopHealth | None = None,
) -> None:
    """Run `loop()` forever, restarting it after any exception (cancellation ends it)."""
    try:
        await _keep_running(name, loop, policy, health)
    finally:
        if health is not None:
            health.ended(name)


async def _keep_running(
    name: str, loop: Callable[[], Awaitable[None]], policy: RestartPolicy, health: LoopHealth | None
) -> None:
    failures = 0
    while True:
        started = time.monotonic()
        if health is not None:
            health.started(name)
        try:
            await loop()
            problem = "returned"  # loops are meant to run forever
            exc_info = False
        except Exception as e:
            problem = f"failed: {type(e).__name__}: {str(e)[:300]}"
            exc_info = True
        if health is not None:
            health.failed(name)
        if time.monotonic() - started >= policy.calm_s:
            failures = 0
        failures += 1
        delay = policy.delay(failures)
        metrics.LOOP_RESTARTS.labels(name).inc()
        if failures == 1:
            log.error(
                "hub loop %s %s; restarting in %.1f s", name, problem, delay, exc_info=exc_info
            )
        else:
            log.error(
                "hub loop %s %s again (%d in a row); restarting in %.1f s",
                name,
                problem,
                failures,
                delay,
            )
        await asyncio.sleep(delay)
