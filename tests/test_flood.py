"""Issue 20, "One device's flood delays everyone": per-device rate limits and log throttle
(pure, fake clock), presses joining their device's open alarm, and an outbox fair across
devices; the real `Hub` shell on SQLite with a fake clock and link (no broker here; the
broker-level tests are in test_flood_mqtt.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from carehub.alarm_lifecycle import AlarmState
from carehub.clock import FakeClock
from carehub.mqtt_contract import AckState, Channel, SelftestMode
from gateway.device_limits import (
    MAX_BUCKETS,
    OTHER_DEVICES,
    DeviceRateLimiter,
    LogThrottle,
    PressLimiter,
)
from gateway.outbox_order import OutboxHead, next_head
from gateway.store import OutboxKind
from tests.test_hub_shell import FakeUplink, button, make_hub


def test_a_device_over_its_rate_is_limited_and_others_are_not() -> None:
    clock = FakeClock()
    limiter = DeviceRateLimiter(clock, rate_per_s=2.0, burst=5)
    assert [limiter.allow("flood") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("other"), "each device has its own bucket"
    clock.advance(0.5)
    assert limiter.allow("flood") and not limiter.allow("flood")  # one token per 0.5 s
    clock.advance(3600)
    assert sum(limiter.allow("flood") for _ in range(10)) == 5  # refilled to the burst only
    for i in range(2 * MAX_BUCKETS):  # made-up ids before the hub knows its devices
        limiter.allow(f"junk-{i}")
    assert len(limiter._buckets) == MAX_BUCKETS


def test_new_presses_are_limited_and_republications_of_recent_ones_pass() -> None:
    clock = FakeClock()
    limiter = PressLimiter(clock, rate_per_s=2.0, burst=3, remember=2)
    assert [limiter.allow("b", seq) for seq in (1, 2, 3, 4)] == [True, True, True, False]
    assert all(limiter.allow("b", 3) for _ in range(100)), "a retry of a recent press"
    assert not limiter.allow("b", 1), "remembered: the last two only"
    clock.advance(0.5)
    assert limiter.allow("b", 5) and limiter.allow("other", 1)


def test_the_log_throttle_writes_a_devices_first_lines_then_one_summary_a_minute() -> None:
    clock = FakeClock()
    throttle = LogThrottle(clock, every_s=60, max_keys=3, first_lines=2)
    written = [throttle.note("flood", "over_rate") for _ in range(20_000)]
    assert written[:2] == [True, True] and not any(written[2:])
    assert throttle.note("flood", "not_json") and not throttle.note("flood", "not_json")
    assert throttle.note("other", "over_rate"), "another device's first line is its own"
    assert throttle.summaries() == []  # the minute is not over
    clock.advance(60)
    (summary,) = throttle.summaries()  # "other" had nothing held back: no line
    assert summary.device_id == "flood" and summary.suppressed == {
        "over_rate": 19_998,
        "not_json": 1,
    }
    assert summary.total == 19_999 and summary.period_s == 60
    assert throttle.note("flood", "over_rate"), "a new minute starts with a line again"


def test_made_up_device_ids_share_one_key_so_the_log_stays_bounded() -> None:
    throttle = LogThrottle(FakeClock(), max_keys=2, first_lines=1)
    written = [throttle.note(f"junk-{i}", "unknown_device") for i in range(1000)]
    assert sum(written) == 3  # junk-0, junk-1, then every other id as one
    assert throttle.key("junk-999") == OTHER_DEVICES


def test_the_outbox_takes_devices_in_turn_alarms_first_each_device_in_order() -> None:
    heads = [
        OutboxHead("flood", True, 1),
        OutboxHead("other", True, 6001),
        OutboxHead("pend-1", False, 5),
    ]
    assert next_head(heads, None) == 1
    assert next_head(heads, "flood") == 6001, "the other device's alarm is next"
    assert next_head(heads, "other") == 1, "round and round"
    assert next_head([OutboxHead("pend-1", False, 5)], "flood") == 5  # faults when no alarm
    assert next_head([], None) is None


async def test_another_devices_alarm_never_waits_behind_one_devices_backlog(
    tmp_path: Path,
) -> None:
    """200 alarms of one device (and a cancel of one) queued before another device's alarm:
    the hub's outbox loop uploads the other alarm first or second, the backlog in order."""
    uplink = FakeUplink()
    hub, _ = make_hub(tmp_path, uplink, merge_repeats=False)  # each press its own alarm
    async with hub.opened():
        await hub.refresh_config()
        for seq in range(1, 201):
            await hub.handle_message(*button(hub, "btn-1", seq))
            hub.clock.advance(1)  # type: ignore[attr-defined]  # within its press rate
        await hub.handle_message(*button(hub, "btn-1", 201, "cancel"))
        await hub.handle_message(*button(hub, "btn-2", 1))
        drain = asyncio.create_task(hub._drain_outbox())
        try:
            deadline = time.monotonic() + 60
            while len(uplink.sent) < 202:
                assert time.monotonic() < deadline, len(uplink.sent)
                await asyncio.sleep(0.01)
        finally:
            drain.cancel()
    devices = [b.get("device_id") for _, b in uplink.sent]
    assert devices.index("btn-2") <= 1, devices[:5]
    flood = [b for _, b in uplink.sent if b.get("device_id") != "btn-2"]
    assert [b.get("seq") for b in flood[:200]] == list(range(1, 201)), "in order per device"
    assert flood[-1]["state"] == "cancelled", "the cancel after the alarm it cancels"
    assert len(uplink.sent) == 202


