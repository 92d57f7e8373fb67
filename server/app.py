"""The FastAPI application: wiring of store, dispatcher and routes, and their lifetimes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator

import prometheus_client
from fastapi import Depends, FastAPI, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from carehub import __version__
from carehub.api_contract import HEALTH_PATH, CallEndReason
from carehub.clock import Clock, SystemClock
from carehub.settings import ServerSettings
from server.admission import Admission, AdmissionLimits
from server.alarms_first import AlarmsFirst, watch_loop_lag
from server.change_signal import HEALTH_KEY, ChangeSignal, PostgresRelay, asyncpg_dsn
from server.console import calls as console_calls
from server.console import review_routes as console_review
from server.console import routes as console
from server.db import checkpoint_forever, make_engine, migrate
from server.dispatch.escalator import Escalator
from server.dispatch.store import DispatchStore
from server.fault_writer import FaultWriter
from server.heartbeats import HeartbeatWriter
from server.notifier import ConsoleNotifier, Notifier, TwilioNotifier
from server.routes import (
    admin_api,
    enroll_api,
    household_api,
    hub_api,
    responder,
    twilio_hooks,
    voice_api,
)
from server.routes.deps import Admin
from server.routes.problems import no_unknown_query, problems, validation_problem
from server.routes.twilio_hooks import STATUS_PATH
from server.routes.voice_api import call_changed
from server.runtime import ServerRuntime
from server.store import ServerStore
from server.summary_store import SummaryStore, prune_forever
from server.voice_calls import CallStore

log = logging.getLogger(__name__)
OPENAPI_PATH = "/openapi.json"
METRICS_PATH = "/metrics"


def make_notifier(settings: ServerSettings) -> TwilioNotifier | ConsoleNotifier:
    if settings.notifier == "twilio":
        return TwilioNotifier(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            settings.twilio_from,
            settings.twilio_api_base,
            status_callback=settings.public_base_url.rstrip("/") + STATUS_PATH,
        )
    return ConsoleNotifier()


async def _watch_hubs(rt: ServerRuntime, admission: Admission) -> None:
    """Mark hubs whose heartbeats stopped as offline: a hub fault for the dispatcher. Not
    while heartbeats were being refused (overload): those hubs were told to come back later."""
    while True:
        await asyncio.sleep(min(10.0, rt.settings.hub_offline_after_s / 3))
        if admission.refused_within(rt.settings.hub_offline_after_s):
            continue
        try:
            for hub_id in await rt.store.mark_stale_hubs_offline(
                rt.clock.now_ms(), int(rt.settings.hub_offline_after_s * 1000)
            ):
                log.warning(
                    "hub %s offline: no heartbeat for %.0f s",
                    hub_id,
                    rt.settings.hub_offline_after_s,
                )
                await rt.changes.notify(HEALTH_KEY)
                if await CallStore(rt.store.engine).end_hub_calls(
                    hub_id, CallEndReason.NETWORK_LOST, rt.clock.now_ms()
                ):  # no console rings or talks on to a hub that went away
                    await call_changed(rt, hub_id)
            for hub_id in await rt.store.clear_quiet_refused(rt.clock.now_ms()):
                log.info("hub %s no longer calls with its revoked credential", hub_id)
                await rt.changes.notify(HEALTH_KEY)
        except Exception:
            log.exception("hub watch failed")


def freeze_long_lived() -> None:
    """Keep what lives as long as the process (modules, engine, the care map just built)
    out of the garbage collector's full passes, which scanned ~190 000 such objects and
    stalled the event loop 100-130 ms each (`docs/benchmarks.md`). Collected first, so no
    garbage is frozen with them; called when the directory is (re)built, i.e. rarely."""
    gc.collect()
    gc.freeze()


def link_secret(settings: ServerSettings) -> bytes:
    """The key accept links are derived from: from ``CAREHUB_SECRET_KEY``, so every server
    process (and a restarted one) makes and accepts the same links."""
    if settings.secret_key is None:
        log.warning(
            "CAREHUB_SECRET_KEY is not set: accept links made by this process stop working "
            "when it restarts, and other server processes refuse them"
        )
        return secrets.token_bytes(32)
    return hashlib.sha256(
        b"carehub-links\0" + settings.secret_key.get_secret_value().encode()
    ).digest()


def admission_limits(settings: ServerSettings) -> AdmissionLimits:
    return AdmissionLimits(
        enabled=settings.alarms_first,
        max_maintenance_in_flight=settings.maintenance_max_in_flight,
        loop_lag_s=settings.overload_loop_lag_ms / 1000,
        hold_s=settings.overload_hold_s,
        retry_after_s=settings.maintenance_retry_after_s,
    )


def create_app(
    settings: ServerSettings, notifier: Notifier | None = None, clock: Clock | None = None
) -> FastAPI:
    admission = Admission(admission_limits(settings), clock or SystemClock())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url,
            settings.sqlite_synchronous,
            settings.pg_pool_size,
            settings.pg_max_overflow,
        )
        await migrate(engine)
        clk = clock or SystemClock()
        store = ServerStore(
            engine,
            merge_repeats=settings.merge_repeats,
            hub_auth_ttl_s=settings.hub_auth_ttl_s,
            clock=clk,
        )
        changes = ChangeSignal()
        relay = (
            PostgresRelay(asyncpg_dsn(settings.database_url), changes)
            if engine.dialect.name == "postgresql"
            else None
        )
        if relay is not None:  # other server processes' changes wake our long-polls
            await relay.start()
        dispatch = DispatchStore(
            store,
            link_secret(settings),
            send_lease_ms=int(settings.sms_lease_s * 1000),
            reply_code_hold_ms=int(settings.reply_code_hold_h * 3_600_000),
        )
        sender, own_notifier = notifier, None  # closed here only if made here
        if sender is None:
            sender = own_notifier = make_notifier(settings)
        escalator = Escalator(
            dispatch,
            sender,
            clk,
            changes,
            settings.public_base_url,
            max_per_number=settings.sms_max_per_number,
            on_care_map=freeze_long_lived,
        )
        heartbeats = HeartbeatWriter(store, changes)
        rt = ServerRuntime(
            settings, store, dispatch, escalator, changes, clk, heartbeats, FaultWriter(store)
        )
        app.state.runtime = rt
        tasks = [
            asyncio.create_task(escalator.run()),
            asyncio.create_task(heartbeats.run()),
            asyncio.create_task(_watch_hubs(rt, admission)),
            asyncio.create_task(watch_loop_lag(admission)),
            asyncio.create_task(checkpoint_forever(engine)),
            asyncio.create_task(
                prune_forever(
                    SummaryStore(store),
                    clk,
                    settings.summary_keep_days,
                    settings.console_time_zone,
                )
            ),
        ]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await escalator.close()  # the SMS being sent are recorded, not sent twice
            if own_notifier is not None:  # its connections to the provider, after the sends
                await own_notifier.aclose()
            with contextlib.suppress(Exception):
                await heartbeats.flush()  # the last beats noted, before the engine goes
            if relay is not None:
                await relay.stop()
            await engine.dispose()

    app = FastAPI(
        title="CareHub server",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(no_unknown_query)],
        responses=problems(422),  # any route: an unknown query parameter
        openapi_url=None,  # served below, to admins only
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_middleware(twilio_hooks.StatusCallbacks)  # the delivery callbacks' short way
    app.add_middleware(AlarmsFirst, admission=admission)  # before any routing or SQL
    app.state.admission = admission
    app.include_router(hub_api.router)
    app.include_router(voice_api.router)
    app.include_router(console_calls.router)
    app.include_router(enroll_api.router)
    app.include_router(admin_api.router)
    app.include_router(household_api.router)
    app.include_router(responder.router)
    app.include_router(twilio_hooks.router)
    app.include_router(console.router)
    app.include_router(console_review.router)
    app.mount(console.STATIC_PATH, console.static, name="console-static")

    @app.get(OPENAPI_PATH, include_in_schema=False, dependencies=[Admin])
    async def openapi() -> JSONResponse:
        """The OpenAPI document, for the admin token only (it maps every route)."""
        return JSONResponse(app.openapi())

    @app.get(METRICS_PATH, include_in_schema=False, dependencies=[Admin])
    async def metrics() -> Response:
        """Prometheus metrics; scrape with ``authorization: {credentials: <admin token>}``."""
        return Response(
            prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
        )

    @app.get(HEALTH_PATH, tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
