"""``carehub bench server``: server processes under many hubs' load, over real HTTP.

Separate ``carehub server`` processes (SQLite with one process; PostgreSQL with two) take
the traffic of simulated hubs from a separate load-generator process (``python -m
bench.server_bench SPEC``, httpx with bounded connections), so the generator never shares
the server's event loop. Each run measures, per backend, on a fresh database:

- baseline: the same app answering ``/healthz`` at the load phase's request rate: the
  no-op request, the stack's floor (uvicorn, routing, the app's middleware and query check;
  no token lookup, no body, no SQL), against which a heartbeat's and an alarm's CPU count;
- heartbeats: heartbeats alone at the same rate, then until the heartbeat writer stored
  them (CPU per heartbeat: HTTP, the hub's token lookup, validation, its share of a
  batched write);
- alarms: alarms alone at the alarm rate, until each is texted and the sandbox's three
  delivery callbacks were answered (CPU per alarm: its upload, its first step's SMS through
  the Twilio SDK, its callbacks);
- load: every hub heartbeating once a minute plus alarms at a fixed rate, each alarm to a
  hub of its own; latency is upload sent → its first SMS request at the sandbox (both on
  the machine's monotonic clock), throughput_ratio = ingest throughput / no-op throughput;
- storm (a power cut ends): every hub comes back within the phase, flushing its queued
  faults and a heartbeat, while alarms keep arriving; an alarm is lost unless it was stored
  and its first SMS requested before the drain deadline.

Each alarm's hub has a team and doctor of its own, so the per-number send policy
(`server.send_policy`) never merges or holds its first SMS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from bench.rig import percentile, rounded
from harness import postgres
from harness.broker import free_port
from harness.processes import Child, wait_http_ok
from harness.sms_sandbox import RecordedSms, SmsSandbox

TARGET_P99_MS = 100.0
TARGET_STORM_P99_MS = 1000.0
TWILIO_SID = "AC" + "0" * 31 + "1"
TARGET_CPU_RATIO_HEARTBEAT = 2.0
TARGET_CPU_RATIO_ALARM = 12.0
CALLBACKS_PER_SMS = 3
"""The SMS sandbox reports queued, sent and delivered for each message."""
ALARM_CONNECTIONS = 8
"""Connections per server for alarms alone, beside the `Phase.connections` of the rest."""
SETTLE_S = 1.0
WARM_RATE = 500.0
"""Heartbeats per second of the unmeasured first round (about 2 ms each, not yet known)."""
"""Quiet after each isolated phase (no-op, heartbeat, alarm), inside its CPU figure."""


# ---------------------------------------------------------------- the fleet


def hub_token(seed: str, index: int) -> str:
    """Hub `index`'s bearer token, derived from the run's seed (the generator derives the
    same ones, so 10 000 tokens need not be passed around)."""
    return hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:40]


def doctor_phone(index: int, rank: int = 0) -> str:
    return f"+86{138 + rank}{index:08d}"


def fleet_directory(
    path: Path, hubs: int, seed: str, steps: Sequence[tuple[int, float]], repeat: int
) -> Path:
    """A directory (JSON) of `hubs` homes, each with its own team of ``len(ranks)`` doctors
    (phones `doctor_phone(i, rank)`), elder, hub and button ``btn-<i>``; every team's urgent
    policy is `steps` ((rank, wait_s) each, on-duty team members) run ``repeat`` more times."""
    ranks = sorted({rank for rank, _ in steps})
    doc: dict[str, list[dict[str, Any]]] = {
        "policies": [
            {
                "id": "bench",
                "steps": [{"target": "team_on_duty", "rank": r, "wait_s": w} for r, w in steps],
                "repeat": repeat,
            }
        ],
        "teams": [],
        "doctors": [],
        "elders": [],
        "hubs": [],
        "devices": [],
    }
    for i in range(hubs):
        doc["teams"].append({"id": f"t{i}", "name": f"T{i}", "policies": {"urgent": "bench"}})
        doc["doctors"] += [
            {
                "id": f"d{i}-{r}",
                "team": f"t{i}",
                "name": f"D{i}-{r}",
                "phone": doctor_phone(i, r),
                "language": "en",
                "priority": r,
            }
            for r in ranks
        ]
        doc["elders"].append({"id": f"e{i}", "team": f"t{i}", "name": f"E{i}"})
        doc["hubs"].append({"id": f"hub-{i}", "elder": f"e{i}", "token": hub_token(seed, i)})
        doc["devices"].append({"id": f"btn-{i}", "hub": f"hub-{i}", "kind": "button"})
    path.write_text(json.dumps(doc))
    return path


def server_process(
    name: str,
    tmp: Path,
    database_url: str,
    directory: Path | None,
    sms_url: str,
    extra_env: dict[str, str] | None = None,
    log_level: str = "WARNING",
) -> tuple[Child, str]:
    """`carehub server` on `database_url`, texting through the Twilio SDK to `sms_url`,
    loading `directory` at start (None: one that another process loads); returns the child
    (not started) and its base URL."""
    port = free_port()
    load = ["--directory", str(directory)] if directory is not None else []
    child = Child(
        name,
        ["server", *load, "--log-level", log_level],
        {
            "CAREHUB_DATABASE_URL": database_url,
            "CAREHUB_HOST": "127.0.0.1",
            "CAREHUB_PORT": str(port),
            "CAREHUB_NOTIFIER": "twilio",
            "CAREHUB_TWILIO_API_BASE": sms_url,
            "CAREHUB_TWILIO_ACCOUNT_SID": TWILIO_SID,
            "CAREHUB_TWILIO_AUTH_TOKEN": "bench-secret",
            "CAREHUB_TWILIO_FROM": "+15550000000",
            "CAREHUB_SECRET_KEY": "bench-secret-key-0123456789",
            # one dispatch per alarm: the bench's buttons press again while their alarm is
            # open, which would otherwise join it as a repeat (server.alarm_repeats)
            "CAREHUB_MERGE_REPEATS": "false",
            "CAREHUB_HUB_OFFLINE_AFTER_S": "3600",
            # Twilio's delivery callbacks come back to this process, as in production
            "CAREHUB_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            **(extra_env or {}),
        },
        tmp / f"{name}.log",
    )
    return child, f"http://127.0.0.1:{port}"


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU time the processes have used so far (Linux ``/proc``), or None.

    Per answered request it is the bench's steadiest figure: latency and throughput move
    with whatever else the machine runs, the CPU a request costs much less."""
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces; fields 3.. follow
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def start_servers(children: Sequence[tuple[Child, str]], timeout_s: float = 300) -> None:
    """One after the other: the first migrates the database and loads the directory alone."""
    for child, url in children:
        child.start()
        wait_http_ok(f"{url}/healthz", timeout_s, child)


