"""The hub's decisions (`gateway.hub_core`), with a fake clock: no sockets, no disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.api_contract import CarePlan, DeviceConfig, HubConfig
from carehub.clock import FakeClock
from carehub.mqtt_contract import AckState, ButtonEvent, ImuFrame
from carehub.settings import HubSettings
from edge.fall_detection import FallEvent
from firmware_sim.pendant import synthetic_fall
from gateway.hub_core import CANCEL_HORIZON_MS, URGENT_RETRY_CAP_S, HubCore
from gateway.store import HubAlarm


def settings(**overrides: object) -> HubSettings:
    return HubSettings(hub_db=Path("unused.db"), **overrides)  # type: ignore[arg-type]


def config(*devices: tuple[str, str]) -> HubConfig:
    return HubConfig(
        hub_id="hub-1",
        elder_id="elder-1",
        care_plan=CarePlan(),
        devices=[DeviceConfig(device_id=d, kind=k) for d, k in devices],  # type: ignore[arg-type]
    )


def alarm(
    state: AlarmState = AlarmState.RECEIVED, device: str = "btn-1", at_ms: int = 0
) -> HubAlarm:
    kind = AlarmKind.FALL if state is AlarmState.PENDING_CANCEL else AlarmKind.BUTTON
    seq = None if kind is AlarmKind.FALL else 7
    return HubAlarm("a1", device, seq, kind, Severity.CRITICAL, state, at_ms)


def fall(impact_ms: int) -> FallEvent:
    return FallEvent(impact_ms, impact_ms + 7000, 4.2, 0.9, 50.0, impact_ms - 2000, [])


def test_cancel_targets_within_the_horizon_and_acks_the_right_devices() -> None:
    core = HubCore(settings(), FakeClock())
    core.apply_config(config(("btn-1", "button"), ("btn-2", "button"), ("pend-1", "pendant")))
    cancel = ButtonEvent(v=1, seq=3, ts=1, action="cancel")
    assert HubCore.cancel_since(10 * CANCEL_HORIZON_MS) == 9 * CANCEL_HORIZON_MS

    nothing = core.plan_cancel("btn-2", cancel, None, 0)
    assert nothing.target is None and nothing.report is None
    assert [(d, a.alarm_id, a.state) for d, a in nothing.acks] == [
        ("btn-2", None, AckState.CANCELLED)
    ]

    other = core.plan_cancel("btn-2", cancel, alarm(), 5)
    assert other.report is not None and other.report.state is AlarmState.CANCELLED
    assert [(d, a.seq, a.state) for d, a in other.acks] == [
        ("btn-2", 3, AckState.CANCELLED),  # the cancelling button
        ("btn-1", 7, AckState.CANCELLED),  # the button whose press raised the alarm
    ]

    pending = alarm(AlarmState.PENDING_CANCEL, device="pend-1")
    core.track_pending(pending)
    local = core.plan_cancel("btn-1", cancel, pending, 5)
    assert local.local and local.report is None  # never left the hub: nothing to upload
    assert [d for d, _ in local.acks] == ["btn-1", "pend-1", "btn-2"]


def test_a_fall_waits_its_window_reminds_the_home_and_is_retried_when_raising_fails() -> None:
    clock = FakeClock()
    core = HubCore(settings(fall_cancel_window_s=30, pending_ack_every_s=5), clock)
    t0 = clock.now_ms()
    core.track_pending(alarm(AlarmState.PENDING_CANCEL, "pend-1", at_ms=t0))

    first = core.fall_windows(t0)
    assert first.due == [] and [left for _, left in first.reminders] == [30]
    assert first.wake_at_ms == t0 + 5000
    assert core.fall_windows(t0 + 4000).reminders == []  # next reminder after 5 s
    assert [left for _, left in core.fall_windows(t0 + 5500).reminders] == [25]

    due = core.fall_windows(t0 + 30_000).due
    assert [a.id for a in due] == ["a1"] and core.pending == {}
    core.fall_not_raised(due[0], t0 + 30_000)  # the store failed: keep the window
    assert core.fall_windows(t0 + 30_500).due == []
    assert [a.id for a in core.fall_windows(t0 + 31_000).due] == ["a1"]


def test_late_by_is_decision_time_minus_impact_on_the_hub_clock() -> None:
    clock = FakeClock()
    core = HubCore(settings(fall_cancel_window_s=0), clock)
    now = clock.now_ms()
    plan = core.plan_fall("pend-1", fall(impact_ms=now - 600_000), now)  # hub-clock impact
    assert plan.details["late_by_ms"] == 600_000  # ten minutes of replayed frames
    assert plan.details["impact_ts_ms"] == now - 600_000
    assert not plan.pending and plan.alarm.state is AlarmState.RECEIVED


def test_outbox_bound_shrinks_only_near_a_full_disk() -> None:
    core = HubCore(settings(outbox_max_entries=1000, min_free_disk_mb=50), FakeClock())
    assert (core.outbox_bound(500, 400).entries, core.outbox_bound(500, 400).disk_low) == (
        1000,
        False,
    )
    low = core.outbox_bound(10, 400)
    assert low.disk_low and low.entries == 360  # a tenth less per pass
    assert core.outbox_bound(10, 5000).entries == 1000  # never above the configured bound


def test_pruning_runs_on_the_first_pass_then_hourly() -> None:
    core = HubCore(settings(retention_days=30), FakeClock())
    day = 86_400_000
    assert core.prune_before(100 * day) == 70 * day
    assert core.prune_before(100 * day + 3_599_999) is None
    assert core.prune_before(100 * day + 3_600_000) == 70 * day + 3_600_000


def test_a_device_removed_from_the_config_is_no_longer_supervised_or_accepted() -> None:
    clock = FakeClock()
    core = HubCore(settings(device_offline_after_s=60), clock)
    assert core.is_known("anything")  # no config yet: never ignore an elder
    first = core.apply_config(config(("btn-1", "button"), ("pend-1", "pendant")))
    assert first.changed and first.removed == []
    frame = ImuFrame(v=1, seq=1, t0=clock.now_ms(), hz=50, acc=[[0, 0, 1]] * 50)
    core.falls.push("pend-1", frame, clock.now_ms())
    assert not core.apply_config(config(("btn-1", "button"), ("pend-1", "pendant"))).changed

    change = core.apply_config(config(("btn-1", "button")))
    assert change.removed == ["pend-1"] and not core.is_known("pend-1")
    clock.advance(61)
    assert [c.device_id for c in core.supervisor.tick(clock.now_ms())] == ["btn-1"]
    assert core.falls.silent(clock.now_ms(), 5000) == []
    assert core.falls.stream_ended("pend-1") == []  # its detector is gone


@given(attempt=st.integers(0, 200))
def test_an_alarm_at_the_head_retries_within_the_fast_cap(attempt: int) -> None:
    core = HubCore(settings(retry_initial_s=0.2, retry_max_s=30), FakeClock())
    for kind in ("alarm", "report"):
        assert 0 <= core.retry_delay(kind, attempt) <= URGENT_RETRY_CAP_S


def test_faults_back_off_to_the_normal_cap_unless_an_alarm_waits_behind_them() -> None:
    core = HubCore(settings(retry_initial_s=0.2, retry_max_s=30), FakeClock())
    slow = [core.retry_delay("fault", 20) for _ in range(200)]
    assert min(slow) >= 15 and max(slow) <= 30
    assert not core.queued("fault")
    assert core.queued("alarm")  # an alarm queued behind the fault: cut the wait short
    assert max(core.retry_delay("fault", 20) for _ in range(200)) <= URGENT_RETRY_CAP_S
    core.outbox_empty()
    assert core.retry_delay("fault", 20) >= 15


def test_pendants_are_not_silent_while_the_hub_is_off_its_broker() -> None:
    """A broker outage silences every pendant at once: nothing is decided on half a signal
    while the hub is disconnected, and silence counts from its reconnection."""
    clock = FakeClock()
    core = HubCore(settings(), clock)
    acc = synthetic_fall(50, np.random.default_rng(3), lying_s=4.0)
    t0 = clock.now_ms()
    for i in range(len(acc) // 50):  # the impact, then 3-4 s lying: still a suspect
        frame = ImuFrame(
            v=1, seq=i, t0=t0 + i * 1000, hz=50, acc=acc[i * 50 : (i + 1) * 50].tolist()
        )
        clock.advance(1)
        assert core.falls.push("pend-1", frame, clock.now_ms()) == []
    clock.advance(30)  # the broker is down all along
    assert core.silent_pendants(clock.now_ms(), link_up_since_ms=None) == []
    back = clock.now_ms()
    clock.advance(4)
    assert core.silent_pendants(clock.now_ms(), link_up_since_ms=back) == []  # replays due
    clock.advance(2)  # 6 s after the reconnection and still nothing: the stream has ended
    assert [d for d, _ in core.silent_pendants(clock.now_ms(), back)] == ["pend-1"]


def test_the_accepted_ack_names_the_responder_and_no_other_state_does() -> None:
    core = HubCore(settings(), FakeClock())
    button = alarm(AlarmState.DISPATCHED)
    [(device, ack)] = core.state_acks(button, AlarmState.ACCEPTED, "Dr Li")
    assert (device, ack.state, ack.responder, ack.seq) == ("btn-1", AckState.ACCEPTED, "Dr Li", 7)
    [(_, resolved)] = core.state_acks(button, AlarmState.RESOLVED, "Dr Li")
    assert resolved.responder is None
    [(_, unknown)] = core.state_acks(button, AlarmState.ACCEPTED, None)
    assert unknown.responder is None
    [(_, long_name)] = core.state_acks(button, AlarmState.ACCEPTED, "x" * 100)
    assert long_name.responder == "x" * 64