async def test_presses_while_the_alarm_is_open_join_it_counted_and_acked(tmp_path: Path) -> None:
    uplink = FakeUplink()
    hub, link = make_hub(tmp_path, uplink)
    async with hub.opened():
        await hub.refresh_config()
        for seq in range(1, 11):
            await hub.handle_message(*button(hub, "btn-1", seq))
        await hub.handle_message(*button(hub, "btn-2", 1))
        alarms = [b for k, b in await _outbox(hub) if k == OutboxKind.ALARM]
        raised = [b for b in alarms if "joins" not in b["details"]]
        assert sorted(b["device_id"] for b in raised) == ["btn-1", "btn-2"]
        first = next(b for b in raised if b["device_id"] == "btn-1")
        # its first joined press is told to the server as a repeat of it (the rest counted)
        assert [b["details"] for b in alarms if b not in raised] == [{"joins": first["alarm_id"]}]
        _, evidence = await hub.store.alarm_evidence(first["alarm_id"])
        assert evidence["presses_joined"] == 9
        acks = [a for d, a in link.acks if d == "btn-1"]
        assert [a.seq for a in acks] == list(range(1, 11)), "every press is answered"
        assert {a.alarm_id for a in acks} == {first["alarm_id"]}
        assert all(a.state is AckState.RECEIVED for a in acks)
        # a retry of a joined press is answered alike; after a resolve, a press is new
        await hub.handle_message(*button(hub, "btn-1", 5))
        assert link.acks[-1][1].alarm_id == first["alarm_id"]
        await hub.store.set_state(first["alarm_id"], AlarmState.RESOLVED, hub.clock.now_ms())
        await hub.handle_message(*button(hub, "btn-1", 11))
        assert link.acks[-1][1].alarm_id != first["alarm_id"]


async def test_a_real_press_never_joins_a_selftests_alarm(tmp_path: Path) -> None:
    hub, link = make_hub(tmp_path, FakeUplink())
    async with hub.opened():
        await hub.refresh_config()
        until = hub.clock.now_ms() + 60_000
        hub.selftest = SelftestMode(v=1, active=True, until_ms=until, devices=["btn-1"])
        await hub.handle_message(*button(hub, "btn-1", 1))
        await hub.handle_message(*button(hub, "btn-1", 2))  # in the self-test: its own alarm
        hub.selftest = None
        await hub.handle_message(*button(hub, "btn-1", 3))  # real: joins no test alarm
        ids = [a.alarm_id for _, a in link.acks]
        assert len(set(ids)) == 3, ids


async def test_a_flood_is_limited_per_device_and_logged_in_a_few_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    hub, link = make_hub(tmp_path, FakeUplink())
    async with hub.opened():
        await hub.refresh_config()
        topic = hub.topics.device("btn-1", Channel.BUTTON)
        for seq in range(1, 2001):  # 2000 presses within the same instant
            await hub.handle_message(*button(hub, "btn-1", seq))
        for _ in range(2000):
            await hub.handle_message(topic, b"junk!")
        await hub.handle_message(*button(hub, "btn-2", 1))
        assert link.acks[-1][0] == "btn-2" and link.acks[-1][1].state is AckState.RECEIVED
        alarms = [b for k, b in await _outbox(hub) if k == OutboxKind.ALARM]
        assert sum(b["device_id"] == "btn-1" and "joins" not in b["details"] for b in alarms) == 1
        flood_acks = [a for d, a in link.acks if d == "btn-1"]
        assert 1 < len(flood_acks) <= 20, "the presses within the limit are answered"
        hub.clock.advance(61)  # type: ignore[attr-defined]
        await hub.supervision_pass()
    lines = [r.getMessage() for r in caplog.records if "btn-1" in r.getMessage()]
    assert len(lines) <= 10, lines
    summary = next(line for line in lines if "not logged one by one" in line)
    assert "over_rate" in summary


async def _outbox(hub: object) -> list[tuple[OutboxKind, dict]]:  # type: ignore[type-arg]
    from gateway.hub import Hub

    assert isinstance(hub, Hub)
    out = []
    while (entry := await hub.store.next_pending()) is not None:
        out.append((entry.kind, entry.body))
        await hub.store.mark_sent(entry.id, hub.clock.now_ms())
    return out


async def test_a_backlog_of_retries_after_an_outage_is_answered_not_limited(
    tmp_path: Path,
) -> None:
    """After the hub was away, the broker hands over every copy a button republished: copies
    of presses already handled are answered (a read), not counted as new presses."""
    hub, link = make_hub(tmp_path, FakeUplink(), merge_repeats=False)
    async with hub.opened():
        await hub.refresh_config()
        for seq in range(1, 4):
            for _ in range(60):  # three presses, each republished every second for a minute
                await hub.handle_message(*button(hub, "btn-1", seq))
        assert len(link.acks) == 180, "every copy answered"
        assert {a.seq for _, a in link.acks} == {1, 2, 3}
        assert hub.dropped == 0