class MonotonicSmsSandbox(SmsSandbox):
    """The SMS sandbox, noting each request's arrival on the machine's monotonic clock
    (``time.monotonic_ns``, shared by every process), so another process's send times
    compare with it."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[int, RecordedSms]] = []
        self._changed = threading.Condition(self._lock)

    def _add(self, sms: RecordedSms) -> None:
        at = time.monotonic_ns()
        super()._add(sms)
        with self._changed:
            self.arrivals.append((at, sms))
            self._changed.notify_all()

    def __enter__(self) -> MonotonicSmsSandbox:
        self.start()
        return self

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Until at least `count` SMS arrived; False at the deadline."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.arrivals) >= count, timeout_s)

    def _report(self, sms: RecordedSms, auth_token: str) -> None:
        super()._report(sms, auth_token)
        with self._changed:
            self._changed.notify_all()

    def wait_for_callbacks(self, count: int, timeout_s: float) -> bool:
        """Until at least `count` status callbacks were answered; False at the deadline."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.callbacks) >= count, timeout_s)


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one run (its asyncpg URL), dropped afterwards: on
    CAREHUB_TEST_PG when set, else on a private server started for the run with a real
    server's durable settings (fsync on)."""
    with postgres.server(durable=True) as admin_url:
        with postgres.fresh_database(admin_url, "carehub_b_") as url:
            yield url


