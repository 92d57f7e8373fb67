"""`carehub bench voice` runs end to end on a small size and reports every figure."""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")
pytestmark = pytest.mark.integration


def test_bench_voice_makes_a_call_and_reports_its_figures() -> None:
    from bench.voice_bench import run_bench

    r = run_bench(calls=1, talk_s=2.0, idle_s=1.0)
    assert (r["calls"], r["calls_ok"]) == (1, 1)
    for key in (
        "mouth_to_ear_ms_p50",
        "mouth_to_ear_ms_p95",
        "setup_ms_p50",
        "hub_idle_rss_mb",
        "hub_call_rss_mb",
        "hub_idle_cpu_pct",
        "hub_call_cpu_pct",
    ):
        assert r[key] is not None, key
    assert r["mouth_to_ear_samples"] >= 2  # both directions heard a burst
