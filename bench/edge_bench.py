"""``carehub bench edge``: how many 50 Hz pendant streams one core carries through the hub.

Each of ``STREAMS`` simulated pendants sends one 1 s frame (50 samples) per round; a round's
payloads are built before the clock starts. Three paths are timed over the same payloads,
one after the other on this core:

* baseline – ``json.loads`` alone (the cheapest thing the hub could possibly do);
* parse – ``ImuFrame.model_validate_json`` then ``np.asarray`` (the contract edge);
* parse + detect – the above plus ``FallDetector.push`` on the stream's own detector.

Since every stream sends one frame per second, frames/s on one core = concurrent streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import typer

from edge.fall_detection import FallDetector

STREAMS = 1000
HZ = 50.0
T0_MS = 1_700_000_000_000
POOL = 64  # distinct frames per kind of activity

_KINDS = ("still", "walk", "jog", "impact", "lying")
_MIX = np.array([0.62, 0.28, 0.05, 0.01, 0.04])  # share of frames of each kind


def _pool(kind: str, rng: np.random.Generator) -> list[bytes]:
    """JSON fragments ``[[x,y,z],…]`` of 1 s of a kind of activity, in g (4 decimals)."""
    t = np.arange(int(HZ)) / HZ
    out = []
    for _ in range(POOL):
        phase = rng.uniform(0, 1)
        if kind == "walk":
            strike = 0.9 * np.exp(-((((t * 1.9 + phase) % 1.0 - 0.1) / 0.06) ** 2))
            acc = np.column_stack([0.15 * np.sin(6 * t + phase), 0.8 + strike, 0.05 + 0 * t])
        elif kind == "jog":
            strike = 2.5 * np.exp(-((((t * 2.8 + phase) % 1.0 - 0.1) / 0.06) ** 2))
            acc = np.column_stack([0.2 * np.sin(9 * t + phase), 0.6 + strike, 0.1 + 0 * t])
        elif kind == "impact":
            acc = np.tile([0.0, 1.0, 0.0], (len(t), 1))
            k = rng.integers(10, 40)
            acc[k - 8 : k] *= 0.2
            acc[k] = [0.3, 0.5, 4.0]
            acc[k + 1 :] = [0.0, 0.05, 1.0]
        elif kind == "lying":
            acc = np.tile([0.02, 0.05, 1.0], (len(t), 1))
        else:
            acc = np.tile([0.05, 0.97, 0.2], (len(t), 1))
        acc = acc + rng.normal(0, 0.01, acc.shape)
        out.append(json.dumps(np.round(acc, 4).tolist(), separators=(",", ":")).encode())
    return out


@dataclass
class _Timer:
    seconds: float = 0.0
    frames: int = 0

    def rate(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _time(fn: Callable[[list[bytes]], None], payloads: list[bytes], timer: _Timer) -> None:
    start = time.perf_counter()
    fn(payloads)
    timer.seconds += time.perf_counter() - start
    timer.frames += len(payloads)


def bench_edge(
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all figures."),
    seconds: float = typer.Option(6.0, "--seconds", help="Approximate total run time (s)."),
) -> None:
    """Measure concurrent 50 Hz IMU streams per core through parse + fall detection."""
    from carehub.mqtt_contract import ImuFrame  # the lead's contract module; imported late

    rng = np.random.default_rng(42)
    pools = {kind: _pool(kind, rng) for kind in _KINDS}
    detectors = [FallDetector() for _ in range(STREAMS)]
    kinds_by_stream = np.zeros(STREAMS, dtype=int)
    baseline, parse, full, detect_only = _Timer(), _Timer(), _Timer(), _Timer()

    def loads_only(payloads: list[bytes]) -> None:
        for raw in payloads:
            json.loads(raw)

    def parse_only(payloads: list[bytes]) -> None:
        for raw in payloads:
            frame = ImuFrame.model_validate_json(raw)
            np.asarray(frame.acc, dtype=float)

    def parse_and_detect(payloads: list[bytes]) -> None:
        detect_s = 0.0
        for detector, raw in zip(detectors, payloads, strict=True):
            frame = ImuFrame.model_validate_json(raw)
            acc = np.asarray(frame.acc, dtype=float)
            gyr = None if frame.gyr is None else np.asarray(frame.gyr, dtype=float)
            t = time.perf_counter()
            detector.push(frame.t0, frame.hz, acc, gyr)
            detect_s += time.perf_counter() - t
        detect_only.seconds += detect_s
        detect_only.frames += len(payloads)

    deadline = time.perf_counter() + seconds
    second = 0
    while second < 5 or time.perf_counter() < deadline:
        # Each stream keeps its activity for a while; a lying frame follows an impact.
        change = rng.random(STREAMS) < 0.1
        kinds_by_stream[change] = rng.choice(len(_KINDS), size=int(change.sum()), p=_MIX)
        payloads = []
        for s in range(STREAMS):
            kind = _KINDS[kinds_by_stream[s]]
            if kind == "impact":
                kinds_by_stream[s] = _KINDS.index("lying")
            acc = pools[kind][int(rng.integers(POOL))]
            payloads.append(
                b'{"v":1,"seq":%d,"t0":%d,"hz":50.0,"acc":%s}'
                % (second, T0_MS + 1000 * second + 7 * s, acc)
            )
        _time(loads_only, payloads, baseline)
        _time(parse_only, payloads, parse)
        _time(parse_and_detect, payloads, full)
        second += 1

    samples_per_frame = int(HZ)
    report = {
        "streams_simulated": STREAMS,
        "stream_seconds": second,
        "frame_samples": samples_per_frame,
        "baseline_json_loads_frames_per_s": round(baseline.rate()),
        "parse_frames_per_s": round(parse.rate()),
        "parse_detect_frames_per_s": round(full.rate()),
        "concurrent_50hz_streams_per_core": round(full.rate()),
        "detect_us_per_frame": round(1e6 * detect_only.seconds / max(detect_only.frames, 1), 2),
        "detect_us_per_sample": round(
            1e6 * detect_only.seconds / max(detect_only.frames * samples_per_frame, 1), 3
        ),
        "json_loads_us_per_sample": round(
            1e6 * baseline.seconds / max(baseline.frames * samples_per_frame, 1), 3
        ),
        "parse_detect_vs_json_loads": round(full.seconds / baseline.seconds, 2)
        if baseline.seconds
        else None,
        "detect_vs_json_loads": round(detect_only.seconds / baseline.seconds, 2)
        if baseline.seconds
        else None,
        "target_streams_per_core": 1000,
    }
    echo = typer.echo
    echo(f"Edge benchmark: {STREAMS} simulated pendants × {second} s of 1 s / 50 Hz frames")
    echo(f"  baseline json.loads         {report['baseline_json_loads_frames_per_s']:>9} frames/s")
    echo(f"  ImuFrame parse → numpy      {report['parse_frames_per_s']:>9} frames/s")
    echo(
        f"  parse + FallDetector.push   {report['parse_detect_frames_per_s']:>9} frames/s"
        f"  = concurrent 50 Hz streams per core (target ≥ 1000),"
        f" {report['parse_detect_vs_json_loads']}× the cost of json.loads"
    )
    echo(
        f"  detector alone              {report['detect_us_per_frame']:>9} µs/frame,"
        f" {report['detect_us_per_sample']} µs/sample"
        f" ({report['detect_vs_json_loads']}× json.loads at"
        f" {report['json_loads_us_per_sample']} µs/sample)"
    )
    if as_json:
        echo(json.dumps(report))
