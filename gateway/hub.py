"""The hub runtime: wires the device link, the durable store, the uplink and the detectors.

Tasks (all restartable, none can take another down):
- device link: MQTT messages → `handle_message` (validation, intake, detectors);
- outbox: drains `HubStore`'s outbox to the server in order, with backoff and jitter;
- feedback: long-polls the server for alarm state changes and acks the elder's devices;
- fall windows: a detected fall waits its cancel window (persisted), then is raised;
- config and heartbeat: which devices are ours; hub health to the server;
- supervision: device faults (offline, battery low, not worn) and the vitals detectors' tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
from dataclasses import dataclass
from typing import Any

from carehub import __version__
from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.api_contract import (
    AlarmStateReport,
    AlarmUpload,
    FaultReport,
    HubConfig,
    HubHeartbeat,
)
from carehub.clock import Clock, SystemClock
from carehub.mqtt_contract import (
    Ack,
    AckState,
    ButtonEvent,
    Channel,
    ContractError,
    DeviceStatus,
    ImuFrame,
    Topics,
    VitalsReading,
    parse_payload,
)
from carehub.settings import HubSettings
from edge.fall_detection import FallEvent
from edge.vital_signs import VitalsEvent
from gateway import metrics
from gateway.device_link import DeviceLink
from gateway.fall_watch import FallWatch
from gateway.intake import Backoff, classify, new_alarm_id
from gateway.store import HubAlarm, HubStore
from gateway.supervision import FaultChange, Supervisor
from gateway.uplink import Uplink, UplinkError
from gateway.vitals_watch import VitalsWatch

log = logging.getLogger(__name__)

ACK_FOR_STATE: dict[AlarmState, AckState] = {
    AlarmState.RAISED: AckState.RECEIVED,
    AlarmState.PENDING_CANCEL: AckState.PENDING,
    AlarmState.RECEIVED: AckState.RECEIVED,
    AlarmState.DISPATCHED: AckState.DISPATCHED,
    AlarmState.ACCEPTED: AckState.ACCEPTED,
    AlarmState.RESOLVED: AckState.RESOLVED,
    AlarmState.CANCELLED: AckState.CANCELLED,
}
CANCEL_HORIZON_MS = 30 * 60 * 1000
"""A cancel press cancels the newest open alarm raised within this horizon."""
CONFIG_KEY = "hub_config"
CURSOR_KEY = "updates_cursor"
FAULTS_KEY = "active_faults"
IMU_SILENCE_MS = 5000
"""A pendant silent this long has stopped streaming: its suspected falls are decided."""


def _upload(alarm: HubAlarm, event_ts_ms: int | None, details: dict[str, Any]) -> dict[str, Any]:
    """The outbox body that uploads `alarm` (its id is the server's idempotency key)."""
    return AlarmUpload(
        alarm_id=alarm.id,
        device_id=alarm.device_id,
        kind=alarm.kind,
        severity=alarm.severity,
        seq=alarm.seq,
        raised_at_ms=alarm.raised_at_ms,
        event_ts_ms=event_ts_ms,
        details=details,
    ).model_dump(mode="json")


@dataclass
class _PendingFall:
    alarm: HubAlarm
    due_ms: int
    next_ack_ms: int


class Hub:
    def __init__(
        self, settings: HubSettings, clock: Clock | None = None, uplink: Uplink | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.topics = Topics(settings.base_topic)
        self.uplink = uplink or Uplink(
            settings.server_url, settings.hub_token.get_secret_value(), settings.upload_timeout_s
        )
        self.link = DeviceLink(settings, self.topics, self.handle_message)
        self.backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
        self.config: HubConfig | None = None
        self.availability: dict[str, str] = {}
        self.dropped = 0
        self.outbox_dropped = 0
        self._last_depth = 0
        self._last_prune_ms = 0
        self._store: HubStore | None = None
        self._outbox_wake = asyncio.Event()
        self._started = self.clock.monotonic()
        self._rng = random.Random()
        self.falls = FallWatch()
        self.vitals = VitalsWatch()
        self.supervisor = Supervisor(
            int(settings.device_offline_after_s * 1000), settings.battery_low_pct
        )
        self._pending_falls: dict[str, _PendingFall] = {}
        self._fall_wake = asyncio.Event()

    @property
    def store(self) -> HubStore:
        assert self._store is not None, "Hub.run() not started"
        return self._store

    async def run(self) -> None:
        async with HubStore(self.settings.hub_db) as store:
            self._store = store
            cached = await store.get(CONFIG_KEY)
            if cached:
                self.config = HubConfig.model_validate_json(cached)
            with contextlib.suppress(TimeoutError):  # know our devices before listening
                await asyncio.wait_for(self.refresh_config(), 5.0)
            self._apply_care_plan()
            for device_id, fault in json.loads(await store.get(FAULTS_KEY) or "[]"):
                self.supervisor.restore(device_id, fault)
            for alarm in await store.alarms_in_state(AlarmState.PENDING_CANCEL):
                self._track_pending_fall(alarm)  # windows that were running at the restart
            tasks = [
                asyncio.create_task(self.link.run(), name="device-link"),
                asyncio.create_task(self._drain_outbox(), name="outbox"),
                asyncio.create_task(self._follow_updates(), name="feedback"),
                asyncio.create_task(self._refresh_config_forever(), name="config"),
                asyncio.create_task(self._send_heartbeats(), name="heartbeat"),
                asyncio.create_task(self._run_fall_windows(), name="fall-windows"),
                asyncio.create_task(self._supervise(), name="supervision"),
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.uplink.aclose()

    # ------------------------------------------------------------ device messages

    def is_known(self, device_id: str) -> bool:
        """Devices paired with this hub; before any config is known, accept every device
        rather than ignore an elder's call."""
        if self.config is None:
            return True
        return any(d.device_id == device_id for d in self.config.devices)

    async def handle_message(self, topic: str, payload: bytes) -> None:
        """Validate and route one device message; bad input is logged and dropped."""
        try:
            parsed = self.topics.parse(topic)
        except ContractError as e:
            return self._drop(topic, "?", str(e))
        if parsed.channel is Channel.ACK:
            return
        if not self.is_known(parsed.device_id):
            return self._drop(
                topic, parsed.device_id, "unknown device: pair it with this hub first"
            )
        try:
            message = parse_payload(parsed.channel, payload)
        except ContractError as e:
            return self._drop(topic, parsed.device_id, str(e))
        device_id, now = parsed.device_id, self.clock.now_ms()
        if isinstance(message, str):
            self.availability[device_id] = message
            log.info("device %s %s", device_id, message)
            if message == "offline":
                for fall in self.falls.stream_ended(device_id):
                    await self.on_fall(device_id, fall)
                return await self._faults(self.supervisor.last_will(device_id, now))
        await self._faults(self.supervisor.seen(device_id, now))
        if isinstance(message, ButtonEvent):
            await self.on_button(device_id, message)
        elif isinstance(message, ImuFrame):
            self.vitals.push_imu(message)
            for fall in self.falls.push(device_id, message, now):
                await self.on_fall(device_id, fall)
        elif isinstance(message, VitalsReading):
            for event in self.vitals.push(device_id, message):
                await self.on_vitals(device_id, event)
        elif isinstance(message, DeviceStatus) and message.battery is not None:
            await self._faults(self.supervisor.battery(device_id, message.battery))

    def _drop(self, topic: str, device_id: str, reason: str) -> None:
        self.dropped += 1
        metrics.MESSAGES_DROPPED.inc()
        log.warning("dropped message on %s (device %s): %s", topic, device_id, reason)

    async def on_button(self, device_id: str, event: ButtonEvent) -> None:
        now = self.clock.now_ms()
        stored = await self.store.stored_event(device_id, event.seq)
        if classify(event, stored, int(self.settings.dedup_window_s * 1000)) == "duplicate":
            assert stored is not None
            await self._reack(device_id, event.seq, stored.alarm_id)
            return
        if event.action == "press":
            alarm = HubAlarm(
                id=new_alarm_id(),
                device_id=device_id,
                seq=event.seq,
                kind=AlarmKind.BUTTON,
                severity=Severity.CRITICAL,
                state=AlarmState.RECEIVED,
                raised_at_ms=now,
            )
            await self.raise_alarm(alarm, event.ts, {})
        else:
            await self._cancel(device_id, event, now)

    async def raise_alarm(
        self,
        alarm: HubAlarm,
        event_ts_ms: int | None,
        details: dict[str, Any],
        ack: bool = True,
    ) -> None:
        """Commit the alarm and its upload, then tell the device (persist before ack)."""
        await self.store.raise_alarm(
            alarm, event_ts_ms, details, _upload(alarm, event_ts_ms, details), self.clock.now_ms()
        )
        log.info("alarm %s raised by %s (%s)", alarm.id, alarm.device_id, alarm.kind)
        metrics.ALARMS_RAISED.labels(alarm.kind.value).inc()
        self._outbox_wake.set()
        if ack:
            await self.link.send_ack(
                alarm.device_id,
                Ack(v=1, seq=alarm.seq, alarm_id=alarm.id, state=ACK_FOR_STATE[alarm.state]),
            )

    async def _cancel(self, device_id: str, event: ButtonEvent, now: int) -> None:
        target = await self.store.latest_open_alarm(now - CANCEL_HORIZON_MS)
        if target is None:
            await self.store.record_event(device_id, event.seq, event.ts, None, now)
            await self.link.send_ack(
                device_id, Ack(v=1, seq=event.seq, alarm_id=None, state=AckState.CANCELLED)
            )
            return
        if target.state is AlarmState.PENDING_CANCEL:  # never left the hub: nothing to report
            await self.store.set_state(target.id, AlarmState.CANCELLED, now)
            await self.store.record_event(device_id, event.seq, event.ts, target.id, now)
            self._pending_falls.pop(target.id, None)
            log.info("fall alarm %s cancelled from %s inside its window", target.id, device_id)
            await self.link.send_ack(
                device_id, Ack(v=1, seq=event.seq, alarm_id=target.id, state=AckState.CANCELLED)
            )
            await self._tell_home(target, AckState.CANCELLED, skip=device_id)
            return
        report = AlarmStateReport(
            report_id=new_alarm_id(),
            alarm_id=target.id,
            state=AlarmState.CANCELLED,
            at_ms=now,
            reason=f"cancel pressed on {device_id}",
        )
        await self.store.set_state(
            target.id,
            AlarmState.CANCELLED,
            now,
            ("report", report.report_id, report.model_dump(mode="json")),
        )
        await self.store.record_event(device_id, event.seq, event.ts, target.id, now)
        self._outbox_wake.set()
        log.info("alarm %s cancelled from %s", target.id, device_id)
        await self.link.send_ack(
            device_id, Ack(v=1, seq=event.seq, alarm_id=target.id, state=AckState.CANCELLED)
        )
        if target.device_id != device_id:
            await self.link.send_ack(
                target.device_id,
                Ack(v=1, seq=target.seq, alarm_id=target.id, state=AckState.CANCELLED),
            )

    # ------------------------------------------------------------ falls

    async def on_fall(self, device_id: str, fall: FallEvent) -> None:
        """A detected fall waits its cancel window (persisted, so a restart keeps it)."""
        now = self.clock.now_ms()
        window_s = self.settings.fall_cancel_window_s
        alarm = HubAlarm(
            id=new_alarm_id(),
            device_id=device_id,
            seq=None,
            kind=AlarmKind.FALL,
            severity=Severity.CRITICAL,
            state=AlarmState.PENDING_CANCEL if window_s > 0 else AlarmState.RECEIVED,
            raised_at_ms=now,
        )
        details = {
            "impact_ts_ms": fall.impact_ts_ms,
            "peak_g": round(fall.peak_g, 3),
            "score": round(fall.score, 3),
            "sensitivity": self.falls.sensitivity,
            "window": {"hz": fall.window_hz, "t0_ms": fall.window_t0_ms, "acc": fall.window_acc},
        }
        log.info(
            "fall detected on %s (peak %.1f g, score %.2f); cancel window %.0f s",
            device_id,
            fall.peak_g,
            fall.score,
            window_s,
        )
        if window_s <= 0:
            await self.raise_alarm(alarm, fall.impact_ts_ms, details)
            await self._tell_home(alarm, AckState.RECEIVED, skip=device_id)
            return
        await self.store.raise_alarm(alarm, fall.impact_ts_ms, details, None, now)
        self._track_pending_fall(alarm)

    def _track_pending_fall(self, alarm: HubAlarm) -> None:
        due = alarm.raised_at_ms + int(self.settings.fall_cancel_window_s * 1000)
        self._pending_falls[alarm.id] = _PendingFall(alarm, due, next_ack_ms=0)
        self._fall_wake.set()

    async def _run_fall_windows(self) -> None:
        """Tell the home how long is left; raise each fall whose window ran out."""
        while True:
            now = self.clock.now_ms()
            for alarm_id, p in list(self._pending_falls.items()):
                if now >= p.due_ms:
                    self._pending_falls.pop(alarm_id, None)
                    try:
                        await self._raise_pending_fall(p.alarm)
                    except Exception:  # keep the window open; retried on the next pass
                        self._pending_falls[alarm_id] = p
                        log.exception("could not raise fall alarm %s; retrying", alarm_id)
                elif now >= p.next_ack_ms:
                    p.next_ack_ms = now + int(self.settings.pending_ack_every_s * 1000)
                    left = max(0, -(-(p.due_ms - now) // 1000))
                    await self._tell_home(p.alarm, AckState.PENDING, seconds_left=left)
            wake_at = min(
                (min(p.due_ms, p.next_ack_ms) for p in self._pending_falls.values()),
                default=now + 1000,
            )
            self._fall_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._fall_wake.wait(), min(1.0, max(0.01, (wake_at - now) / 1000))
                )

    async def _raise_pending_fall(self, alarm: HubAlarm) -> None:
        event_ts, details = await self.store.alarm_evidence(alarm.id)
        new = await self.store.set_state(
            alarm.id,
            AlarmState.RECEIVED,
            self.clock.now_ms(),
            ("alarm", alarm.id, _upload(alarm, event_ts, details)),
        )
        if new is None:
            return  # cancelled meanwhile
        log.info("alarm %s raised by %s (fall, window over)", alarm.id, alarm.device_id)
        metrics.ALARMS_RAISED.labels(alarm.kind.value).inc()
        self._outbox_wake.set()
        await self._tell_home(alarm, AckState.RECEIVED)

    async def _tell_home(
        self,
        alarm: HubAlarm,
        state: AckState,
        seconds_left: int | None = None,
        skip: str | None = None,
    ) -> None:
        """Feedback on an alarm no single press raised: the device and the home's buttons."""
        targets = [alarm.device_id] + [
            d.device_id
            for d in (self.config.devices if self.config else [])
            if d.kind == "button" and d.device_id != alarm.device_id
        ]
        for device_id in targets:
            if device_id != skip:
                await self.link.send_ack(
                    device_id,
                    Ack(
                        v=1,
                        seq=alarm.seq if device_id == alarm.device_id else None,
                        alarm_id=alarm.id,
                        state=state,
                        seconds_left=seconds_left,
                    ),
                )

    def _apply_care_plan(self) -> None:
        if self.config is not None:
            self.falls.set_sensitivity(self.config.care_plan.fall_sensitivity)
            self.vitals.set_care_plan(self.config.care_plan.spo2_scale2)
            self.supervisor.expect((d.device_id for d in self.config.devices), self.clock.now_ms())

    # ------------------------------------------------------------ vitals and supervision

    async def on_vitals(self, device_id: str, event: VitalsEvent) -> None:
        """Wear faults are faults; alarms are raised like a press (critical) or inform the
        doctor only (warning); a recovery is logged, the doctor closes the episode."""
        if event.kind in ("fault", "fault_cleared"):
            await self._faults(
                self.supervisor.worn(device_id, event.kind == "fault_cleared", event.reason)
            )
            return
        if event.kind == "alarm_cleared":
            log.info("vital signs of %s back to normal: %s", device_id, event.reason)
            return
        severity = event.severity or Severity.WARNING
        alarm = HubAlarm(
            id=new_alarm_id(),
            device_id=device_id,
            seq=None,
            kind=AlarmKind.VITALS,
            severity=Severity(severity),
            state=AlarmState.RECEIVED,
            raised_at_ms=self.clock.now_ms(),
        )
        details = {"reason": event.reason, "scores": event.scores, "readings": event.readings}
        log.info("vital-sign %s alarm for %s: %s", severity, device_id, event.reason)
        await self.raise_alarm(alarm, event.ts_ms, details, ack=False)
        if alarm.severity is Severity.CRITICAL:
            await self._tell_home(alarm, AckState.RECEIVED)

    async def _faults(self, changes: list[FaultChange]) -> None:
        """Commit fault changes to the outbox (with the active set, for restarts)."""
        if not changes:
            return
        now = self.clock.now_ms()
        for change in changes:
            report = FaultReport(
                report_id=new_alarm_id(),
                device_id=change.device_id,
                fault=change.fault,
                active=change.active,
                at_ms=now,
                detail=change.detail[:200],
            )
            log.info(
                "fault %s %s on %s (%s)",
                change.fault,
                "raised" if change.active else "cleared",
                change.device_id,
                change.detail,
            )
            await self.store.enqueue("fault", report.report_id, report.model_dump(mode="json"), now)
        await self.store.put(FAULTS_KEY, json.dumps(sorted(self.supervisor.active())))
        self._outbox_wake.set()

    async def _supervise(self) -> None:
        every = min(5.0, self.settings.device_offline_after_s / 4)
        while True:
            await asyncio.sleep(every)
            try:
                now = self.clock.now_ms()
                await self._faults(self.supervisor.tick(now))
                for device_id, fall in self.falls.silent(now, IMU_SILENCE_MS):
                    await self.on_fall(device_id, fall)
                for device_id, event in self.vitals.tick(now):
                    await self.on_vitals(device_id, event)
                await self._keep_disk_in_bounds(now)
                self._last_depth = await self.store.queue_depth()
                dropped = await self.store.trim_outbox(self._outbox_bound())
                metrics.OUTBOX_DEPTH.set(self._last_depth - dropped)
                metrics.DEVICES_ONLINE.set(self.supervisor.online())
                metrics.FAULTS_ACTIVE.set(len(self.supervisor.active()))
                if dropped:
                    self.outbox_dropped += dropped
                    metrics.OUTBOX_DROPPED.inc(dropped)
                    log.warning("outbox full: dropped %d oldest non-alarm entries", dropped)
            except Exception:
                log.exception("supervision pass failed; next pass in %.0f s", every)

    async def _reack(self, device_id: str, seq: int, alarm_id: str | None) -> None:
        alarm = await self.store.alarm(alarm_id) if alarm_id else None
        state = ACK_FOR_STATE[alarm.state] if alarm else AckState.CANCELLED
        await self.link.send_ack(device_id, Ack(v=1, seq=seq, alarm_id=alarm_id, state=state))

    # ------------------------------------------------------------ server side

    async def apply_server_state(self, alarm_id: str, state: AlarmState) -> None:
        """A state decided on the server reaches the elder's device."""
        new = await self.store.set_state(alarm_id, state, self.clock.now_ms())
        if new is None:
            return
        alarm = await self.store.alarm(alarm_id)
        assert alarm is not None
        log.info("alarm %s is now %s", alarm_id, new)
        if alarm.kind is AlarmKind.BUTTON:
            await self.link.send_ack(
                alarm.device_id,
                Ack(v=1, seq=alarm.seq, alarm_id=alarm_id, state=ACK_FOR_STATE[new]),
            )
        else:
            await self._tell_home(alarm, ACK_FOR_STATE[new])

    async def _drain_outbox(self) -> None:
        attempt = 0
        while True:
            entry = await self.store.next_pending()
            if entry is None:
                self._outbox_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox_wake.wait(), 5.0)
                continue
            try:
                answer = await self.uplink.send(entry.kind, entry.body)
            except UplinkError as e:
                if not e.retryable:
                    log.error(
                        "server refused %s %s for good, kept on the hub: %s",
                        entry.kind,
                        entry.ref,
                        e,
                    )
                    await self.store.mark_rejected(entry.id, str(e))
                    continue
                await self.store.mark_attempt(entry.id)
                metrics.UPLOAD_FAILURES.inc()
                delay = self.backoff.delay(attempt, self._rng.random())
                attempt += 1
                log.warning(
                    "upload of %s %s failed (%s); retry in %.1f s", entry.kind, entry.ref, e, delay
                )
                self._outbox_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox_wake.wait(), delay)
                continue
            attempt = 0
            await self.store.mark_sent(entry.id, self.clock.now_ms())
            if entry.kind == "alarm" and answer and "state" in answer:
                await self.apply_server_state(entry.ref, AlarmState(answer["state"]))

    async def _follow_updates(self) -> None:
        cursor = int(await self.store.get(CURSOR_KEY) or 0)
        attempt = 0
        while True:
            try:
                batch = await self.uplink.updates(cursor, wait_s=20)
            except UplinkError as e:
                delay = self.backoff.delay(attempt, self._rng.random())
                attempt += 1
                log.debug("alarm updates unavailable (%s); retry in %.1f s", e, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            for update in batch.updates:
                await self.apply_server_state(update.alarm_id, update.state)
            if batch.cursor != cursor:
                cursor = batch.cursor
                await self.store.put(CURSOR_KEY, str(cursor))

    async def refresh_config(self) -> bool:
        """Fetch which devices are ours; on failure keep the cached config."""
        try:
            config = await self.uplink.config()
        except UplinkError as e:
            log.warning(
                "hub config unavailable (%s); using %s", e, "cache" if self.config else "none yet"
            )
            return False
        if config != self.config:
            log.info("hub %s serves %d devices", config.hub_id, len(config.devices))
            self.config = config
            await self.store.put(CONFIG_KEY, config.model_dump_json())
            self._apply_care_plan()
        return True

    async def _refresh_config_forever(self) -> None:
        while True:
            ok = await self.refresh_config()
            await asyncio.sleep(300.0 if ok else 5.0 if self.config is None else 60.0)

    def _outbox_bound(self) -> int:
        """The outbox's entry bound, lowered while the disk is nearly full."""
        bound = self.settings.outbox_max_entries
        free_mb = shutil.disk_usage(self.settings.hub_db.resolve().parent).free / 2**20
        if free_mb < self.settings.min_free_disk_mb:
            log.warning("only %.0f MB of disk left: trimming non-alarm outbox data", free_mb)
            bound = min(bound, self._last_depth * 9 // 10)
        return bound

    async def _keep_disk_in_bounds(self, now_ms: int) -> None:
        """Hourly: forget records that are uploaded or finished and past retention."""
        if now_ms - self._last_prune_ms < 3_600_000:
            return
        self._last_prune_ms = now_ms
        pruned = await self.store.prune(now_ms - int(self.settings.retention_days * 86_400_000))
        if pruned:
            log.info("pruned %d records older than %.0f days", pruned, self.settings.retention_days)

    async def _send_heartbeats(self) -> None:
        with contextlib.suppress(TimeoutError):  # first beat once devices can reach us
            await asyncio.wait_for(self.link.connected.wait(), 10.0)
        while True:
            beat = HubHeartbeat(
                uptime_s=self.clock.monotonic() - self._started,
                queue_depth=await self.store.queue_depth(),
                devices_online=self.supervisor.online(),
                version=__version__,
            )
            try:
                await self.uplink.heartbeat(beat)
            except UplinkError as e:
                log.debug("heartbeat not sent: %s", e)
            # ±20 % jitter: hubs that started together (a district's power came back, a
            # server restart) must not keep beating in step, a burst of writes every interval
            await asyncio.sleep(self.settings.heartbeat_interval_s * self._rng.uniform(0.8, 1.2))
