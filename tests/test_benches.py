"""Issue 5: small versions of the system benchmarks, through the `carehub bench` commands.

The full-size runs and their figures are in docs/benchmarks.md; these check that the benches
run end to end, that nothing is lost or duplicated, and that `--json` ends with the promised
keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.chaos_bench import (
    FALL_CRITICAL_S,
    PENDANT_GAP_S,
    RESTART_GUARD_S,
    UPRIGHT_S,
    Outage,
    plan_falls,
    plan_outages,
)
from bench.rig import percentile

CAREHUB = Path(sys.executable).with_name("carehub")


def last_json_line(*args: str, timeout: float) -> dict[str, Any]:
    result = subprocess.run(
        [str(CAREHUB), "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.integration
def test_chaos_small_loses_and_duplicates_nothing() -> None:
    r = last_json_line(
        "chaos",
        "--presses", "20",
        "--falls", "3",
        "--duration", "36",
        "--hub-kills", "1",
        "--broker-restarts", "1",
        "--server-stops", "1",
        "--uplink-cuts", "1",
        "--outage", "3",
        "--settle", "2",
        timeout=150,
    )  # fmt: skip
    for key in ("sent", "stored", "lost", "duplicates", "latency_ms_p50", "latency_ms_p99"):
        assert key in r, key
    assert r["sent"] == 23
    assert r["lost"] == 0, r
    assert r["duplicates"] == 0, r
    assert r["unexpected"] == 0, r
    assert r["stored"] == 23, r
    assert all(o["error"] is None for o in r["outages"]), r["outages"]


@pytest.mark.integration
def test_e2e_small_matches_every_press_to_its_sms() -> None:
    r = last_json_line(
        "e2e", "--homes", "5", "--presses", "25", "--duration", "4", "--workers", "1",
        timeout=120,
    )  # fmt: skip
    for key in (
        "presses",
        "homes",
        "sms",
        "latency_ms_p50",
        "latency_ms_p99",
        "floor_ms_p50",
        "floor_ms_p99",
        "ratio_p50",
        "ratio_p99",
    ):
        assert key in r, key
    assert r["presses"] == 25 and r["homes"] == 5
    assert r["sms"] == 25 and r["matched"] == 25, r  # each press texted once, no more
    assert 0 < r["floor_ms_p50"] <= r["latency_ms_p50"]


def test_falls_are_planned_away_from_faults_that_blind_the_hub() -> None:
    outages = plan_outages(
        150.0, {"hub_kill": 2, "broker_restart": 1, "server_stop": 1}, 8.0, 1.0, 2.0
    )
    assert [o.kind for o in outages].count("hub_kill") == 2
    plan = plan_falls(10, 150.0, outages)
    assert len(plan) == 10
    for at_s, _ in plan:
        seen = (at_s + UPRIGHT_S - 2.0, at_s + FALL_CRITICAL_S)  # impact - 2 s … decided
        for o in outages:
            if o.blinds_falls:
                down = (o.at_s - 1.0, o.at_s + o.down_s + RESTART_GUARD_S)
                assert seen[1] <= down[0] or down[1] <= seen[0], (at_s, o)
    by_pendant: dict[int, list[float]] = {}
    for at_s, p in plan:
        by_pendant.setdefault(p, []).append(at_s)
    for times in by_pendant.values():
        assert all(b - a >= PENDANT_GAP_S for a, b in zip(times, times[1:], strict=False))


def test_no_room_for_falls_is_said_plainly() -> None:
    outages = [Outage("hub_kill", t, 1.0) for t in (5.0, 15.0, 25.0)]
    with pytest.raises(ValueError, match="lengthen --duration"):
        plan_falls(1, 30.0, outages)


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
