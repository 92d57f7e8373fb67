"""`keep_running`: a failing hub loop is logged, counted and restarted with backoff."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from gateway.loop_guard import RestartPolicy, keep_running


def test_restart_delays_grow_to_the_cap() -> None:
    policy = RestartPolicy(initial_s=0.5, cap_s=30)
    assert [policy.delay(n) for n in (1, 2, 3, 7, 100)] == [0.5, 1.0, 2.0, 30, 30]


async def test_a_failing_loop_restarts_with_one_traceback_per_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            done.set()
            await asyncio.Event().wait()  # healthy at last: runs until cancelled
        raise RuntimeError(f"boom {calls}")

    label = {"loop": "flaky-test"}
    before = REGISTRY.get_sample_value("carehub_hub_loop_restarts_total", label) or 0
    caplog.set_level(logging.ERROR, logger="gateway.loop_guard")
    task = asyncio.create_task(keep_running("flaky-test", flaky, RestartPolicy(0.001, 0.01)))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert REGISTRY.get_sample_value("carehub_hub_loop_restarts_total", label) == before + 3
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and all("hub loop flaky-test failed" in m for m in messages)
    assert "RuntimeError: boom 2" in messages[1] and "2 in a row" in messages[1]
    assert [r.exc_info is not None for r in caplog.records] == [True, False, False]
