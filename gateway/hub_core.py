"""The hub's decisions, synchronous and clock-injected; `gateway.hub` only moves bytes.

Everything here takes plain data and returns plain data (alarms to commit, acks to send,
delays to wait), so each rule is tested in milliseconds with a `FakeClock`:
fall windows and their due times, which alarm a cancel press targets, which device hears
which ack, fault reports, the outbox bound near a full disk, the pruning cadence, what a
config change means, and how long the outbox waits before retrying the server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.api_contract import (
    AlarmStateReport,
    AlarmUpload,
    FaultReport,
    HubConfig,
    storable_details,
)
from carehub.clock import Clock
from carehub.mqtt_contract import (
    RESPONDER_MAX_CHARS,
    Ack,
    AckState,
    ButtonEvent,
    SelftestMode,
)
from carehub.settings import HubSettings
from edge.fall_detection import FallEvent
from gateway.daily_watch import DailyWatch
from gateway.device_clock import DeviceClock
from gateway.device_limits import (
    MESSAGE_BURST,
    MESSAGE_RATE_PER_S,
    PRESS_BURST,
    PRESS_RATE_PER_S,
    DeviceRateLimiter,
    LogThrottle,
    PressLimiter,
)
from gateway.fall_watch import FallWatch
from gateway.intake import Backoff, new_alarm_id
from gateway.refusal import Refusal
from gateway.store import KEPT_KINDS, HubAlarm, OutboxKind
from gateway.supervision import FaultChange, Supervisor
from gateway.vitals_watch import VitalsWatch

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
IMU_SILENCE_MS = 5000
"""A pendant silent this long has stopped streaming: its suspected falls are decided."""
PRUNE_EVERY_MS = 3_600_000
"""Retention pruning runs at most hourly (it is a scan of the whole store)."""
FALL_RETRY_MS = 1000
"""A fall whose window ran out but could not be committed is tried again this much later."""
REPEAT_UPLOAD_EVERY_MS = 60_000
"""Joined presses of one alarm are told to the server at most this often (the first at once):
the dispatcher sees the elder pressed again; the hub counts every one."""
URGENT_RETRY_CAP_S = 1.5
"""Retry cap while an alarm (or alarm report) waits: a returning server sees it in < 2 s."""

Acks = list[tuple[str, Ack]]
"""(device id, ack) pairs for the shell to publish, in order."""


TEST_MARK = "selftest"
"""Key in an alarm's stored details marking it as raised during an installer's self-test;
kept with the evidence, so a fall raised after its window is still uploaded as a test."""


def upload_body(
    alarm: HubAlarm, event_ts_ms: int | None, details: dict[str, Any]
) -> dict[str, Any]:
    """The outbox body that uploads `alarm` (its id is the server's idempotency key)."""
    test = details.get(TEST_MARK) is True
    return AlarmUpload(
        alarm_id=alarm.id,
        device_id=alarm.device_id,
        kind=alarm.kind,
        severity=alarm.severity,
        seq=alarm.seq,
        raised_at_ms=alarm.raised_at_ms,
        event_ts_ms=event_ts_ms,
        details=storable_details({k: v for k, v in details.items() if k != TEST_MARK}),
        test=test,
    ).model_dump(mode="json")


def selftest_marks(mode: SelftestMode | None, device_id: str, now_ms: int) -> dict[str, Any]:
    """The details that mark an alarm of `device_id` as a self-test's, when a self-test
    announced on the bridge covers that device now; else none. Bounded in time by the
    self-test's own deadline, so a forgotten retained mode cannot turn real alarms into tests."""
    if mode is None or not mode.active or mode.until_ms is None or now_ms >= mode.until_ms:
        return {}
    return {TEST_MARK: True} if device_id in mode.devices else {}


def selftest_run(mode: SelftestMode | None, device_id: str, now_ms: int) -> int | None:
    """The self-test covering `device_id` now, named by its deadline (one per run), or None:
    what `FallWatch.push` needs to tell the self-test's drop from an elder's fall."""
    if mode is None or not selftest_marks(mode, device_id, now_ms):
        return None
    return mode.until_ms


@dataclass(frozen=True)
class FallPlan:
    """A detected fall: commit `alarm`; `pending` means it waits its cancel window first;
    `selftest_drop`: the installer's drop, kept on the hub (cancelled) and never uploaded."""

    alarm: HubAlarm
    event_ts_ms: int
    details: dict[str, Any]
    pending: bool
    selftest_drop: bool = False


@dataclass
class PendingFall:
    alarm: HubAlarm
    due_ms: int
    next_ack_ms: int = 0


@dataclass(frozen=True)
class WindowsPass:
    """One look at the running fall windows (hub clock, epoch ms)."""

    due: list[HubAlarm]
    """Windows that ran out: raise these now (no longer tracked; `fall_not_raised` on failure)."""
    reminders: list[tuple[HubAlarm, int]]
    """(alarm, whole seconds left) to tell the home."""
    wake_at_ms: int


@dataclass(frozen=True)
class CancelPlan:
    """What a cancel press does: `new_state` for `target` (None: nothing to cancel), the
    report to upload (None when the alarm never left the hub) and the acks to send."""

    target: HubAlarm | None
    report: AlarmStateReport | None
    acks: Acks
    local: bool = False
    """The target was a fall still in its cancel window: cancelled on the hub only."""


@dataclass(frozen=True)
class ConfigChange:
    changed: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutboxBound:
    entries: int
    disk_low: bool


class HubCore:
    """The hub's state that is not on disk (detectors, supervision, running fall windows,
    the current config) and every decision made from it."""

    def __init__(
        self, settings: HubSettings, clock: Clock, rng: random.Random | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.config: HubConfig | None = None
        self.paired: dict[str, str] = {}
        """Devices paired on this hub (id → kind), from the broker's accounts and the bridge's
        events: known at once, before the server's config lists them."""
        tolerance_ms = int(settings.device_clock_tolerance_s * 1000)

        def device_clock() -> DeviceClock:
            return DeviceClock(ahead_ms=tolerance_ms, behind_ms=tolerance_ms)

        self.falls = FallWatch(device_clock=device_clock)
        self.vitals = VitalsWatch(device_clock=device_clock)
        self.supervisor = Supervisor(
            int(settings.device_offline_after_s * 1000), settings.battery_low_pct
        )
        self.pending: dict[str, PendingFall] = {}
        self.backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
        self.refusal = Refusal()
        """Whether the server refuses the hub's credential; who heard `not_delivered`."""
        self.alarm_queued = False
        """An alarm or alarm report was queued since the outbox was last seen empty."""
        self._last_prune_ms: int | None = None
        self.messages_limit = DeviceRateLimiter(clock, MESSAGE_RATE_PER_S, MESSAGE_BURST)
        self.presses_limit = PressLimiter(clock, PRESS_RATE_PER_S, PRESS_BURST)
        self.log_throttle = LogThrottle(clock)
        self.outbox_after: str | None = None
        """The device whose outbox entry was tried last (the outbox serves devices in turn)."""
        self._repeat_told_ms: dict[str, int] = {}
        self.daily = DailyWatch()
        """The elder's day: summary aggregates, the check-in, the inactivity rules."""

    # ------------------------------------------------------------ devices and config

    def is_known(self, device_id: str) -> bool:
        """Devices paired with this hub; before any config is known, accept every device
        rather than ignore an elder's call."""
        if self.config is None or device_id in self.paired:
            return True
        return any(d.device_id == device_id for d in self.config.devices)

    def is_paired(self, device_id: str) -> bool:
        """Paired for certain, with no benefit of the doubt before a config is known: what a
        Zigbee device needs, since anyone can join one to Zigbee2MQTT outside a window."""
        if device_id in self.paired:
            return True
        return self.config is not None and any(
            d.device_id == device_id for d in self.config.devices
        )

    def paired_ids(self) -> list[str]:
        """Every device paired here: on this hub's accounts or in the server's config."""
        listed = [d.device_id for d in self.config.devices] if self.config else []
        return sorted(set(self.paired) | set(listed))

    def device_paired(self, device_id: str, kind: str) -> bool:
        """A device paired here; True when it is new to the hub."""
        new = device_id not in self.paired
        self.paired[device_id] = kind
        self.supervisor.expect([device_id], self.clock.now_ms())
        return new

    def device_removed(self, device_id: str) -> None:
        """Unpaired here: forgotten now (the server's config follows on the next refresh)."""
        self.paired.pop(device_id, None)
        self.messages_limit.forget(device_id)
        self.presses_limit.forget(device_id)
        self.supervisor.forget(device_id)
        self.falls.forget(device_id)
        self.vitals.forget(device_id)

    def apply_config(self, config: HubConfig) -> ConfigChange:
        """A new config: care plan to the detectors; a device no longer listed stops being
        supervised and its detectors are forgotten (re-paired later, it starts afresh)."""
        if config == self.config:
            return ConfigChange(changed=False)
        old = {d.device_id for d in self.config.devices} if self.config else set()
        new = {d.device_id for d in config.devices}
        removed = sorted(old - new) if self.config is not None else []
        self.config = config
        for device_id in removed:
            self.supervisor.forget(device_id)
            self.falls.forget(device_id)
            self.vitals.forget(device_id)
        self.falls.set_sensitivity(config.care_plan.fall_sensitivity)
        plan = config.care_plan
        self.vitals.set_care_plan(
            plan.spo2_scale2, on_oxygen=plan.on_oxygen, channels=plan.wearable_channels
        )
        self.daily.set_care_plan(plan)
        self.supervisor.expect(sorted(new), self.clock.now_ms())
        return ConfigChange(changed=True, added=sorted(new - old), removed=removed)

    # ------------------------------------------------------------ buttons

    def press_alarm(self, device_id: str, event: ButtonEvent) -> HubAlarm:
        return HubAlarm(
            id=new_alarm_id(),
            device_id=device_id,
            seq=event.seq,
            kind=AlarmKind.BUTTON,
            severity=Severity.CRITICAL,
            state=AlarmState.RECEIVED,
            raised_at_ms=self.clock.now_ms(),
        )

    def admit(self, device_id: str) -> bool:
        """Within its device's message rate (all channels)? A message over it is dropped
        before any work, so a flood cannot delay other devices."""
        return self.messages_limit.allow(device_id)

    def admit_press(self, device_id: str, seq: int) -> bool:
        """A button event within its device's press rate (a republication of one recently
        let through always is)? Asked before any lookup; one over it is dropped unanswered
        (the firmware republishes)."""
        return self.presses_limit.allow(device_id, seq)

    def repeat_upload_due(self, alarm_id: str, now_ms: int) -> bool:
        """Tell the server about this joined press? The first of an alarm, then one a
        `REPEAT_UPLOAD_EVERY_MS` (the server counts it as a repeat of the open alarm)."""
        last = self._repeat_told_ms.get(alarm_id)
        if last is not None and now_ms - last < REPEAT_UPLOAD_EVERY_MS:
            return False
        if len(self._repeat_told_ms) >= 1000:  # bound memory: forget the oldest
            self._repeat_told_ms.pop(next(iter(self._repeat_told_ms)))
        self._repeat_told_ms[alarm_id] = now_ms
        return True

    def call_alarm(self, device_id: str) -> HubAlarm:
        """A call from a device that has no event counter (a Zigbee button through
        Zigbee2MQTT): raised like a press, without a ``seq`` to answer."""
        return HubAlarm(
            id=new_alarm_id(),
            device_id=device_id,
            seq=None,
            kind=AlarmKind.BUTTON,
            severity=Severity.CRITICAL,
            state=AlarmState.RECEIVED,
            raised_at_ms=self.clock.now_ms(),
        )

    @staticmethod
    def cancel_since(now_ms: int) -> int:
        """Only alarms raised after this (epoch ms) can be cancelled by a press."""
        return now_ms - CANCEL_HORIZON_MS

    def plan_cancel(
        self, device_id: str, event: ButtonEvent, target: HubAlarm | None, now_ms: int
    ) -> CancelPlan:
        """`target`: the newest open alarm raised since `cancel_since(now_ms)`, if any."""
        if target is None:
            return CancelPlan(None, None, [(device_id, _ack(event.seq, None, AckState.CANCELLED))])
        acks = [(device_id, _ack(event.seq, target.id, AckState.CANCELLED))]
        if target.state is AlarmState.PENDING_CANCEL:  # never left the hub: nothing to report
            self.pending.pop(target.id, None)
            acks += self.home_acks(target, AckState.CANCELLED, skip=device_id)
            return CancelPlan(target, None, acks, local=True)
        report = AlarmStateReport(
            report_id=new_alarm_id(),
            alarm_id=target.id,
            state=AlarmState.CANCELLED,
            at_ms=now_ms,
            reason=f"cancel pressed on {device_id}",
        )
        if target.device_id != device_id:
            acks.append((target.device_id, _ack(target.seq, target.id, AckState.CANCELLED)))
        return CancelPlan(target, report, acks)

    def home_acks(
        self,
        alarm: HubAlarm,
        state: AckState,
        seconds_left: int | None = None,
        skip: str | None = None,
        responder: str | None = None,
    ) -> Acks:
        """Feedback on an alarm no single press raised: its device and the home's buttons."""
        targets = [alarm.device_id] + [
            d.device_id
            for d in (self.config.devices if self.config else [])
            if d.kind == "button" and d.device_id != alarm.device_id
        ]
        return [
            (
                device_id,
                Ack(
                    v=1,
                    seq=alarm.seq if device_id == alarm.device_id else None,
                    alarm_id=alarm.id,
                    state=state,
                    seconds_left=seconds_left,
                    responder=responder,
                ),
            )
            for device_id in targets
            if device_id != skip
        ]

    def undelivered_acks(self, alarm: HubAlarm) -> Acks:
        """`not_delivered` for the devices that heard of an alarm the server does not have
        (refused): the pressed button, or the home's buttons for a fall or vitals alarm; none
        for a welfare check, which the elder's devices never hear of."""
        if alarm.kind is AlarmKind.WELFARE:
            return []
        if alarm.kind is AlarmKind.BUTTON:
            return [(alarm.device_id, _ack(alarm.seq, alarm.id, AckState.NOT_DELIVERED))]
        return self.home_acks(alarm, AckState.NOT_DELIVERED)

    def new_alarm_ack(self, alarm: HubAlarm) -> AckState:
        """What the device that raised an alarm hears first: `received` (stored on the hub,
        help is being called), or `not_delivered` while the server refuses the hub."""
        if self.refusal.refused:
            self.refusal.to_tell([alarm.id])
            return AckState.NOT_DELIVERED
        return ACK_FOR_STATE[alarm.state]

    def state_acks(self, alarm: HubAlarm, state: AlarmState, responder: str | None = None) -> Acks:
        """A state decided on the server, for the elder's devices; `responder` (who is
        coming) goes with `accepted` only. A welfare check's states are not told: the duty
        dispatcher phones the elder (docs/health-review.md)."""
        if alarm.kind is AlarmKind.WELFARE:  # the dispatcher phones; the devices stay quiet
            return []
        ack_state = ACK_FOR_STATE[state]
        who = (
            responder[:RESPONDER_MAX_CHARS] if responder and state is AlarmState.ACCEPTED else None
        )
        if alarm.kind is AlarmKind.BUTTON:
            return [(alarm.device_id, _ack(alarm.seq, alarm.id, ack_state, who))]
        return self.home_acks(alarm, ack_state, responder=who)

    # ------------------------------------------------------------ falls

    def plan_fall(self, device_id: str, fall: FallEvent, now_ms: int) -> FallPlan:
        """The alarm for a detected fall; `late_by_ms` = hub time of this decision − impact
        time (the fall watch already maps the pendant's clock onto the hub's), large for
        frames replayed after a broker outage.

        The drop a self-test asks for is detected as a fall like any other: it alarms no one
        (the self-test's one test alarm is the installer's press), see
        `FallWatch.take_selftest_drop`."""
        window_s = self.settings.fall_cancel_window_s
        drop = self.falls.take_selftest_drop(device_id, fall)
        if drop:
            state = AlarmState.CANCELLED
        else:
            state = AlarmState.PENDING_CANCEL if window_s > 0 else AlarmState.RECEIVED
        alarm = HubAlarm(
            id=new_alarm_id(),
            device_id=device_id,
            seq=None,
            kind=AlarmKind.FALL,
            severity=Severity.CRITICAL,
            state=state,
            raised_at_ms=now_ms,
        )
        details = {
            "impact_ts_ms": fall.impact_ts_ms,
            "late_by_ms": max(0, now_ms - fall.impact_ts_ms),
            "peak_g": round(fall.peak_g, 3),
            "score": round(fall.score, 3),
            "sensitivity": self.falls.sensitivity,
            "window": {"hz": fall.window_hz, "t0_ms": fall.window_t0_ms, "acc": fall.window_acc},
        }
        if drop:
            details[TEST_MARK] = True
        return FallPlan(alarm, fall.impact_ts_ms, details, window_s > 0 and not drop, drop)

    def plan_sensor_fall(self, device_id: str, now_ms: int, details: dict[str, Any]) -> FallPlan:
        """A fall a sensor decided itself (an mmWave radar through Zigbee2MQTT): the same
        alarm, cancel window and reminders as a pendant's fall; `details` say what it saw."""
        window_s = self.settings.fall_cancel_window_s
        alarm = HubAlarm(
            id=new_alarm_id(),
            device_id=device_id,
            seq=None,
            kind=AlarmKind.FALL,
            severity=Severity.CRITICAL,
            state=AlarmState.PENDING_CANCEL if window_s > 0 else AlarmState.RECEIVED,
            raised_at_ms=now_ms,
        )
        return FallPlan(alarm, now_ms, details, pending=window_s > 0)

    def track_pending(self, alarm: HubAlarm) -> None:
        """A committed fall in its window (also those found at start, windows still running)."""
        due = alarm.raised_at_ms + int(self.settings.fall_cancel_window_s * 1000)
        self.pending[alarm.id] = PendingFall(alarm, due)

    def fall_windows(self, now_ms: int) -> WindowsPass:
        """Raise each fall whose window ran out; remind the home how long is left."""
        due: list[HubAlarm] = []
        reminders: list[tuple[HubAlarm, int]] = []
        every_ms = int(self.settings.pending_ack_every_s * 1000)
        for alarm_id, p in list(self.pending.items()):
            if now_ms >= p.due_ms:
                del self.pending[alarm_id]
                due.append(p.alarm)
            elif now_ms >= p.next_ack_ms:
                p.next_ack_ms = now_ms + every_ms
                reminders.append((p.alarm, max(0, -(-(p.due_ms - now_ms) // 1000))))
        wake_at = min(
            (min(p.due_ms, p.next_ack_ms) for p in self.pending.values()), default=now_ms + 1000
        )
        return WindowsPass(due, reminders, wake_at)

    def silent_pendants(
        self, now_ms: int, link_up_since_ms: int | None
    ) -> list[tuple[str, FallEvent]]:
        """Falls decided because their pendant stopped streaming (`IMU_SILENCE_MS`).

        `link_up_since_ms`: since when the hub has been connected to its broker (None: it is
        not). Off the broker every pendant looks silent, and after a reconnection pendants
        still have to reconnect and replay what they buffered: deciding a fall then, on half
        its signal, would lose the candidates still waiting for their `POST_S`. So nothing
        is decided while disconnected, and silence counts from the reconnection at most."""
        if link_up_since_ms is None:
            return []
        return self.falls.silent(now_ms, IMU_SILENCE_MS, heard_since_ms=link_up_since_ms)

    def fall_not_raised(self, alarm: HubAlarm, now_ms: int) -> None:
        """Committing a due fall failed: keep its window and try again shortly."""
        self.pending[alarm.id] = PendingFall(alarm, now_ms + FALL_RETRY_MS, now_ms + FALL_RETRY_MS)

    # ------------------------------------------------------------ faults and housekeeping

    @staticmethod
    def fault_reports(changes: list[FaultChange], now_ms: int) -> list[FaultReport]:
        return [
            FaultReport(
                report_id=new_alarm_id(),
                device_id=c.device_id,
                fault=c.fault,
                active=c.active,
                at_ms=now_ms,
                detail=c.detail[:200],
            )
            for c in changes
        ]

    def outbox_bound(self, free_disk_mb: float, depth: int) -> OutboxBound:
        """The outbox's entry bound; below `min_free_disk_mb` it shrinks by a tenth of the
        current depth per pass (the store drops only non-alarm entries to meet it)."""
        bound = self.settings.outbox_max_entries
        if free_disk_mb < self.settings.min_free_disk_mb:
            return OutboxBound(min(bound, depth * 9 // 10), disk_low=True)
        return OutboxBound(bound, disk_low=False)

    def prune_before(self, now_ms: int) -> int | None:
        """Hourly (the first pass included): the cutoff (epoch ms) of records to forget."""
        if self._last_prune_ms is not None and now_ms - self._last_prune_ms < PRUNE_EVERY_MS:
            return None
        self._last_prune_ms = now_ms
        return now_ms - int(self.settings.retention_days * 86_400_000)

    # ------------------------------------------------------------ outbox retries

    def queued(self, kind: OutboxKind) -> bool:
        """An entry of `kind` entered the outbox; True when it should cut a backoff short."""
        if kind in KEPT_KINDS:
            self.alarm_queued = True
            return True
        return False

    def outbox_empty(self) -> None:
        self.alarm_queued = False

    def retry_delay(self, head_kind: OutboxKind, attempt: int) -> float:
        """Seconds before retrying the outbox head after failure number `attempt` (0-based).

        While an alarm waits (at the head, or queued behind it), full jitter capped at
        `URGENT_RETRY_CAP_S`, so a returning server gets it within 2 s; otherwise the normal
        exponential backoff up to `retry_max_s`. Alarms are rare, so few hubs retry fast
        (the arithmetic for 10 000 hubs is in docs/reliability.md). While the server refuses
        the hub's credential, fast retries cannot help: the normal backoff, alarms or not."""
        u = self.rng.random()
        if self.refusal.refused:  # every try fails alike until someone fixes the credential
            return self.backoff.delay(attempt, u)
        if head_kind in KEPT_KINDS or self.alarm_queued:
            initial = self.settings.retry_initial_s
            return u * min(URGENT_RETRY_CAP_S, initial * 2 ** min(attempt, 30))
        return self.backoff.delay(attempt, u)


def _ack(
    seq: int | None, alarm_id: str | None, state: AckState, responder: str | None = None
) -> Ack:
    return Ack(v=1, seq=seq, alarm_id=alarm_id, state=state, responder=responder)
