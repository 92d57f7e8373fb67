"""The hub's shell: moves bytes between the device link (MQTT), the store (SQLite) and the
uplink (HTTP); every decision is `gateway.hub_core.HubCore`'s.

Loops, each kept alive by `gateway.loop_guard.keep_running` (none can take another down):
- device link, started first and independent of the server: MQTT → `handle_message`
  (validation, intake, detectors), which returns only once a button event is committed;
- outbox: drains `HubStore`'s outbox to the server in order per device, devices in turn
  (`gateway.outbox_order`), with backoff and jitter;
- feedback: long-polls the server for alarm state changes and acks the elder's devices;
- fall windows: a detected fall waits its cancel window (persisted), then is raised;
- config and heartbeat: which devices are ours; hub health to the server;
- supervision: device faults, the vitals detectors' tick, the elder's day (daily summaries,
  the check-in, inactivity: `gateway.daily_watch`), outbox bound and pruning.

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
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, cast

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
from gateway.ble import pairing as ble_pairing
from gateway.broker_files import load_accounts
from gateway.daily_watch import KEEP_DAYS, RHYTHM_DAYS, Stillness
from gateway.day_aggregate import DayAggregate
from gateway.device_link import DeviceLink, Unhandled
from gateway.hub_core import (
    ACK_FOR_STATE,
    TEST_MARK,
    Acks,
    FallPlan,
    HubCore,
    selftest_marks,
    selftest_run,
    upload_body,
)
from gateway.intake import classify, new_alarm_id
from gateway.loop_guard import RestartPolicy, keep_running
from gateway.loop_health import STUCK_AFTER_S, LoopHealth
from gateway.pending_acks import PendingAcks
from gateway.refusal import minimal_upload
from gateway.server_busy import ServerBusy
from gateway.store import (
    KEPT_KINDS,
    STILLNESS_KEY,
    HubAlarm,
    HubStore,
    OutboxEntry,
    OutboxKind,
    StoreDamage,
    StoreDamaged,
    is_storage_error,
)
from gateway.supervision import FaultChange
from gateway.uplink import Uplink, UplinkError
from gateway.zigbee import bridge as zigbee_bridge
from gateway.zigbee.bridge import Heard, Online, ZigbeeBridge
from gateway.zigbee.translate import Activity, BatteryLevel, Call, RadarFall

log = logging.getLogger(__name__)

CONFIG_KEY = "hub_config"
ZIGBEE_DEVICES_KEY = "zigbee2mqtt_devices"
CURSOR_KEY = "updates_cursor"
FAULTS_KEY = "active_faults"
PENDING_ACKS_KEY = "pending_acks"
STORE_DAMAGE_KEY = "store_damage_files"
"""The files a damaged store was set aside as, while its fault is active (JSON list)."""


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
        self.zigbee = (
            ZigbeeBridge(settings.zigbee2mqtt_topic) if settings.zigbee2mqtt_topic else None
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
        self.pending_acks = PendingAcks()
        self._acks_wake = asyncio.Event()
        self._acks_lock = asyncio.Lock()  # a kept ack never overtakes a newer one
        self._store_failures = 0
        """Device messages in a row not handled because the store failed."""
        self._damage_files: list[str] = []
        self._stopped: asyncio.Future[None] | None = None
        """Failed by `_store_failed` to end `run()` (the store is damaged)."""
        self.voice: Any = None
        """The voice agent (`gateway.voice.agent.VoiceAgent`) when calls are set up."""
        self.speakerphone: Literal["ok", "missing"] | None = None
        """For the heartbeat: None (no calls set up), `ok` or `missing`."""

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
            if store.damage is not None:
                await self._report_store_damage(store.damage)
            self._damage_files = json.loads(await store.get(STORE_DAMAGE_KEY) or "[]")
            try:
                self.pending_acks = PendingAcks.loads(await store.get(PENDING_ACKS_KEY))
            except ValueError as e:
                log.warning("kept acks unreadable, not sent again: %s", str(e)[:200])
            if self.pending_acks:
                self._acks_wake.set()
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
            kept = await store.get(ZIGBEE_DEVICES_KEY) if self.zigbee else None
            if self.zigbee and kept:
                self.zigbee.restore(kept)
                self.core.supervisor.by_availability(
                    self.zigbee.zigbee_ids(), zigbee_bridge.SILENCE_MS
                )
            for alarm in await store.alarms_in_state(AlarmState.PENDING_CANCEL):
                self.core.track_pending(alarm)  # windows that were running at the restart
            await self._restore_daily()
            try:
                yield self
            finally:
                self._store = None

    async def _restore_daily(self) -> None:
        """The elder's days as the last run left them (a restart keeps the day)."""
        try:
            self.core.daily.restore(
                [DayAggregate.loads(b) for b in await self.store.days(closed=False)],
                Stillness.loads(await self.store.get(STILLNESS_KEY)),
                [DayAggregate.loads(b) for b in await self.store.days(True, RHYTHM_DAYS)],
                await self.store.last_day(),
            )
        except (ValueError, TypeError, KeyError) as e:
            log.warning("stored days unreadable, the day starts afresh: %s", str(e)[:200])

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
        for device in (*accounts.devices, *accounts.zigbee) if accounts else ():
            self.core.device_paired(device.device_id, device.kind)
        zigbee = [d.device_id for d in accounts.zigbee] if accounts else []
        self.core.supervisor.by_availability(zigbee, zigbee_bridge.SILENCE_MS)
        bluetooth = [b.device_id for b in accounts.bluetooth] if accounts else []
        self.core.supervisor.by_availability(bluetooth, ble_pairing.SILENCE_MS)

    async def run(self) -> None:
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("device-link", self.link.run),  # first: intake never waits for the server
            ("fall-windows", self._run_fall_windows),
            ("supervision", self._supervise),
            ("outbox", self._drain_outbox),
            ("config", self._refresh_config_forever),
            ("feedback", self._follow_updates),
            ("heartbeat", self._send_heartbeats),
            ("acks", self._resend_acks),
        ]
        if self.ha is not None:  # read-only: publishes, never subscribes
            loops.append(("home-assistant", self.ha.run))
        loops += self._voice_loops()
        self.health.expect(*(name for name, _ in loops))
        self._stopped = asyncio.get_running_loop().create_future()
        async with self.opened():
            tasks = [
                asyncio.create_task(
                    keep_running(
                        name,
                        body if name == "device-link" else self._store_watched(body),
                        self.restart_policy,
                        self.health,
                    ),
                    name=name,
                )
                for name, body in loops
            ]
            try:
                await asyncio.gather(*tasks, self._stopped)
            finally:
                await _cancel_all(tasks)
                if self.voice is not None:
                    with contextlib.suppress(Exception):
                        await self.voice.aclose()
                await self.uplink.aclose()

    def _voice_loops(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """Calls, when the hub has a speakerphone set up (``voice_source``): the agent is
        imported only then, so a hub without one loads none of aiortc. A missing extra or
        device is `speakerphone missing` on the health board; alarms go on as ever."""
        if self.settings.voice_source is None:
            return []
        try:
            from gateway.voice.agent import VoiceAgent
        except ImportError as e:
            log.error("voice calls set up but the `voice` extra is not installed: %s", e)
            self.speakerphone = "missing"
            return []
        self.voice = VoiceAgent(
            self.settings, cast(Any, self.uplink), self.clock, self._alarm_open, self._talking
        )
        self.speakerphone = self.voice.status
        if self.speakerphone != "ok":
            return []
        return [("voice-calls", self.voice.follow), ("voice-tick", self.voice.tick_forever)]

    async def _alarm_open(self, alarm_id: str) -> bool:
        """The privacy rule's question: is this alarm of this home still open?"""
        alarm = await self.store.alarm(alarm_id)
        return alarm is not None and alarm.state not in (
            AlarmState.CANCELLED,
            AlarmState.RESOLVED,
        )

    async def _talking(self, alarm_id: str, on: bool) -> None:
        """The home's devices show `talking` while the call's audio is open, then the
        alarm's state again."""
        alarm = await self.store.alarm(alarm_id)
        if alarm is None:
            return
        if on:
            await self._send(self.core.home_acks(alarm, AckState.TALKING))
        else:
            await self._send(self.core.state_acks(alarm, alarm.state))

    def _call_for(self, alarm_id: str, body: dict[str, Any]) -> None:
        """An alarm the server has: a press or a fall (once its cancel window is over)
        opens a call to the centre; the self-test's alarm opens the installer's test call."""
        if self.voice is None or self.speakerphone != "ok":
            return
        if (
            body.get("kind") in (AlarmKind.BUTTON, AlarmKind.FALL)
            and body.get("severity", Severity.CRITICAL) == Severity.CRITICAL
        ):
            self.voice.start_call(alarm_id, test=bool(body.get("test")))

    # ------------------------------------------------------------ device messages

    async def _handle_watched(self, topic: str, payload: bytes) -> None:
        """`handle_message` for the device link, watched: one message's handling that never
        ends (a hung disk under SQLite) makes the hub unhealthy (`gateway.watchdog`)."""
        self.health.promise("device-link", STUCK_AFTER_S)
        try:
            await self.handle_message(topic, payload)
        except sqlite3.DatabaseError as e:
            if not is_storage_error(e):
                raise  # this message's own doing: the poison rule may drop it
            await self._store_failed(e, counted=True)
            raise Unhandled(f"store failed: {type(e).__name__}: {e}") from e
        else:
            if self._store_failures:
                self._store_failures = 0
                self.health.trouble("device-link", None)
                log.info("hub store works again")
        finally:
            self.health.idle("device-link")  # the next message may take hours to come

    def _store_watched(self, body: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A loop whose store failed checks whether the store is damaged before it is
        restarted (`keep_running` counts its failures for the watchdog)."""

        async def watched() -> None:
            try:
                await body()
            except sqlite3.DatabaseError as e:
                if is_storage_error(e):
                    await self._store_failed(e, counted=False)
                raise

        return watched

    async def _store_failed(self, error: sqlite3.DatabaseError, counted: bool) -> None:
        """A damaged store stops the hub (exit non-zero: the next start sets the store aside
        and begins a fresh one; the broker redelivers the unacknowledged presses). A sound
        store that keeps failing (disk full, I/O errors) makes the hub unhealthy, so the
        watchdog stops and systemd restarts it; the press is never acknowledged and dropped."""
        problem = await self.store.check()
        if problem is not None:
            log.error(
                "hub store failed its integrity check (%s) after %s: %s; stopping the hub,"
                " the next start sets the store aside",
                problem,
                type(error).__name__,
                error,
            )
            damaged = StoreDamaged(problem)
            if self._stopped is None:
                raise damaged from error
            if not self._stopped.done():
                self._stopped.set_exception(damaged)
            return
        if not counted:
            return
        self._store_failures += 1
        log.error(
            "hub store error (%d in a row, the store itself checks sound): %s: %s",
            self._store_failures,
            type(error).__name__,
            error,
        )
        if self._store_failures >= self.settings.mqtt_max_handler_failures:
            self.health.trouble(
                "device-link", f"store failing {self._store_failures} times in a row: {error}"
            )

    async def _report_store_damage(self, damage: StoreDamage) -> None:
        """Tell the server (the health board) that the store was set aside: alarms it held
        may be lost. Queued in the fresh store's outbox like any fault."""
        now = self.clock.now_ms()
        moved = ", ".join(p.name for p in damage.moved) or "nothing, it was gone"
        report = api.HubFaultReport(
            report_id=new_alarm_id(),
            fault=api.HUB_STORE_DAMAGED,
            active=True,
            at_ms=now,
            detail=f"{damage.problem}; set aside: {moved}"[:200],
        )
        await self.store.enqueue(
            OutboxKind.FAULT, report.report_id, report.model_dump(mode="json"), now
        )
        await self.store.put(STORE_DAMAGE_KEY, json.dumps([str(p) for p in damage.moved]))
        log.error("fault hub_store_damaged raised (%s): queued for the server", damage.problem)

    def _damage_files_gone(self) -> bool:
        return not any(Path(f).exists() for f in self._damage_files)

    async def _clear_store_damage(self) -> None:
        """The fault clears once a person removed every file the damaged store was set aside
        as (having looked at them): never by itself."""
        if not self._damage_files or not self._damage_files_gone():
            return
        now = self.clock.now_ms()
        report = api.HubFaultReport(
            report_id=new_alarm_id(),
            fault=api.HUB_STORE_DAMAGED,
            active=False,
            at_ms=now,
            detail="the set-aside store was removed",
        )
        await self.store.enqueue(
            OutboxKind.FAULT, report.report_id, report.model_dump(mode="json"), now
        )
        await self.store.put(STORE_DAMAGE_KEY, "[]")
        self._damage_files = []
        self._queued(OutboxKind.FAULT)
        log.info("fault hub_store_damaged cleared: the set-aside store was removed")

    def is_known(self, device_id: str) -> bool:
        return self.core.is_known(device_id)

    async def handle_message(self, topic: str, payload: bytes) -> None:
        """Validate and route one device message; bad input is logged and dropped. Returns
        once a button event is committed and acked (the device link PUBACKs after)."""
        if self.zigbee is not None and self.zigbee.owns(topic):
            return await self._on_zigbee(topic, payload)
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
        if not self.core.admit(parsed.device_id):  # before any work
            return self._drop(topic, parsed.device_id, "over_rate", "over its rate limit")
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
            if not message.replayed:  # late frames are not today's movement
                self.core.daily.frame(now, message)
            run = selftest_run(self.selftest, device_id, now)
            for fall in self.core.falls.push(device_id, message, now, run):
                await self.on_fall(device_id, fall)
        elif isinstance(message, VitalsReading):
            self.core.daily.vitals(now, message)
            for event in self.core.vitals.push(device_id, message, now):
                await self.on_vitals(device_id, event)
        elif isinstance(message, DeviceStatus):
            self._ha(lambda ha: ha.status(device_id, message.battery, message.rssi))
            if message.battery is not None:
                self.core.daily.battery(now, message.battery)
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
            known = (
                "known from now on"
                if self.core.device_paired(event.device_id, event.kind)
                else "already known from the server's config"
            )
            log.info("device %s (%s) paired: %s", event.device_id, event.kind, known)
            if ble_pairing.is_bluetooth_id(event.device_id):  # heard through its bridge
                self.core.supervisor.by_availability([event.device_id], ble_pairing.SILENCE_MS)
            self._ha_pair()
            self._config_wake.set()
        elif event.event == "device_removed" and event.device_id:
            self.core.device_removed(event.device_id)
            if self.zigbee is not None:
                self.zigbee.forget(event.device_id)
            log.info("device %s removed: no longer listened to", event.device_id)
            self._ha_pair()
            self._config_wake.set()

    async def _on_zigbee(self, topic: str, payload: bytes) -> None:
        """A message of Zigbee2MQTT (docs/devices.md): a call is raised as a press is, a
        radar's fall as a pendant's (cancel window and all), a sensor's activity is stored
        on the hub, battery and availability feed supervision."""
        assert self.zigbee is not None
        now = self.clock.now_ms()
        supervisor = self.core.supervisor
        before = self.zigbee.devices
        events = self.zigbee.handle(topic, payload, self.core.is_paired, now)
        if self.zigbee.devices != before:  # a new list: kept for the next start
            await self.store.put(ZIGBEE_DEVICES_KEY, self.zigbee.known())
            for device_id in self.zigbee.missing(self.core.paired_ids()):
                log.warning("paired zigbee device %s is not in Zigbee2MQTT's list", device_id)
                await self._faults(
                    supervisor.last_will(
                        device_id, now, "not in zigbee2mqtt's device list: pair it again"
                    )
                )
        supervisor.by_availability(self.zigbee.zigbee_ids(), zigbee_bridge.SILENCE_MS)
        for device_id, event in events:
            if isinstance(event, Call):  # no ack to hear: never the check-in
                self.core.daily.press(now)
                alarm = self.core.call_alarm(device_id)
                details = {"zigbee_action": event.action, **self._test_marks(device_id)}
                await self.raise_alarm(alarm, None, details, ack=False)
            elif isinstance(event, RadarFall):
                log.info(
                    "fall reported by radar %s (%s=%s); cancel window %.0f s",
                    device_id,
                    event.key,
                    event.value,
                    self.settings.fall_cancel_window_s,
                )
                details = {"sensor": "zigbee2mqtt", event.key: event.value}
                self.core.daily.fall(now)
                await self._commit_fall(
                    device_id, self.core.plan_sensor_fall(device_id, now, details)
                )
            elif isinstance(event, Heard):
                self._ha_online(device_id, True)
                await self._faults(supervisor.seen(device_id, now))
            elif isinstance(event, Activity):
                await self.store.record_activity(device_id, event.kind, now)
                self.core.daily.activity(now)
                log.info("activity on %s: %s", device_id, event.kind)
            elif isinstance(event, BatteryLevel):
                self.core.daily.battery(now, event.pct)
                await self._faults(supervisor.battery(device_id, event.pct))
            elif isinstance(event, Online):
                self._ha_online(device_id, event.online)
                log.info("zigbee device %s %s", device_id, "online" if event.online else "offline")
                changes = (
                    supervisor.seen(device_id, now)
                    if event.online
                    else supervisor.last_will(device_id, now, event.why)
                )
                await self._faults(changes)

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
        """Count a refused message; log it only among its device's first lines this minute
        (`LogThrottle`: the rest are summarised by `_log_summaries`)."""
        self.dropped += 1
        metrics.MESSAGES_DROPPED.labels(reason).inc()
        if self.core.log_throttle.note(device_id, reason):
            log.warning("dropped message on %s (device %s): %s", topic, device_id, detail)

    def _log_summaries(self) -> None:
        """One line per device per minute for what `_drop` and joined presses did not log."""
        for s in self.core.log_throttle.summaries():
            log.warning(
                "device %s: %d more messages in the last %.0f s not logged one by one (%s)",
                s.device_id,
                s.total,
                s.period_s,
                ", ".join(f"{reason} {n}" for reason, n in sorted(s.suppressed.items())),
            )

    async def _send(self, acks: Acks) -> None:
        """Publish state acks; one the broker did not take is kept (`PendingAcks`, in the
        store) and sent again by `_resend_acks` once the broker is back."""
        changed = False
        async with self._acks_lock:
            for device_id, ack in acks:
                if await self.link.send_ack(device_id, ack):
                    changed = self.pending_acks.sent(device_id, ack) or changed
                    continue
                self.pending_acks.failed(device_id, ack)
                changed = True
                log.warning(
                    "ack %s of alarm %s to %s not sent; kept to send again",
                    ack.state,
                    ack.alarm_id,
                    device_id,
                )
        if changed:
            await self.store.put(PENDING_ACKS_KEY, self.pending_acks.dumps())
            if self.pending_acks:
                self._acks_wake.set()

    async def _resend_acks(self) -> None:
        """Send the kept acks again, oldest first, whenever the broker is connected."""
        while True:
            await self._acks_wake.wait()
            await self.link.connected.wait()
            self._acks_wake.clear()
            async with self._acks_lock:
                for device_id, ack in self.pending_acks.items():
                    if not await self.link.send_ack(device_id, ack):
                        self._acks_wake.set()
                        break
                    self.pending_acks.sent(device_id, ack)
                    log.info(
                        "kept ack %s of alarm %s sent to %s", ack.state, ack.alarm_id, device_id
                    )
            await self.store.put(PENDING_ACKS_KEY, self.pending_acks.dumps())
            if self._acks_wake.is_set():
                await asyncio.sleep(1.0)  # the link says connected but could not publish

    def _queued(self, kind: OutboxKind) -> None:
        """Wake the outbox; an alarm also cuts a running backoff short."""
        if self.core.queued(kind):
            self._alarm_wake.set()
        self._outbox_wake.set()

    async def on_button(self, device_id: str, event: ButtonEvent) -> None:
        if not self.core.admit_press(device_id, event.seq):  # before the lookup; unanswered
            topic = self.topics.device(device_id, Channel.BUTTON)
            return self._drop(topic, device_id, "over_rate", "presses over its rate limit")
        stored = await self.store.stored_event(device_id, event.seq)
        if classify(event, stored, int(self.settings.dedup_window_s * 1000)) == "duplicate":
            assert stored is not None
            await self._reack(device_id, event.seq, stored.alarm_id)
        elif event.action == "press":
            marks = self._test_marks(device_id)
            now = self.clock.now_ms()
            if self.settings.merge_repeats and not marks:
                open_alarm = await self.store.open_alarm_of(
                    device_id, AlarmKind.BUTTON, unless_marked=TEST_MARK
                )
                if open_alarm is not None:
                    self.core.daily.press(now)
                    return await self._join(device_id, event, open_alarm)
            if not marks and self.core.daily.check_in_press(device_id, event.seq, now, event.ts):
                return await self._check_in(device_id, event, now)
            if not marks:
                self.core.daily.press(now)
            alarm = self.core.press_alarm(device_id, event)
            await self.raise_alarm(alarm, event.ts, marks)
        else:
            await self._cancel(device_id, event, self.clock.now_ms())

    async def _check_in(self, device_id: str, event: ButtonEvent, now: int) -> None:
        """The day's check-in: kept (before the ack), acked `checked_in`, nobody called."""
        await self._save_daily(now, force=True)
        await self.store.record_event(device_id, event.seq, event.ts, None, now)
        log.info("daily check-in by press %d of %s", event.seq, device_id)
        await self.link.send_ack(
            device_id, Ack(v=1, seq=event.seq, alarm_id=None, state=AckState.CHECKED_IN)
        )

    async def _join(self, device_id: str, event: ButtonEvent, alarm: HubAlarm) -> None:
        """A press while the device's alarm is open joins it (counted on it, the first and
        then one a minute told to the server as a repeat) and hears the alarm's state."""
        now = self.clock.now_ms()
        upload = None
        if self.core.repeat_upload_due(alarm.id, now):
            repeat = self.core.press_alarm(device_id, event)
            upload = (repeat.id, upload_body(repeat, event.ts, {"joins": alarm.id}))
        joined = await self.store.join_alarm(device_id, event.seq, event.ts, alarm.id, now, upload)
        if upload is not None:
            self._queued(OutboxKind.ALARM)
        if self.core.log_throttle.note(device_id, "press_joined"):
            log.info(
                "press %d of %s joined its open alarm %s (%d joined)",
                event.seq,
                device_id,
                alarm.id,
                joined,
            )
        state = ACK_FOR_STATE[alarm.state]
        await self.link.send_ack(device_id, Ack(v=1, seq=event.seq, alarm_id=alarm.id, state=state))

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
                Ack(v=1, seq=alarm.seq, alarm_id=alarm.id, state=self.core.new_alarm_ack(alarm)),
            )

    async def _cancel(self, device_id: str, event: ButtonEvent, now: int) -> None:
        if self.voice is not None and self.voice.busy:  # the elder hangs up
            await self.voice.hang_up()
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
        if alarm is None and self.core.daily.was_check_in(device_id, seq):
            state = AckState.CHECKED_IN
        if alarm is not None and alarm.id in self.core.refusal.told:
            state = AckState.NOT_DELIVERED
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
        self.core.daily.fall(now)
        log.info(
            "fall detected on %s (peak %.1f g, score %.2f, %d ms after the impact);"
            " cancel window %.0f s",
            device_id,
            fall.peak_g,
            fall.score,
            plan.details["late_by_ms"],
            self.settings.fall_cancel_window_s,
        )
        await self._commit_fall(device_id, plan)

    async def _commit_fall(self, device_id: str, plan: FallPlan) -> None:
        """A fall (a pendant's or a radar's) is raised after its cancel window, persisted
        meanwhile so a restart keeps it; the home's buttons hear `pending` until then."""
        now = self.clock.now_ms()
        if marks := self._test_marks(device_id):
            plan = dataclasses.replace(plan, details={**plan.details, **marks})
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
        """Device faults, silent pendants, the vitals tick, the elder's day, pruning and the
        outbox bound."""
        now = self.clock.now_ms()
        core = self.core
        await self._faults(core.supervisor.tick(now))
        await self.daily_pass(now)
        await self._clear_store_damage()
        self._log_summaries()
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

    async def daily_pass(self, now: int) -> None:
        """The elder's day (`gateway.daily_watch`): queue the summary of each day that is over
        (once: idempotent by day), raise the welfare checks due, keep the running state."""
        daily = self.core.daily
        daily.near_falls(now, self.core.falls.take_near_falls())
        config = self.core.config
        devices = [(d.device_id, str(d.kind)) for d in config.devices] if config else []
        tick = daily.tick(now, devices)
        for day, summary in tick.closed:
            body = summary.model_dump(mode="json")
            if await self.store.close_day(day.day, day.dumps(), body, now):
                log.info("daily summary of %s queued (complete: %s)", day.day, summary.complete)
                self._queued(OutboxKind.SUMMARY)
        for day_forgotten in tick.forgotten:
            log.warning(
                "day %s is too old to summarise (the clock was wrong?): forgotten", day_forgotten
            )
            await self.store.forget_open_day(day_forgotten)
        if tick.closed:
            keep = date.fromisoformat(tick.closed[-1][0].day) - timedelta(days=KEEP_DAYS)
            await self.store.forget_days(keep.isoformat())
        for welfare in tick.welfare:
            alarm = HubAlarm(
                id=new_alarm_id(),
                device_id=welfare.device_id,
                seq=None,
                kind=AlarmKind.WELFARE,
                severity=Severity.WARNING,
                state=AlarmState.RECEIVED,
                raised_at_ms=now,
            )
            log.info("welfare check %s raised (%s)", alarm.id, welfare.reason)
            await self.raise_alarm(alarm, None, welfare.details, ack=False)
        await self._save_daily(now, force=bool(tick.closed or tick.welfare))

    async def _save_daily(self, now: int, force: bool = False) -> None:
        daily = self.core.daily
        if daily.dirty(now, force):
            days = [(d.day, d.dumps()) for d in daily.open_days()]
            await self.store.save_days(days, daily.still.dumps(), now)

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
            entry = await self.store.next_pending(self.core.outbox_after)
            if entry is None:
                attempt = 0
                self.core.outbox_empty()
                self._outbox_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox_wake.wait(), 5.0)
                continue
            self._alarm_wake.clear()  # an alarm queued from now on cuts the wait short
            if self.busy.holds(entry.kind):  # the server asked for rest; alarms come first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._alarm_wake.wait(), min(self.busy.wait_s(), 5.0))
                continue
            self.core.outbox_after = entry.device_id  # the next device's turn comes next
            try:
                answer = await self.uplink.send(entry.kind, entry.body)
            except UplinkError as e:
                if e.retry_after_s is not None and entry.kind not in KEPT_KINDS:
                    log.info(
                        "server busy: %s %s waits %.0f s", entry.kind, entry.ref, e.retry_after_s
                    )
                    self.busy.told(e.retry_after_s)
                    continue
                if e.refused:
                    await self._credential_refused(e)
                elif not e.retryable:
                    await self._refused_for_good(entry, e)
                    continue
                await self.store.mark_attempt(entry.id)
                metrics.UPLOAD_FAILURES.inc()
                delay = self.core.retry_delay(entry.kind, attempt)
                attempt += 1
                (log.debug if e.refused else log.warning)(  # refused: said above, rate-limited
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
            self._credential_accepted()
            await self.store.mark_sent(entry.id, self.clock.now_ms())
            if entry.kind is OutboxKind.ALARM:
                self._call_for(entry.ref, entry.body)
            if entry.kind is OutboxKind.ALARM and answer and "state" in answer:
                await self.apply_server_state(entry.ref, AlarmState(answer["state"]))
                if self.core.refusal.delivered(entry.ref):  # told not_delivered: now the truth
                    await self._tell_state(entry.ref)

    async def _credential_refused(self, e: UplinkError) -> None:
        """The server refuses the hub's credential: said once (then every few minutes) in
        the log, always in the systemd STATUS line; every alarm it does not have is told to
        its devices as `not_delivered`. The outbox keeps them all and backs off."""
        now = self.clock.now_ms()
        refusal = self.core.refusal
        waiting = await self.store.unsent_alarms()
        if refusal.refused_by(e.status or 0, now):
            log.error(
                "server refuses this hub's credential (HTTP %s): %d alarms not delivered, kept"
                " and retried; the elder's devices are told. Re-enroll the hub"
                " (carehub hub enroll) or ask the office",
                e.status,
                len(waiting),
            )
        elif refusal.log_due(now):
            log.error(
                "server still refuses this hub's credential (HTTP %s): %d alarms not delivered",
                e.status,
                len(waiting),
            )
        for alarm in waiting:
            if refusal.to_tell([alarm.id]):
                log.warning("alarm %s not delivered: %s told", alarm.id, alarm.device_id)
                await self._send(self.core.undelivered_acks(alarm))

    def _credential_accepted(self) -> None:
        if self.core.refusal.accepted():
            log.warning("server accepts this hub's credential again: delivering what waits")
            self._alarm_wake.set()  # the outbox stops waiting out its backoff

    async def _refused_for_good(self, entry: OutboxEntry, e: UplinkError) -> None:
        """The server refused an entry for good (a 4xx other than the credential's). An
        alarm is sent again in its minimal form (who, what, when), which any server takes;
        refused even so, it stays on the hub and its devices hear `not_delivered`."""
        if entry.kind is OutboxKind.ALARM:
            minimal = minimal_upload(entry.body, e.status)
            if minimal is not None:
                log.error(
                    "server refused alarm %s for good (%s): sending it again without its details",
                    entry.ref,
                    e,
                )
                await self.store.replace_body(entry.id, minimal)
                return
        log.error("server refused %s %s for good, kept on the hub: %s", entry.kind, entry.ref, e)
        await self.store.mark_rejected(entry.id, str(e))
        alarm = await self.store.alarm(entry.ref) if entry.kind is OutboxKind.ALARM else None
        if alarm is not None and self.core.refusal.to_tell([alarm.id]):
            await self._send(self.core.undelivered_acks(alarm))

    async def _tell_state(self, alarm_id: str) -> None:
        alarm = await self.store.alarm(alarm_id)
        if alarm is not None:
            await self._send(self.core.state_acks(alarm, alarm.state))

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
                speakerphone=self.speakerphone,
            )
            try:
                await self.uplink.heartbeat(beat)
            except UplinkError as e:
                log.debug("heartbeat not sent: %s", e)
                if e.refused:  # seen here too when no alarm waits in the outbox
                    await self._credential_refused(e)
                if e.retry_after_s is not None:
                    self.busy.told(e.retry_after_s)
            else:
                self._credential_accepted()
            # ±20 % jitter: hubs that started together (a district's power came back, a
            # server restart) must not keep beating in step, a burst of writes every interval
            await asyncio.sleep(
                self.busy.next_heartbeat_s(
                    self.settings.heartbeat_interval_s * self.core.rng.uniform(0.8, 1.2)
                )
            )


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the loops and wait for them, cancelling again any that swallowed it (Python
    3.11's `asyncio.wait_for` loses a cancellation that meets its inner task's end): a hub
    stopping on a damaged store must exit, not hang."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
