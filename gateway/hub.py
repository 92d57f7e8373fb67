"""The hub's shell: moves bytes between the device link (MQTT), the store (SQLite) and the
uplink (HTTP); every decision is `gateway.hub_core.HubCore`'s.

Loops, each kept alive by `gateway.loop_guard.keep_running` (none can take another down):
- device link, started first and independent of the server: MQTT → `handle_message`
  (validation, intake, detectors), which returns only once a button event is committed;
- outbox: drains `HubStore`'s outbox to the server in order, with backoff and jitter;
- feedback: long-polls the server for alarm state changes and acks the elder's devices;
- fall windows: a detected fall waits its cancel window (persisted), then is raised;
- config and heartbeat: which devices are ours; hub health to the server;
- supervision: device faults, the vitals detectors' tick, outbox bound and pruning.

Each loop tells `self.health` (a `gateway.loop_health.LoopHealth`) when it starts, fails and
how soon it will check in again; `gateway.watchdog` turns that into systemd's watchdog pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from carehub import __version__
from carehub import api_contract as api
from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.clock import Clock, SystemClock
from carehub.mqtt_contract import (
    Ack,
    AckState,
    BridgeEvent,
    BridgeTopic,
    ButtonEvent,
    Channel,
    ContractError,
    DeviceStatus,
    ImuFrame,
    SelftestMode,
    Topics,
    VitalsReading,
    parse_model,
    parse_payload,
)
from carehub.settings import HubSettings
from edge.fall_detection import FallEvent
from edge.vital_signs import VitalsEvent
from gateway import ha_bridge, ha_discovery, metrics
from gateway.broker_files import load_accounts
from gateway.device_link import DeviceLink
from gateway.hub_core import (
    ACK_FOR_STATE,
    Acks,
    HubCore,
    selftest_marks,
    selftest_run,
    upload_body,
)
from gateway.intake import classify, new_alarm_id
from gateway.loop_guard import RestartPolicy, keep_running
from gateway.loop_health import STUCK_AFTER_S, LoopHealth
from gateway.server_busy import ServerBusy
from gateway.store import KEPT_KINDS, HubAlarm, HubStore, OutboxKind
from gateway.supervision import FaultChange
from gateway.uplink import Uplink, UplinkError

log = logging.getLogger(__name__)

CONFIG_KEY = "hub_config"
CURSOR_KEY = "updates_cursor"
FAULTS_KEY = "active_faults"


class ServerLink(Protocol):
    """What the hub needs from the server (`gateway.uplink.Uplink`; a fake in tests)."""

    async def send(self, kind: OutboxKind, body: dict[str, Any]) -> Any: ...
    async def updates(self, after: int, wait_s: float) -> api.AlarmUpdates: ...
    async def config(self) -> api.HubConfig: ...
    async def heartbeat(self, beat: api.HubHeartbeat) -> None: ...
    async def aclose(self) -> None: ...


class AckLink(Protocol):
    """What the hub needs from the device link (`gateway.device_link.DeviceLink`)."""

    connected: asyncio.Event
    connections: int

    async def run(self) -> None: ...
    async def send_ack(self, device_id: str, ack: Ack) -> bool: ...
    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> bool: ...


class Hub:
    restart_policy = RestartPolicy()

    def __init__(
        self,
        settings: HubSettings,
        clock: Clock | None = None,
        uplink: ServerLink | None = None,
        link: Callable[[Callable[[str, bytes], Awaitable[None]]], AckLink] | None = None,
    ) -> None:
        """`link` builds the device link from the message handler (default: MQTT)."""
        self.settings = settings
        self.clock = clock or SystemClock()
        self.topics = Topics(settings.base_topic)
        self.uplink: ServerLink = uplink or Uplink(
            settings.server_url, settings.hub_token.get_secret_value(), settings.upload_timeout_s
        )
        self.link: AckLink = (
            link(self._handle_watched)
            if link
            else DeviceLink(settings, self.topics, self._handle_watched)
        )
        self.core = HubCore(settings, self.clock)
        self.busy = ServerBusy(self.clock)
        """The server's last ``503`` + ``Retry-After``: holds maintenance traffic only."""
        self.health = LoopHealth(self.clock)
        self.ha = (
            ha_bridge.HaBridge(
                ha_discovery.HaDiscovery(self.topics, settings.ha_discovery_prefix), self.link
            )
            if settings.ha_discovery
            else None
        )
        self.availability: dict[str, str] = {}
        self.dropped = 0
        self.outbox_dropped = 0
        self._store: HubStore | None = None
        self._outbox_wake = asyncio.Event()
        self._alarm_wake = asyncio.Event()
        self._fall_wake = asyncio.Event()
        self._config_wake = asyncio.Event()
        self.selftest: SelftestMode | None = None
        self._paired_read_at = float("-inf")
        self._started = self.clock.monotonic()
        self._link_up_since_ms: int | None = None
        """Since when (hub clock) the device link is known up, as seen by supervision."""

    @property
    def store(self) -> HubStore:
        assert self._store is not None, "Hub.run() not started"
        return self._store

    @property
    def config(self) -> api.HubConfig | None:
        return self.core.config

    @property
    def ready(self) -> bool:
        """Connected to the broker with every loop running (systemd's READY=1)."""
        return self.link.connected.is_set() and self.health.all_started()

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Hub]:
        """The store open and the state of the last run restored (no loops running)."""
        async with HubStore(self.settings.hub_db) as store:
            self._store = store
            cached = await store.get(CONFIG_KEY)
            if cached:
                try:
                    self.core.apply_config(api.HubConfig.model_validate_json(cached))
                except ValueError as e:
                    log.warning("cached hub config unreadable, ignored: %s", str(e)[:200])
                else:
                    self._ha_pair()
            for device_id, fault in json.loads(await store.get(FAULTS_KEY) or "[]"):
                self.core.supervisor.restore(device_id, fault)
            self._load_paired()
            for alarm in await store.alarms_in_state(AlarmState.PENDING_CANCEL):
                self.core.track_pending(alarm)  # windows that were running at the restart
            try:
                yield self
            finally:
                self._store = None

    def _paired_since(self, device_id: str) -> bool:
        """Paired while the hub missed the bridge event (it was not yet subscribed, e.g.
        on its very first start)? On a secured broker only paired devices can publish, so
        the accounts file is read again, at most once a second, before a message is dropped."""
        now = self.clock.monotonic()
        if now - self._paired_read_at < 1.0:
            return False
        self._paired_read_at = now
        self._load_paired()
        return self.is_known(device_id)

    def _load_paired(self) -> None:
        """Devices paired on this hub, from the broker's accounts file (when this hub runs
        its own secured broker): known before the server's config arrives."""
        try:
            accounts = load_accounts(self.settings.hub_broker_dir)
        except (OSError, ValueError, TypeError) as e:
            log.warning("broker accounts unreadable, paired devices not loaded: %s", e)
            return
        for device in accounts.devices if accounts else ():
            self.core.device_paired(device.device_id, device.kind)

    async def run(self) -> None:
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("device-link", self.link.run),  # first: intake never waits for the server
            ("fall-windows", self._run_fall_windows),
            ("supervision", self._supervise),
            ("outbox", self._drain_outbox),
            ("config", self._refresh_config_forever),
            ("feedback", self._follow_updates),
            ("heartbeat", self._send_heartbeats),
        ]
        if self.ha is not None:  # read-only: publishes, never subscribes
            loops.append(("home-assistant", self.ha.run))
        self.health.expect(*(name for name, _ in loops))
        async with self.opened():
            tasks = [
                asyncio.create_task(
                    keep_running(name, body, self.restart_policy, self.health), name=name
                )
                for name, body in loops
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.uplink.aclose()

    # ------------------------------------------------------------ device messages

    async def _handle_watched(self, topic: str, payload: bytes) -> None:
        """`handle_message` for the device link, watched: one message's handling that never
        ends (a hung disk under SQLite) makes the hub unhealthy (`gateway.watchdog`)."""
        self.health.promise("device-link", STUCK_AFTER_S)
        try:
            await self.handle_message(topic, payload)
        finally:
            self.health.idle("device-link")  # the next message may take hours to come

    def is_known(self, device_id: str) -> bool:
        return self.core.is_known(device_id)

    async def handle_message(self, topic: str, payload: bytes) -> None:
        """Validate and route one device message; bad input is logged and dropped. Returns
        once a button event is committed and acked (the device link PUBACKs after)."""
        if self.topics.parse_bridge(topic) is not None:
            return await self._on_bridge(topic, payload)
        try:
            parsed = self.topics.parse(topic)
        except ContractError as e:
            return self._drop(topic, "?", getattr(e, "reason", "bad_topic"), str(e))
        if parsed.channel is Channel.ACK:
            return
        if not self.is_known(parsed.device_id) and not self._paired_since(parsed.device_id):
            return self._drop(
                topic,
                parsed.device_id,
                "unknown_device",
                "unknown device: pair it with this hub first",
            )
        try:
            message = parse_payload(parsed.channel, payload)
        except ContractError as e:
            return self._drop(topic, parsed.device_id, getattr(e, "reason", "invalid"), str(e))
        device_id, now = parsed.device_id, self.clock.now_ms()
        supervisor = self.core.supervisor
        self._ha_online(device_id, message != "offline")
        if isinstance(message, ButtonEvent):
            await self.on_button(device_id, message)  # nothing else may delay or stop this
            return await self._faults(supervisor.seen(device_id, now))
        if isinstance(message, str):
            self.availability[device_id] = message
            log.info("device %s %s", device_id, message)
            if message == "offline":
                for fall in self.core.falls.stream_ended(device_id):
                    await self.on_fall(device_id, fall)
                return await self._faults(supervisor.last_will(device_id, now))
        await self._faults(supervisor.seen(device_id, now))
        if isinstance(message, ImuFrame):
            self.core.vitals.push_imu(message, now)
            run = selftest_run(self.selftest, device_id, now)
            for fall in self.core.falls.push(device_id, message, now, run):
                await self.on_fall(device_id, fall)
        elif isinstance(message, VitalsReading):
            for event in self.core.vitals.push(device_id, message, now):
                await self.on_vitals(device_id, event)
        elif isinstance(message, DeviceStatus):
            self._ha(lambda ha: ha.status(device_id, message.battery, message.rssi))
            if message.battery is not None:
                await self._faults(supervisor.battery(device_id, message.battery))
        self._log_notices()

    async def _on_bridge(self, topic: str, payload: bytes) -> None:
        """The installer's commands speak to the running hub on the bridge topics (only the
        hub's own account may publish there): a device paired or removed is known or
        forgotten at once; a self-test marks the alarms of its devices as tests."""
        which = self.topics.parse_bridge(topic)
        try:
            if which is BridgeTopic.SELFTEST:
                self.selftest = parse_model(SelftestMode, payload) if payload else None
                log.info("self-test mode: %s", self.selftest)
                return
            if which is not BridgeTopic.EVENT:
                return
            event = parse_model(BridgeEvent, payload)
        except ContractError as e:
            return self._drop(topic, "bridge", e.reason, str(e))
        if event.event == "device_accepted" and event.device_id and event.kind:
            if self.core.device_paired(event.device_id, event.kind):
                log.info("device %s (%s) paired: known from now on", event.device_id, event.kind)
            self._ha_pair()
            self._config_wake.set()
        elif event.event == "device_removed" and event.device_id:
            self.core.device_removed(event.device_id)
            log.info("device %s removed: no longer listened to", event.device_id)
            self._ha_pair()
            self._config_wake.set()

    def _test_marks(self, device_id: str) -> dict[str, Any]:
        return selftest_marks(self.selftest, device_id, self.clock.now_ms())

    def _log_notices(self) -> None:
        """What the detectors and clock guards have to say: once per event, per device."""
        for notice in self.core.falls.take_notices() + self.core.vitals.take_notices():
            log.warning("device %s: %s", notice.device_id, notice.text)

    def _ha(
        self, update: Callable[[ha_discovery.HaDiscovery], list[ha_discovery.Publication]]
    ) -> None:
        """Hand Home Assistant's updates to its loop, when the bridge is on: never waits and
        never raises, since it is called on the alarm path."""
        if self.ha is None:
            return
        try:
            self.ha.note(update(self.ha.discovery))
        except Exception:
            log.exception("home assistant update failed; ignored")

    def _ha_pair(self) -> None:
        config = self.core.config
        if config is not None:
            devices = {d.device_id: str(d.kind) for d in config.devices}
            self._ha(lambda ha: ha.pair(config.hub_id, devices))

    def _ha_online(self, device_id: str, online: bool) -> None:
        self._ha(lambda ha: ha.connectivity(device_id, online))

    def _ha_alarm(self, alarm: HubAlarm, state: AlarmState) -> None:
        self._ha(
            lambda ha: ha.alarm(alarm.device_id, alarm.id, alarm.kind, state, alarm.raised_at_ms)
        )

    def _drop(self, topic: str, device_id: str, reason: str, detail: str) -> None:
        self.dropped += 1
        metrics.MESSAGES_DROPPED.labels(reason).inc()
        log.warning("dropped message on %s (device %s): %s", topic, device_id, detail)

    async def _send(self, acks: Acks) -> None:
        for device_id, ack in acks:
            await self.link.send_ack(device_id, ack)

    def _queued(self, kind: OutboxKind) -> None:
        """Wake the outbox; an alarm also cuts a running backoff short."""
        if self.core.queued(kind):
            self._alarm_wake.set()
        self._outbox_wake.set()

    async def on_button(self, device_id: str, event: ButtonEvent) -> None:
        stored = await self.store.stored_event(device_id, event.seq)
        if classify(event, stored, int(self.settings.dedup_window_s * 1000)) == "duplicate":
            assert stored is not None
            await self._reack(device_id, event.seq, stored.alarm_id)
        elif event.action == "press":
            alarm = self.core.press_alarm(device_id, event)
            await self.raise_alarm(alarm, event.ts, self._test_marks(device_id))
        else:
            await self._cancel(device_id, event, self.clock.now_ms())

    async def raise_alarm(
        self,
        alarm: HubAlarm,
        event_ts_ms: int | None,
        details: dict[str, Any],
        ack: bool = True,
    ) -> None:
        """Commit the alarm and its upload, then tell the device (persist before ack)."""
        await self.store.raise_alarm(
            alarm,
            event_ts_ms,
            details,
            upload_body(alarm, event_ts_ms, details),
            self.clock.now_ms(),
        )
        log.info("alarm %s raised by %s (%s)", alarm.id, alarm.device_id, alarm.kind)
        metrics.ALARMS_RAISED.labels(alarm.kind.value).inc()
        self._queued(OutboxKind.ALARM)
        self._ha_alarm(alarm, alarm.state)
        if ack:
            await self.link.send_ack(
                alarm.device_id,
                Ack(v=1, seq=alarm.seq, alarm_id=alarm.id, state=ACK_FOR_STATE[alarm.state]),
            )

    async def _cancel(self, device_id: str, event: ButtonEvent, now: int) -> None:
        target = await self.store.latest_open_alarm(self.core.cancel_since(now))
        plan = self.core.plan_cancel(device_id, event, target, now)
        if plan.target is None:
            await self.store.record_event(device_id, event.seq, event.ts, None, now)
        elif plan.report is None:
            await self.store.set_state(plan.target.id, AlarmState.CANCELLED, now)
            await self.store.record_event(device_id, event.seq, event.ts, plan.target.id, now)
            self.core.pending.pop(plan.target.id, None)
            self._ha_alarm(plan.target, AlarmState.CANCELLED)
            log.info("fall alarm %s cancelled from %s inside its window", plan.target.id, device_id)
        else:
            report = plan.report
            await self.store.set_state(
                plan.target.id,
                AlarmState.CANCELLED,
                now,
                (OutboxKind.REPORT, report.report_id, report.model_dump(mode="json")),
            )
            await self.store.record_event(device_id, event.seq, event.ts, plan.target.id, now)
            self._queued(OutboxKind.REPORT)
            self._ha_alarm(plan.target, AlarmState.CANCELLED)
            log.info("alarm %s cancelled from %s", plan.target.id, device_id)
        await self._send(plan.acks)

    async def _reack(self, device_id: str, seq: int, alarm_id: str | None) -> None:
        alarm = await self.store.alarm(alarm_id) if alarm_id else None
        state = ACK_FOR_STATE[alarm.state] if alarm else AckState.CANCELLED
        await self.link.send_ack(device_id, Ack(v=1, seq=seq, alarm_id=alarm_id, state=state))

    # ------------------------------------------------------------ falls

    async def on_fall(self, device_id: str, fall: FallEvent) -> None:
        """A detected fall waits its cancel window (persisted, so a restart keeps it)."""
        now = self.clock.now_ms()
        plan = self.core.plan_fall(device_id, fall, now)
        if plan.selftest_drop:  # kept as evidence, like a fall cancelled in its window
            await self.store.raise_alarm(plan.alarm, plan.event_ts_ms, plan.details, None, now)
            log.info(
                "fall detected on %s (peak %.1f g) is the self-test's drop: alarm %s kept on"
                " the hub, not raised",
                device_id,
                fall.peak_g,
                plan.alarm.id,
            )
            return
        if marks := self._test_marks(device_id):
            plan = dataclasses.replace(plan, details={**plan.details, **marks})
        log.info(
            "fall detected on %s (peak %.1f g, score %.2f, %d ms after the impact);"
            " cancel window %.0f s",
            device_id,
            fall.peak_g,
            fall.score,
            plan.details["late_by_ms"],
            self.settings.fall_cancel_window_s,
        )
        if not plan.pending:
            await self.raise_alarm(plan.alarm, plan.event_ts_ms, plan.details)
            await self._send(self.core.home_acks(plan.alarm, AckState.RECEIVED, skip=device_id))
            return
        await self.store.raise_alarm(plan.alarm, plan.event_ts_ms, plan.details, None, now)
        self.core.track_pending(plan.alarm)
        self._ha_alarm(plan.alarm, plan.alarm.state)
        self._fall_wake.set()

    async def fall_windows_pass(self) -> float:
        """Raise the falls whose window ran out, remind the home of the others; returns
        the seconds until the next pass is due."""
        now = self.clock.now_ms()
        windows = self.core.fall_windows(now)
        for alarm in windows.due:
            try:
                await self._raise_pending_fall(alarm)
            except Exception as e:  # keep the window open; retried shortly
                self.core.fall_not_raised(alarm, now)
                log.error("could not raise fall alarm %s (%s); retrying", alarm.id, e)
        for alarm, left in windows.reminders:
            await self._send(self.core.home_acks(alarm, AckState.PENDING, seconds_left=left))
        return min(1.0, max(0.01, (windows.wake_at_ms - now) / 1000))

    async def _run_fall_windows(self) -> None:
        while True:
            self.health.promise("fall-windows", 1.0 + STUCK_AFTER_S)
            wait_s = await self.fall_windows_pass()
            self._fall_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fall_wake.wait(), wait_s)

    async def _raise_pending_fall(self, alarm: HubAlarm) -> None:
        event_ts, details = await self.store.alarm_evidence(alarm.id)
        new = await self.store.set_state(
            alarm.id,
            AlarmState.RECEIVED,
            self.clock.now_ms(),
            (OutboxKind.ALARM, alarm.id, upload_body(alarm, event_ts, details)),
        )
        if new is None:
            return  # cancelled meanwhile
        log.info("alarm %s raised by %s (fall, window over)", alarm.id, alarm.device_id)
        metrics.ALARMS_RAISED.labels(alarm.kind.value).inc()
        self._queued(OutboxKind.ALARM)
        self._ha_alarm(alarm, AlarmState.RECEIVED)
        await self._send(self.core.home_acks(alarm, AckState.RECEIVED))

    # ------------------------------------------------------------ vitals and supervision

    async def on_vitals(self, device_id: str, event: VitalsEvent) -> None:
        """Wear faults are faults; alarms are raised like a press (critical) or inform the
        doctor only (warning); a recovery is logged, the doctor closes the episode."""
        if event.kind in ("fault", "fault_cleared"):
            await self._faults(
                self.core.supervisor.worn(device_id, event.kind == "fault_cleared", event.reason)
            )
            return
        if event.kind == "alarm_cleared":
            log.info("vital signs of %s back to normal: %s", device_id, event.reason)
            return
        severity = Severity(event.severity or Severity.WARNING)
        alarm = HubAlarm(
            id=new_alarm_id(),
            device_id=device_id,
            seq=None,
            kind=AlarmKind.VITALS,
            severity=severity,
            state=AlarmState.RECEIVED,
            raised_at_ms=self.clock.now_ms(),
        )
        details = {"reason": event.reason, "scores": event.scores, "readings": event.readings}
        log.info("vital-sign %s alarm for %s: %s", severity, device_id, event.reason)
        await self.raise_alarm(alarm, event.ts_ms, details, ack=False)
        if alarm.severity is Severity.CRITICAL:
            await self._send(self.core.home_acks(alarm, AckState.RECEIVED))

    async def _faults(self, changes: list[FaultChange]) -> None:
        """Commit fault changes to the outbox (with the active set, for restarts)."""
        if not changes:
            return
        now = self.clock.now_ms()
        for change in changes:
            if change.fault == "device_offline":
                self._ha_online(change.device_id, not change.active)
        for report in self.core.fault_reports(changes, now):
            log.info(
                "fault %s %s on %s (%s)",
                report.fault,
                "raised" if report.active else "cleared",
                report.device_id,
                report.detail,
            )
            await self.store.enqueue(
                OutboxKind.FAULT, report.report_id, report.model_dump(mode="json"), now
            )
        await self._save_faults()
        self._queued(OutboxKind.FAULT)

    async def _save_faults(self) -> None:
        await self.store.put(FAULTS_KEY, json.dumps(sorted(self.core.supervisor.active())))

    def free_disk_mb(self) -> float:
        return shutil.disk_usage(self.settings.hub_db.resolve().parent).free / 2**20

    async def supervision_pass(self) -> None:
        """Device faults, silent pendants, the vitals tick, pruning and the outbox bound."""
        now = self.clock.now_ms()
        core = self.core
        await self._faults(core.supervisor.tick(now))
        if not self.link.connected.is_set():
            self._link_up_since_ms = None
        elif self._link_up_since_ms is None:  # seen at this pass: later, never earlier
            self._link_up_since_ms = now
        for device_id, fall in core.silent_pendants(now, self._link_up_since_ms):
            await self.on_fall(device_id, fall)
        for device_id, event in core.vitals.tick(now):
            await self.on_vitals(device_id, event)
        before = core.prune_before(now)
        if before is not None:
            pruned = await self.store.prune(before)
            if pruned:
                log.info(
                    "pruned %d records older than %.0f days", pruned, self.settings.retention_days
                )
        depth = await self.store.queue_depth()
        free_mb = self.free_disk_mb()
        bound = core.outbox_bound(free_mb, depth)
        if bound.disk_low:
            log.warning("only %.0f MB of disk left: trimming non-alarm outbox data", free_mb)
        dropped = await self.store.trim_outbox(bound.entries)
        metrics.OUTBOX_DEPTH.set(depth - dropped)
        metrics.DEVICES_ONLINE.set(core.supervisor.online())
        metrics.FAULTS_ACTIVE.set(len(core.supervisor.active()))
        if dropped:
            self.outbox_dropped += dropped
            metrics.OUTBOX_DROPPED.inc(dropped)
            log.warning("outbox full: dropped %d oldest non-alarm entries", dropped)

    async def _supervise(self) -> None:
        every = min(5.0, self.settings.device_offline_after_s / 4)
        while True:
            self.health.promise("supervision", every + STUCK_AFTER_S)
            await asyncio.sleep(every)
            await self.supervision_pass()

    # ------------------------------------------------------------ server side

    async def apply_server_state(
        self, alarm_id: str, state: AlarmState, responder: str | None = None
    ) -> None:
        """A state decided on the server reaches the elder's device (with who is coming,
        once someone accepted)."""
        new = await self.store.set_state(alarm_id, state, self.clock.now_ms())
        if new is None:
            return
        alarm = await self.store.alarm(alarm_id)
        assert alarm is not None
        log.info("alarm %s is now %s", alarm_id, new)
        self._ha_alarm(alarm, new)
        await self._send(self.core.state_acks(alarm, new, responder))

    async def _drain_outbox(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        longest_wait_s = max(5.0, self.settings.upload_timeout_s + self.settings.retry_max_s)
        while True:
            self.health.promise("outbox", longest_wait_s + STUCK_AFTER_S)
            entry = await self.store.next_pending()
            if entry is None:
                attempt = 0
                self.core.outbox_empty()
                self._outbox_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox_wake.wait(), 5.0)
                continue
            self._alarm_wake.clear()  # an alarm queued from now on cuts the wait short
            if self.busy.holds(entry.kind):  # the server asked for rest: alarms go first
                entry = await self.store.next_pending(KEPT_KINDS)
                if entry is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._alarm_wake.wait(), min(self.busy.wait_s(), 5.0)
                        )
                    continue
            try:
                answer = await self.uplink.send(entry.kind, entry.body)
            except UplinkError as e:
                if e.retry_after_s is not None and entry.kind not in KEPT_KINDS:
                    log.info(
                        "server busy: %s %s waits %.0f s", entry.kind, entry.ref, e.retry_after_s
                    )
                    self.busy.told(e.retry_after_s)
                    continue
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
                delay = self.core.retry_delay(entry.kind, attempt)
                attempt += 1
                log.warning(
                    "upload of %s %s failed (%s); retry in %.1f s", entry.kind, entry.ref, e, delay
                )
                started = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._alarm_wake.wait(), delay)
                    log.info(
                        "alarm queued: retrying %s %s after %.1f s instead of %.1f s",
                        entry.kind,
                        entry.ref,
                        loop.time() - started,
                        delay,
                    )
                continue
            attempt = 0
            await self.store.mark_sent(entry.id, self.clock.now_ms())
            if entry.kind is OutboxKind.ALARM and answer and "state" in answer:
                await self.apply_server_state(entry.ref, AlarmState(answer["state"]))

    async def _follow_updates(self) -> None:
        cursor = int(await self.store.get(CURSOR_KEY) or 0)
        attempt = 0
        while True:
            try:
                batch = await self.uplink.updates(cursor, wait_s=20)
            except UplinkError as e:
                delay = self.core.backoff.delay(attempt, self.core.rng.random())
                attempt += 1
                log.debug("alarm updates unavailable (%s); retry in %.1f s", e, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            for update in batch.updates:
                await self.apply_server_state(update.alarm_id, update.state, update.responder)
            if batch.cursor != cursor:
                cursor = batch.cursor
                await self.store.put(CURSOR_KEY, str(cursor))

    async def refresh_config(self) -> bool:
        """Fetch which devices are ours; on failure (or a body that is not a hub config, e.g.
        a captive portal's HTML) keep the cached config."""
        try:
            config = await self.uplink.config()
        except (UplinkError, ValueError) as e:
            if isinstance(e, UplinkError) and e.retry_after_s is not None:
                self.busy.told(e.retry_after_s)
            log.warning(
                "hub config unavailable (%s); using %s",
                str(e)[:200],
                "cache" if self.config else "none yet",
            )
            return False
        change = self.core.apply_config(config)
        if change.changed:
            log.info(
                "hub %s serves %d devices (added %s, removed %s)",
                config.hub_id,
                len(config.devices),
                change.added or "none",
                change.removed or "none",
            )
            await self.store.put(CONFIG_KEY, config.model_dump_json())
            self._ha_pair()
            if change.removed:
                await self._save_faults()
        return True

    async def _refresh_config_forever(self) -> None:
        while True:
            ok = await self.refresh_config()
            self._config_wake.clear()
            with contextlib.suppress(TimeoutError):  # a pairing wakes it early
                await asyncio.wait_for(
                    self._config_wake.wait(),
                    300.0 if ok else max(5.0 if self.config is None else 60.0, self.busy.wait_s()),
                )

    async def _send_heartbeats(self) -> None:
        with contextlib.suppress(TimeoutError):  # first beat once devices can reach us
            await asyncio.wait_for(self.link.connected.wait(), 10.0)
        while True:
            beat = api.HubHeartbeat(
                uptime_s=self.clock.monotonic() - self._started,
                queue_depth=await self.store.queue_depth(),
                devices_online=self.core.supervisor.online(),
                version=__version__,
            )
            try:
                await self.uplink.heartbeat(beat)
            except UplinkError as e:
                log.debug("heartbeat not sent: %s", e)
                if e.retry_after_s is not None:
                    self.busy.told(e.retry_after_s)
            # ±20 % jitter: hubs that started together (a district's power came back, a
            # server restart) must not keep beating in step, a burst of writes every interval
            await asyncio.sleep(
                self.busy.next_heartbeat_s(
                    self.settings.heartbeat_interval_s * self.core.rng.uniform(0.8, 1.2)
                )
            )
