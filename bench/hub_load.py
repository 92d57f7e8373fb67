"""``carehub bench hub``: the hub's resident memory and CPU with many devices streaming.

A real mosquitto, server and hub (separate processes); the bench process plays the home:
half the devices are fall pendants streaming 50 Hz IMU frames (one pendant replays a fall
now and then, so the alarm path runs too), half are wearables reporting vitals each second.
The hub's RSS and CPU time are read from ``/proc`` — first idle with its devices connected
but silent (the baseline, same run), then under load.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import typer

from harness.broker import Mosquitto, free_port
from harness.processes import Child, wait_http_ok

TARGET_RSS_MB = 80.0
_CLK_TCK = 100  # os.sysconf("SC_CLK_TCK") on Linux


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


def _directory(token: str, pendants: list[str], wearables: list[str]) -> str:
    devices = "".join(
        f'[[devices]]\nid = "{d}"\nhub = "hub-1"\nkind = "{kind}"\n\n'
        for kind, ids in (("pendant", pendants), ("wearable", wearables))
        for d in ids
    )
    return (
        '[[teams]]\nid = "t"\nname = "Team"\n\n'
        '[[doctors]]\nid = "dr"\nteam = "t"\nname = "Dr"\nphone = "+8613800000001"\n\n'
        '[[elders]]\nid = "e"\nteam = "t"\nname = "Wang"\nshort_address = "3-501"\n\n'
        f'[[hubs]]\nid = "hub-1"\nelder = "e"\ntoken = "{token}"\n\n' + devices
    )


LYING_S = 12.0
"""Lying still after each replayed fall (`synthetic_fall`)."""
FALL_DECIDED_S = 12.0
"""After the impact, by when the hub has decided: its 7 s confirmation, with room to spare."""


def _falls_raised(hub_db: Path) -> int:
    with sqlite3.connect(hub_db) as db:
        return int(db.execute("SELECT count(*) FROM alarms WHERE kind = 'fall'").fetchone()[0])


def _measure(pid: int, seconds: float) -> tuple[float, float, float]:
    """(peak RSS MB, mean RSS MB, CPU seconds) of `pid` over `seconds`."""
    cpu0, samples = _cpu_s(pid), []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(_rss_mb(pid))
        time.sleep(0.5)
    return max(samples), float(np.mean(samples)), _cpu_s(pid) - cpu0


def run_bench(devices: int, seconds: float, idle_s: float = 10.0) -> dict[str, object]:
    from firmware_sim.pendant import FallPendant, synthetic_fall
    from firmware_sim.wearable import Wearable

    n_pend = devices // 2
    pendants = [f"pend-{i}" for i in range(n_pend)]
    wearables = [f"wear-{i}" for i in range(devices - n_pend)]
    with tempfile.TemporaryDirectory(prefix="carehub-bench-hub-") as tmp_s, Mosquitto() as mq:
        tmp = Path(tmp_s)
        token = secrets.token_urlsafe(16)
        (tmp / "directory.toml").write_text(_directory(token, pendants, wearables))
        port = free_port()
        server = Child(
            "server",
            ["server", "--directory", str(tmp / "directory.toml"), "--log-level", "WARNING"],
            {
                "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'server.db'}",
                "CAREHUB_PORT": str(port),
            },
            tmp / "server.log",
        )
        hub = Child(
            "hub",
            ["hub", "--log-level", "WARNING"],
            {
                "CAREHUB_SERVER_URL": f"http://127.0.0.1:{port}",
                "CAREHUB_HUB_TOKEN": token,
                "CAREHUB_MQTT_PORT": str(mq.port),
                "CAREHUB_HUB_DB": str(tmp / "hub.db"),
                "CAREHUB_FALL_CANCEL_WINDOW_S": "5",
            },
            tmp / "hub.log",
        )
        sims: list[FallPendant | Wearable] = []
        try:
            server.start()
            wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, server)
            hub.start()
            assert hub.process is not None
            pid = hub.process.pid
            time.sleep(3)  # connected, config fetched
            idle_peak, idle_mean, idle_cpu = _measure(pid, idle_s)
            args = ("127.0.0.1", mq.port)
            sims = [FallPendant(d, *args).start() for d in pendants]
            sims += [Wearable(d, *args).start() for d in wearables]
            rng = np.random.default_rng(0)
            cpu0, samples = _cpu_s(pid), []
            start = time.monotonic()
            next_fall, falls_replayed, decided_by = start + 5, 0, start
            while (now := time.monotonic()) < start + seconds:
                if pendants and now >= next_fall:
                    fall = synthetic_fall(50, rng, lying_s=LYING_S)
                    sims[int(rng.integers(len(pendants)))].replay(fall)  # type: ignore[union-attr]
                    # the impact comes after the upright lead-in; the hub decides after its
                    # confirmation (7 s), while the pendant streams the lying part
                    decided_by = now + len(fall) / 50 - LYING_S + FALL_DECIDED_S
                    next_fall, falls_replayed = now + 15, falls_replayed + 1
                samples.append(_rss_mb(pid))
                time.sleep(0.5)
            cpu = _cpu_s(pid) - cpu0
            if not hub.running:
                raise RuntimeError(f"hub died under load:\n{hub.log_tail()}")
            falls_detected = _falls_raised(tmp / "hub.db")
            while falls_detected < falls_replayed and time.monotonic() < decided_by:
                time.sleep(0.2)  # the last replayed fall is still being confirmed
                falls_detected = _falls_raised(tmp / "hub.db")
        finally:
            for sim in sims:
                sim.stop()
            hub.stop()
            server.stop()
    peak = max(samples)
    return {
        "devices": devices,
        "pendants_50hz": n_pend,
        "wearables_1hz": devices - n_pend,
        "seconds": seconds,
        "rss_mb_idle": round(idle_mean, 1),
        "rss_mb_peak": round(peak, 1),
        "rss_mb_mean": round(float(np.mean(samples)), 1),
        "rss_ratio_peak_to_idle": round(peak / idle_mean, 2),
        "cpu_percent_idle": round(100 * idle_cpu / idle_s, 2),
        "cpu_percent": round(100 * cpu / seconds, 2),
        "cpu_percent_per_device": round(100 * cpu / seconds / max(1, devices), 3),
        "falls_replayed": falls_replayed,
        "falls_detected": falls_detected,
        "target_rss_mb": TARGET_RSS_MB,
        "rss_within_target": peak <= TARGET_RSS_MB,
    }


def bench_hub(
    devices: int = typer.Option(20, help="Simulated devices: half pendants, half wearables."),
    seconds: float = typer.Option(60.0, help="Seconds of load."),
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
) -> None:
    """Hub resident memory and CPU per device with devices streaming (target ≤ 80 MB)."""
    r = run_bench(devices, seconds)
    typer.echo(
        f"hub with {r['devices']} devices ({r['pendants_50hz']} pendants at 50 Hz, "
        f"{r['wearables_1hz']} wearables at 1 Hz) for {r['seconds']:.0f} s\n"
        f"  RSS idle (baseline, same run) {r['rss_mb_idle']} MB; under load peak "
        f"{r['rss_mb_peak']} MB, mean {r['rss_mb_mean']} MB "
        f"(x{r['rss_ratio_peak_to_idle']} of idle; target ≤ {TARGET_RSS_MB:.0f} MB)\n"
        f"  CPU idle {r['cpu_percent_idle']} % of a core; under load {r['cpu_percent']} % "
        f"= {r['cpu_percent_per_device']} % per device\n"
        f"  falls replayed {r['falls_replayed']}, detected by the hub {r['falls_detected']}"
    )
    if json_out:
        typer.echo(json.dumps(r))
