"""The hub-facing API (`carehub.api_contract`): alarms in, state updates out, config, health."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from carehub import api_contract as api
from server.change_signal import HEALTH_KEY
from server.fault_reports import Incoming, Outcome
from server.routes.deps import Hub, Runtime
from server.routes.problems import problems
from server.store import UnknownAlarm, UnknownDevice
from server.summary_store import Recorded, SummaryStore, day_problem, oldest_kept_day

log = logging.getLogger(__name__)
router = APIRouter(tags=["hub"], responses=problems(401))


def _unpaired(hub_id: str, e: UnknownDevice) -> HTTPException:
    log.warning("hub %s: refused: %s", hub_id, e)
    return HTTPException(422, f"{e}: pair it in the care directory first")


@router.post(
    api.ALARMS_PATH,
    response_model=api.AlarmAccepted,
    responses={
        200: {"description": "already stored (retry)", "model": api.AlarmAccepted},
        201: {"description": "stored"},
        **problems(400, 413, 422),
    },
    status_code=status.HTTP_201_CREATED,
)
async def upload_alarm(
    body: api.AlarmUpload, hub: Hub, rt: Runtime, response: Response
) -> api.AlarmAccepted:
    """Store an alarm (committed before answering) and wake the dispatcher. Idempotent.
    An alarm is never refused for its device: one the hub's household does not own is
    stored for that household with a `device_flag`, and dispatched as usual."""
    if len(body.model_dump_json()) > api.MAX_DETAILS_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "alarm details too large")
    stored = await rt.store.store_alarm(hub, body, rt.clock.now_ms())
    state, created = stored.state, stored.created
    if stored.flag is not None:  # stored and dispatched all the same: a person checks it
        log.warning(
            "hub %s: alarm %s from device %s stored flagged %s",
            hub.hub_id,
            body.alarm_id,
            body.device_id,
            stored.flag.value,
        )
    if stored.joined is not None:
        log.info(
            "hub %s: alarm %s (%s) is a repeat of open alarm %s",
            hub.hub_id,
            body.alarm_id,
            body.kind,
            stored.joined.alarm_id,
        )
        if stored.joined.raised:
            rt.escalator.kick()  # the ladder, due now, moves to the urgent policy
        await rt.changes.notify("alarms")
    elif created:
        log.info("hub %s: alarm %s (%s) stored", hub.hub_id, body.alarm_id, body.kind)
        rt.escalator.kick()
        await rt.changes.notify(f"hub:{hub.hub_id}")
        await rt.changes.notify("alarms")
    else:
        response.status_code = status.HTTP_200_OK
    return api.AlarmAccepted(alarm_id=body.alarm_id, state=state, created=created)


@router.post(
    api.ALARM_REPORTS_PATH,
    response_model=api.AlarmStateAccepted,
    responses=problems(400, 404, 422),
)
async def report_state(body: api.AlarmStateReport, hub: Hub, rt: Runtime) -> api.AlarmStateAccepted:
    """A state change decided on the hub (the elder cancelled). Idempotent by report_id.
    Another hub's alarm is answered exactly like one that does not exist (404)."""
    try:
        state = await rt.store.report_state(
            hub, body.alarm_id, body.state, body.at_ms, body.report_id, "hub", body.reason
        )
    except UnknownAlarm:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "unknown alarm: upload the alarm before its state reports"
        ) from None
    await rt.dispatch.alarm_changed(hub.hub_id, body.alarm_id, rt.clock.now_ms())
    rt.escalator.kick()
    await rt.changes.notify(f"hub:{hub.hub_id}")
    await rt.changes.notify("alarms")
    return api.AlarmStateAccepted(alarm_id=body.alarm_id, state=state)


