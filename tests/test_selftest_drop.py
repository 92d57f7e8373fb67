"""Bug: the self-test's pendant drop raised a second alarm about 30 s later (the fall's
cancel window), so the doctor got two SMS for one self-test. The hub now takes the one drop
a self-test asks for as that self-test's (kept on the hub, never uploaded) and ends its
refractory, so a real fall right after the self-test still alarms.

The real `Hub` on a temporary store with a fake clock and a fake server: the pendant's
frames and the bridge's self-test mode go through `handle_message` in the order a broker
delivers them; the session ends the self-test as soon as it has seen the impact, as
`gateway.selftest_session` does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carehub.alarm_lifecycle import AlarmKind, AlarmState
from carehub.clock import FakeClock
from carehub.mqtt_contract import BridgeTopic, Channel, ImuFrame, SelftestMode, Topics, encode
from edge.fall_detection import FallEvent
from firmware_sim.pendant import still_standing, synthetic_fall
from gateway.fall_watch import FallWatch
from gateway.hub import Hub
from tests.test_hub_shell import FakeUplink, button, make_hub

TOPICS = Topics()
HZ = 50


async def stream(
    hub: Hub, acc: np.ndarray, on_impact: Callable[[Hub], Awaitable[None]] | None = None
) -> None:
    """`acc` as 1 s frames, one per second of the hub's clock; `on_impact` is awaited
    right after the first frame holding a sample of 2.5 g or more (what the self-test
    looks for) reached the hub."""
    clock = hub.clock
    assert isinstance(clock, FakeClock)
    for i in range(0, len(acc) - HZ + 1, HZ):
        chunk = acc[i : i + HZ]
        frame = ImuFrame(v=1, seq=i, t0=clock.now_ms(), hz=HZ, acc=chunk.tolist())
        await hub.handle_message(TOPICS.device("pend-1", Channel.IMU), encode(frame))
        if on_impact is not None and np.linalg.norm(chunk, axis=1).max() >= 2.5:
            await on_impact(hub)
            on_impact = None
        clock.advance(1)
        await hub.fall_windows_pass()


async def uploads(hub: Hub) -> list[dict[str, Any]]:
    bodies = []
    while (entry := await hub.store.next_pending()) is not None:
        if entry.kind == "alarm":
            bodies.append(entry.body)
        await hub.store.mark_sent(entry.id, hub.clock.now_ms())
    return bodies


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub in a self-test: what `carehub hub selftest` publishes, then the installer's
    press (the test alarm)."""
    hub, _ = make_hub(tmp_path, FakeUplink())
    async with hub.opened():
        await hub.refresh_config()  # btn-1, btn-2, pend-1
        until = hub.clock.now_ms() + 180_000
        devices = ["btn-1", "btn-2", "pend-1"]
        mode = SelftestMode(v=1, active=True, until_ms=until, devices=devices)
        await hub.handle_message(TOPICS.bridge(BridgeTopic.SELFTEST), encode(mode))
        await hub.handle_message(*button(hub, "btn-1", 1))
        yield hub


async def end_selftest(hub: Hub) -> None:
    mode = SelftestMode(v=1, active=False)
    await hub.handle_message(TOPICS.bridge(BridgeTopic.SELFTEST), encode(mode))


async def test_a_selftest_raises_one_test_alarm_and_a_real_fall_after_it_still_alarms(
    hub: Hub,
) -> None:
    rng = np.random.default_rng(3)
    drop = synthetic_fall(HZ, rng, lying_s=8, upright_s=3)  # onto a cushion, left there
    # every check passed once the impact was seen: the session ends the self-test
    await stream(hub, np.vstack([still_standing(2 * HZ, rng), drop]), end_selftest)
    drop_ms = hub.clock.now_ms()
    # the elder puts the pendant on and, 20 s after the drop, really falls
    await stream(hub, synthetic_fall(HZ, rng, lying_s=40, upright_s=12))
    assert hub.clock.now_ms() - drop_ms > 30_000  # the real fall's window is over

    sent = await uploads(hub)
    assert [(b["kind"], b["test"]) for b in sent] == [("button", True), ("fall", False)]
    assert sent[1]["event_ts_ms"] > drop_ms  # the real fall, not the drop
    (kept,) = await hub.store.alarms_in_state(AlarmState.CANCELLED)  # the drop, on the hub
    assert kept.kind is AlarmKind.FALL and kept.device_id == "pend-1"
    impact_ms, details = await hub.store.alarm_evidence(kept.id)
    assert impact_ms is not None and drop_ms - 12_000 < impact_ms < drop_ms
    assert details["window"]["acc"]  # the evidence is kept


async def test_a_drop_decided_while_the_selftest_still_runs_is_not_a_second_test_alarm(
    hub: Hub,
) -> None:
    rng = np.random.default_rng(4)
    await stream(hub, synthetic_fall(HZ, rng, lying_s=45, upright_s=3))  # window over
    await end_selftest(hub)
    assert [(b["kind"], b["test"]) for b in await uploads(hub)] == [("button", True)]
    assert hub.core.pending == {}
    assert len(await hub.store.alarms_in_state(AlarmState.CANCELLED)) == 1


def frames(acc: np.ndarray, t0_ms: int, replayed: bool = False) -> list[ImuFrame]:
    return [
        ImuFrame(
            v=1, seq=i, t0=t0_ms + i * 1000, hz=HZ, acc=acc[i * HZ : (i + 1) * HZ].tolist()
        ).model_copy(update={"replayed": True} if replayed else {})
        for i in range(len(acc) // HZ)
    ]


def run(watch: FallWatch, fs: list[ImuFrame], selftest: int | None) -> list[FallEvent]:
    return [e for f in fs for e in watch.push("pend-1", f, f.t0, selftest)]


def test_one_drop_per_selftest_and_only_from_frames_heard_during_it() -> None:
    rng = np.random.default_rng(6)
    fall = synthetic_fall(HZ, rng, lying_s=10, upright_s=12)
    t0 = 1_764_000_000_000
    watch = FallWatch()
    assert run(watch, frames(still_standing(5 * HZ, rng), t0), None) == []
    t = t0 + 5000
    (drop,) = run(watch, frames(fall, t), selftest=1)
    assert watch.take_selftest_drop("pend-1", drop)
    assert not watch.take_selftest_drop("pend-1", drop)  # one per self-test
    t += len(fall) * 20
    (second,) = run(watch, frames(fall, t), selftest=1)  # no refractory: judged afresh
    assert not watch.take_selftest_drop("pend-1", second)  # alarms (as a test)
    t += len(fall) * 20
    run(watch, frames(still_standing(10 * HZ, rng), t), selftest=None)  # refractory over
    (after,) = run(watch, frames(fall, t + 10_000), selftest=None)
    assert not watch.take_selftest_drop("pend-1", after)  # heard after the self-test

    watch = FallWatch()  # a backlog replayed during a self-test holds no drop
    run(watch, frames(still_standing(5 * HZ, rng), t0), None)
    (old,) = run(watch, frames(fall, t0 + 5000, replayed=True), selftest=2)
    assert not watch.take_selftest_drop("pend-1", old)
    t = t0 + 5000 + len(fall) * 20
    run(watch, frames(still_standing(10 * HZ, rng), t), selftest=3)  # refractory over
    (new,) = run(watch, frames(fall, t + 10_000), selftest=3)
    assert watch.take_selftest_drop("pend-1", new)  # a new self-test, its own drop