# ---------------------------------------------------------------- the load generator


@dataclass
class Phase:
    """What the generator sends for `seconds`: ``noop`` (GET /healthz at `noop_rate`),
    ``heartbeat`` (heartbeats alone at `noop_rate`), ``alarm`` (alarms alone), ``load``
    (heartbeats + alarms) or ``storm`` (every hub flushes faults and a heartbeat at a
    random moment, alarms keep coming)."""

    kind: str
    seconds: float
    servers: list[str]
    seed: str
    hubs: int
    alarm_rate: float
    first_alarm_hub: int = 0
    noop_rate: float = 0.0
    faults_per_hub: int = 2
    connections: int = 32


async def _generate(phase: Phase) -> dict[str, Any]:
    import httpx

    from carehub import api_contract as api

    limits = httpx.Limits(
        max_connections=phase.connections, max_keepalive_connections=phase.connections
    )
    clients = [
        httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) for url in phase.servers
    ]
    # alarms have connections of their own, as every hub has: an alarm waits in the server
    # if anywhere, never in the generator behind other hubs' heartbeats and fault reports
    alarm_limits = httpx.Limits(
        max_connections=ALARM_CONNECTIONS, max_keepalive_connections=ALARM_CONNECTIONS
    )
    alarm_clients = [
        httpx.AsyncClient(base_url=url, limits=alarm_limits, timeout=30.0) for url in phase.servers
    ]
    ok = {"noop": 0, "heartbeat": 0, "fault": 0, "alarm": 0}
    failed = {k: 0 for k in ok}
    refused = {k: 0 for k in ok}  # 503 + Retry-After: the server put maintenance off
    alarms: list[tuple[int, int]] = []  # (hub index, first attempt monotonic ns)
    tasks: set[asyncio.Task[None]] = set()

    def client_for(hub: int, kind: str) -> httpx.AsyncClient:
        return (alarm_clients if kind == "alarm" else clients)[hub % len(clients)]

    def auth(hub: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {hub_token(phase.seed, hub)}"}

    # requests beyond the connections wait here, not in httpx's pool (whose queue costs
    # CPU per waiting request: the generator, not the server, became the bottleneck)
    slots = asyncio.Semaphore(phase.connections * len(clients))

    async def request(
        kind: str, hub: int, path: str, body: dict[str, Any] | None
    ) -> tuple[bool, float | None]:
        """(answered 2xx, the Retry-After of a 503 that put it off)."""
        try:
            async with slots if kind != "alarm" else contextlib.nullcontext():
                if body is None:
                    r = await client_for(hub, kind).get(path)
                else:
                    r = await client_for(hub, kind).post(path, json=body, headers=auth(hub))
        except httpx.HTTPError:
            failed[kind] += 1
            return False, None
        if r.status_code < 300:
            ok[kind] += 1
            return True, None
        wait = r.headers.get("retry-after", "")
        if r.status_code == 503 and wait.isdigit():
            refused[kind] += 1
            return False, float(wait)
        failed[kind] += 1
        return False, None

    def heartbeat(hub: int) -> dict[str, Any]:
        return {"uptime_s": 1.0, "queue_depth": 0, "devices_online": 1, "version": "bench"}

    async def alarm(hub: int) -> None:
        alarms.append((hub, time.monotonic_ns()))
        body = {
            "alarm_id": f"a{hub}",
            "device_id": f"btn-{hub}",
            "kind": "button",
            "raised_at_ms": time.time_ns() // 1_000_000,
        }
        delay = 0.2
        while not (await request("alarm", hub, api.ALARMS_PATH, body))[0]:  # as a hub: retry
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def storm_hub(hub: int) -> None:
        now = time.time_ns() // 1_000_000
        for f in range(phase.faults_per_hub):
            fault = {
                "report_id": f"f{hub}-{f}",
                "device_id": f"btn-{hub}",
                "fault": "device_offline",
                "active": f % 2 == 0,
                "at_ms": now - 60_000 + f,
            }
            # as a hub: a fault put off (503) is sent again after its Retry-After, a
            # heartbeat put off is not (the next one comes after the same wait)
            for _ in range(100):
                wait = (await request("fault", hub, api.FAULTS_PATH, fault))[1]
                if wait is None:
                    break
                await asyncio.sleep(wait)
        await request("heartbeat", hub, api.HUB_HEARTBEAT_PATH, heartbeat(hub))

    # one schedule of (offset s, what) for the phase, then sent open-loop on time
    events: list[tuple[float, str, int]] = []
    if phase.kind in ("noop", "heartbeat"):
        n = int(phase.noop_rate * phase.seconds)
        events += [(i / phase.noop_rate, phase.kind, i % phase.hubs) for i in range(n)]
    else:
        n_alarms = int(phase.alarm_rate * phase.seconds)
        events += [
            (i / phase.alarm_rate, "alarm", phase.first_alarm_hub + i) for i in range(n_alarms)
        ]
        if phase.kind == "alarm":
            pass
        elif phase.kind == "load":  # each hub once a minute, spread evenly
            period = 60.0
            for k in range(int(phase.seconds // period) + 1):
                events += [
                    (k * period + h * period / phase.hubs, "heartbeat", h)
                    for h in range(phase.hubs)
                    if k * period + h * period / phase.hubs < phase.seconds
                ]
        else:
            import random

            rng = random.Random(phase.seed)
            events += [(rng.uniform(0, phase.seconds), "storm", h) for h in range(phase.hubs)]
    events.sort()
    start = time.monotonic()
    lateness: list[float] = []
    for offset, what, hub in events:
        delay = start + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lateness.append(-delay)
        if what == "noop":
            coro: Any = request("noop", hub, api.HEALTH_PATH, None)
        elif what == "alarm":
            coro = alarm(hub)
        elif what == "heartbeat":
            coro = request("heartbeat", hub, api.HUB_HEARTBEAT_PATH, heartbeat(hub))
        else:
            coro = storm_hub(hub)
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_s = time.monotonic() - start
    while tasks:
        await asyncio.gather(*list(tasks))
    elapsed = time.monotonic() - start
    for c in clients + alarm_clients:
        await c.aclose()
    return {
        "kind": phase.kind,
        "requests": sum(ok.values()) + sum(failed.values()),  # alarm retries included
        "ok": ok,
        "failed": failed,
        "refused": refused,
        "alarms": alarms,
        "sent_s": sent_s,
        "elapsed_s": elapsed,
        "generator_late_p99_ms": rounded(1000 * (percentile(lateness, 99) or 0.0)),
    }


def run_phase(phase: Phase, tmp: Path) -> dict[str, Any]:
    """Run one phase in a separate generator process; its report."""
    spec = tmp / f"phase-{phase.kind}.json"
    out = tmp / f"phase-{phase.kind}.out.json"
    spec.write_text(json.dumps({"phase": phase.__dict__, "out": str(out)}))
    gen = subprocess.run(
        [sys.executable, "-m", "bench.server_bench", str(spec)],
        capture_output=True,
        text=True,
        timeout=phase.seconds * 10 + 600,
    )
    if gen.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{gen.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def _stored_alarms(database_url: str) -> int:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split("///", 1)[1]) as db:
            return int(db.execute("SELECT count(*) FROM alarms").fetchone()[0])
    return int(postgres.psql(database_url, "select count(*) from alarms")[0][0])


def _alarm_latencies(
    alarms: list[tuple[int, int]], sms: MonotonicSmsSandbox
) -> tuple[list[float], int]:
    """(upload → first SMS request latencies in ms, alarms without an SMS)."""
    first: dict[str, int] = {}
    with sms._lock:
        for at, s in sms.arrivals:
            first.setdefault(s.to, at)
    latencies, lost = [], 0
    for hub, sent_ns in alarms:
        arrived = first.get(doctor_phone(hub))
        if arrived is None:
            lost += 1
        else:
            latencies.append((arrived - sent_ns) / 1e6)
    return latencies, lost


def _phase_figures(
    report: dict[str, Any], sms: MonotonicSmsSandbox, cpu_s: float | None
) -> dict[str, Any]:
    latencies, lost = _alarm_latencies([tuple(a) for a in report["alarms"]], sms)
    ok = sum(report["ok"].values())
    return {
        # two decimals: the ratios are taken of these, and a no-op costs about 1 ms
        "server_cpu_ms_per_request": rounded(1000 * cpu_s / ok, 2) if cpu_s and ok else None,
        "requests": report["requests"],
        "ok": report["ok"],
        "failed": report["failed"],
        "refused_503": report["refused"],
        "throughput_rps": round(ok / report["elapsed_s"], 1),
        "alarms": len(report["alarms"]),
        "latency_ms_p50": rounded(percentile(latencies, 50)),
        "latency_ms_p99": rounded(percentile(latencies, 99)),
        "latency_ms_max": rounded(max(latencies, default=None) if latencies else None),
        "without_sms": lost,
        "generator_late_p99_ms": report["generator_late_p99_ms"],
    }


def run_backend(
    backend: str, hubs: int, alarm_rate: float, seconds: float, drain_s: float = 60.0
) -> dict[str, Any]:
    """Baseline, heartbeats, alarms, load and storm on a fresh database of `backend`
    (``sqlite``: one server process; ``postgresql``: two, each hub always talking to the
    same one)."""
    if 3 * alarm_rate * seconds > hubs:
        raise typer.BadParameter(
            f"{3 * alarm_rate * seconds:.0f} alarms need as many hubs (each alarm its own "
            f"hub, so the send policy never merges its SMS): raise --hubs or lower "
            f"--alarm-rate/--seconds"
        )
    seed = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="carehub-bench-server-") as tmp_s:
        tmp = Path(tmp_s)
        directory = fleet_directory(tmp / "directory.json", hubs, seed, [(0, 3600.0)], 0)
        with ExitStack() as stack:
            pg = backend == "postgresql"
            url = (
                stack.enter_context(pg_database())
                if pg
                else f"sqlite+aiosqlite:///{tmp / 'server.db'}"
            )
            sms = stack.enter_context(MonotonicSmsSandbox())
            n = 2 if pg else 1
            servers = [
                server_process(f"server-{i}", tmp, url, directory, sms.url) for i in range(n)
            ]
            try:
                start_servers(servers)
                return _phases(
                    backend, servers, url, sms, seed, hubs, alarm_rate, seconds, tmp, drain_s
                )
            finally:
                for child, _ in servers:
                    child.stop()


def _phases(
    backend: str,
    servers: list[tuple[Child, str]],
    url: str,
    sms: MonotonicSmsSandbox,
    seed: str,
    hubs: int,
    alarm_rate: float,
    seconds: float,
    tmp: Path,
    drain_s: float,
) -> dict[str, Any]:
    urls = [u for _, u in servers]
    pids = [child.process.pid for child, _ in servers if child.process is not None]
    load_rate = hubs / 60.0 + alarm_rate
    common: dict[str, Any] = {"servers": urls, "seed": seed, "hubs": hubs, "alarm_rate": alarm_rate}
    # not measured: every hub beats once first, as each has within a minute of a running
    # server's life, so the phases below see the server as it runs (each hub known to it:
    # `server.hub_identities`), not its first minute after a start; within a few seconds
    # for a small run, at up to `WARM_RATE` for a large one
    warm_rate = max(2 * load_rate, min(hubs / 2, WARM_RATE))
    run_phase(Phase("heartbeat", hubs / warm_rate, noop_rate=warm_rate, **common), tmp)
    time.sleep(SETTLE_S)
    # the same rate for no-ops and heartbeats: their CPU per request compares like for like
    cpu_a = cpu_seconds(pids)
    noop = run_phase(Phase("noop", seconds, noop_rate=load_rate, **common), tmp)
    time.sleep(SETTLE_S)  # every isolated phase ends with the same quiet, idle CPU included
    cpu_b = cpu_seconds(pids)
    beats = run_phase(Phase("heartbeat", seconds, noop_rate=load_rate, **common), tmp)
    time.sleep(SETTLE_S)  # the heartbeat writer stores what it noted within half a second
    cpu_c = cpu_seconds(pids)
    lone = run_phase(Phase("alarm", seconds, **common), tmp)
    n_lone = len(lone["alarms"])
    sms.wait_for(n_lone, drain_s)
    sms.wait_for_callbacks(CALLBACKS_PER_SMS * n_lone, drain_s)
    time.sleep(SETTLE_S)
    cpu_0 = cpu_seconds(pids)
    load = run_phase(Phase("load", seconds, first_alarm_hub=n_lone, **common), tmp)
    n_load = n_lone + len(load["alarms"])
    sms.wait_for(n_load, drain_s)  # the CPU of a phase includes texting its alarms
    cpu_1 = cpu_seconds(pids)
    storm = run_phase(Phase("storm", seconds, first_alarm_hub=n_load, **common), tmp)
    n_all = n_load + len(storm["alarms"])
    sms.wait_for(n_all, drain_s)
    cpu_2 = cpu_seconds(pids)
    for child, _ in servers:
        if not child.running:
            raise RuntimeError(f"{child.name} died under load:\n{child.log_tail()}")
    noop_f = _phase_figures(noop, sms, _minus(cpu_b, cpu_a))
    beats_f = _phase_figures(beats, sms, _minus(cpu_c, cpu_b))
    lone_f = _phase_figures(lone, sms, _minus(cpu_0, cpu_c))
    lone_f["server_cpu_ms_per_alarm"] = _per(_minus(cpu_0, cpu_c), lone["ok"]["alarm"])
    load_f = _phase_figures(load, sms, _minus(cpu_1, cpu_0))
    storm_f = _phase_figures(storm, sms, _minus(cpu_2, cpu_1))
    noop_rps = sum(noop["ok"].values()) / noop["elapsed_s"]
    stored = _stored_alarms(url)
    per_noop = noop_f["server_cpu_ms_per_request"]
    per_beat = beats_f["server_cpu_ms_per_request"]
    per_alarm = lone_f["server_cpu_ms_per_alarm"]
    return {
        "backend": backend,
        "server_processes": len(servers),
        "hubs": hubs,
        "alarm_rate": alarm_rate,
        "seconds": seconds,
        "offered_rps": round(load_rate, 1),
        "noop_throughput_rps": round(noop_rps, 1),
        "noop": noop_f,
        "heartbeat": beats_f,
        "alarm": lone_f,
        "load": load_f,
        "storm": storm_f,
        "alarms_stored": stored,
        "latency_ms_p50": load_f["latency_ms_p50"],
        "latency_ms_p99": load_f["latency_ms_p99"],
        "throughput_ratio": round(load_f["throughput_rps"] / noop_rps, 3) if noop_rps else None,
        "storm_latency_ms_p99": storm_f["latency_ms_p99"],
        "storm_lost": storm_f["without_sms"] + max(0, n_all - stored),
        "cpu_per_noop_ms": per_noop,
        "cpu_per_heartbeat_ms": per_beat,
        "cpu_per_alarm_ms": per_alarm,
        "cpu_ratio_heartbeat": _ratio(per_beat, per_noop),
        "cpu_ratio_alarm": _ratio(per_alarm, per_noop),
    }


def _per(cpu_s: float | None, count: int) -> float | None:
    """Milliseconds of CPU per one of `count`."""
    return rounded(1000 * cpu_s / count, 2) if cpu_s is not None and count else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


KEYS = (
    "latency_ms_p50",
    "latency_ms_p99",
    "throughput_ratio",
    "storm_latency_ms_p99",
    "storm_lost",
    "cpu_per_noop_ms",
    "cpu_per_heartbeat_ms",
    "cpu_per_alarm_ms",
    "cpu_ratio_heartbeat",
    "cpu_ratio_alarm",
)


def bench_server(
    hubs: int = typer.Option(10_000, help="Simulated hubs, each heartbeating once a minute."),
    alarm_rate: float = typer.Option(50.0, help="Alarms per second (each to its own hub)."),
    seconds: float = typer.Option(
        60.0, help="Seconds of each phase (baseline, heartbeats, alarms, load, storm)."
    ),
    backend: list[str] = typer.Option(
        ["sqlite", "postgresql"], help="Backends to run (sqlite: 1 process; postgresql: 2)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
) -> None:
    """Server processes under hubs' heartbeats, alarms and a power-cut storm, over HTTP:
    upload → SMS latency (targets p99 ≤ 100 ms; storm p99 ≤ 1 s, nothing lost)."""
    results: dict[str, dict[str, Any]] = {}
    for name in backend:
        if name not in ("sqlite", "postgresql"):
            raise typer.BadParameter(f"unknown backend {name!r}: sqlite or postgresql")
        if name == "postgresql" and not postgres.available():
            typer.echo(
                f"postgresql: skipped, not installed ({postgres.MISSING}) and"
                f" {postgres.ENV_URL} not set or not reachable"
            )
            continue
        r = run_backend(name, hubs, alarm_rate, seconds)
        results[name] = r
        ld, st = r["load"], r["storm"]
        typer.echo(
            f"{name} ({r['server_processes']} server process(es)), {hubs} hubs, "
            f"{alarm_rate:g} alarms/s, {seconds:g} s per phase\n"
            f"  baseline /healthz at {r['offered_rps']} req/s: "
            f"{r['noop_throughput_rps']} req/s answered; server CPU "
            f"{r['cpu_per_noop_ms']} ms per no-op\n"
            f"  heartbeats alone: {r['cpu_per_heartbeat_ms']} ms CPU each (ratio "
            f"{r['cpu_ratio_heartbeat']}, target ≤ {TARGET_CPU_RATIO_HEARTBEAT:g}); alarms "
            f"alone: {r['cpu_per_alarm_ms']} ms CPU each, upload to callbacks answered (ratio "
            f"{r['cpu_ratio_alarm']}, target ≤ {TARGET_CPU_RATIO_ALARM:g}), upload → SMS p99 "
            f"{r['alarm']['latency_ms_p99']} ms\n"
            f"  load: {ld['throughput_rps']} req/s answered (ratio {r['throughput_ratio']}), "
            f"failed {ld['failed']}; upload → SMS p50 {ld['latency_ms_p50']} ms, "
            f"p99 {ld['latency_ms_p99']} ms, max {ld['latency_ms_max']} ms "
            f"(target p99 ≤ {TARGET_P99_MS:g} ms); server CPU "
            f"{ld['server_cpu_ms_per_request']} ms per request\n"
            f"  storm: {st['requests']} requests, failed {st['failed']}; alarms p50 "
            f"{st['latency_ms_p50']} ms, p99 {st['latency_ms_p99']} ms (target ≤ "
            f"{TARGET_STORM_P99_MS:g} ms); lost {r['storm_lost']}; stored "
            f"{r['alarms_stored']} of {r['alarm']['alarms'] + ld['alarms'] + st['alarms']} "
            f"alarms; put off (503) {st['refused_503']}; server CPU "
            f"{st['server_cpu_ms_per_request']} ms per request"
        )
    if json_out:
        full = {k: {key: r[key] for key in KEYS} | {"detail": r} for k, r in results.items()}
        typer.echo(json.dumps(full))


def main(argv: list[str] | None = None) -> None:
    """The load generator process: ``python -m bench.server_bench SPEC.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m bench.server_bench SPEC.json")
    spec = json.loads(Path(args[0]).read_text())
    report = asyncio.run(_generate(Phase(**spec["phase"])))
    Path(spec["out"]).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