@router.get(api.ALARM_UPDATES_PATH, response_model=api.AlarmUpdates, responses=problems(422))
async def alarm_updates(
    request: Request,
    hub: Hub,
    rt: Runtime,
    after: int = Query(
        -1, ge=-1, lt=api.INT64_END, description="Largest cursor seen; -1 = start from now."
    ),
    wait_s: float = Query(0.0, ge=0, le=60, description="Long-poll: wait this long for news."),
) -> api.AlarmUpdates:
    """State changes of this hub's alarms after `after`, waiting up to `wait_s` for one."""
    if after < 0:
        return api.AlarmUpdates(updates=[], cursor=await rt.store.latest_cursor(hub.hub_id))
    deadline = rt.clock.monotonic() + min(wait_s, rt.settings.long_poll_max_s)
    key = f"hub:{hub.hub_id}"
    version = rt.changes.version(key)
    updates = await rt.store.updates_for_hub(hub.hub_id, after)
    while not updates:
        remaining = deadline - rt.clock.monotonic()
        if remaining <= 0 or await request.is_disconnected():
            break
        # wakes at least every second to notice a hub that went away, but reads the
        # database only when this hub's alarms changed: 100 idle hubs re-reading every
        # second took most of the event loop's busy time (docs/benchmarks.md)
        seen, version = version, await rt.changes.wait(key, version, min(remaining, 1.0))
        if version != seen:
            updates = await rt.store.updates_for_hub(hub.hub_id, after)
    cursor = updates[-1].cursor if updates else after
    return api.AlarmUpdates(updates=updates, cursor=cursor)


@router.get(api.HUB_CONFIG_PATH, response_model=api.HubConfig, responses=problems(503))
async def hub_config(hub: Hub, rt: Runtime) -> api.HubConfig:
    """Which devices this hub serves and the elder's care plan (no personal data)."""
    return api.HubConfig.model_validate(await rt.store.hub_config(hub))


@router.post(
    api.HUB_HEARTBEAT_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(400, 422, 503),
)
async def heartbeat(body: api.HubHeartbeat, hub: Hub, rt: Runtime) -> None:
    """Noted at once and stored with other hubs' beats within a second
    (`server.heartbeats`): a heartbeat is not an alarm."""
    rt.heartbeats.note(hub.hub_id, rt.clock.now_ms(), body.model_dump())


@router.post(
    api.FAULTS_PATH, status_code=status.HTTP_204_NO_CONTENT, responses=problems(400, 422, 503)
)
async def report_fault(body: api.FaultReport | api.HubFaultReport, hub: Hub, rt: Runtime) -> None:
    """A device fault raised or cleared on the hub, or a fault of the hub itself (not an
    emergency). Idempotent. Stored with the other hubs' reports of the moment, in one
    transaction (`server.fault_writer`)."""
    incoming = Incoming(hub.hub_id, body, rt.clock.now_ms())
    outcome = await rt.faults.record(incoming)
    if outcome is Outcome.UNKNOWN_DEVICE:
        raise _unpaired(hub.hub_id, UnknownDevice(incoming.subject))
    if outcome is Outcome.NEW:
        await rt.changes.notify(HEALTH_KEY)
        log.info(
            "hub %s: %s %s on %s",
            hub.hub_id,
            body.fault,
            "raised" if body.active else "cleared",
            incoming.subject,
        )


@router.post(
    api.SUMMARIES_PATH,
    response_model=api.SummaryAccepted,
    responses={
        200: {
            "description": "already stored, or older than the server keeps",
            "model": api.SummaryAccepted,
        },
        201: {"description": "stored"},
        **problems(400, 422, 503),
    },
    status_code=status.HTTP_201_CREATED,
)
async def upload_summary(
    body: api.DailySummary, hub: Hub, rt: Runtime, response: Response
) -> api.SummaryAccepted:
    """One elder's day (docs/health-review.md), kept as the hub's elder's once per day:
    a repeat answers ``created: false`` and changes nothing, as does a day older than the
    server keeps (`summary_keep_days`). Aggregates only."""
    now_ms = rt.clock.now_ms()
    problem = day_problem(body.day, now_ms)
    if problem is not None:
        raise HTTPException(
            422,
            f"day {body.day!r}: {problem.value}: send the centre's local date, YYYY-MM-DD",
        )
    oldest = oldest_kept_day(now_ms, rt.settings.summary_keep_days, rt.settings.console_time_zone)
    recorded = await SummaryStore(rt.store).record(hub, body, now_ms, oldest)
    if recorded is not Recorded.CREATED:
        response.status_code = status.HTTP_200_OK
    log.info("hub %s: summary of %s %s", hub.hub_id, body.day, recorded.value)
    return api.SummaryAccepted(day=body.day, created=recorded is Recorded.CREATED)
