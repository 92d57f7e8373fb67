"""``carehub bench e2e``: how long from a call-button press to the SMS request, with nothing
failing, beside the bare MQTT round trip measured in the same run.

Everything is real and local: one mosquitto, the server process (SQLite, the Twilio SDK aimed
at the SMS sandbox in this process), and `homes` hubs, each with its own store file, MQTT
client id, base topic, token, elder and doctor, run by ``--workers`` hub-pool processes
(`bench.hub_pool`). Every home has a simulated call button (paho, as firmware would).

The presses are spread at random over ``--duration`` seconds. A press's latency runs from just
before ``CallButton.press()`` to the arrival of the SMS request naming its alarm at the
sandbox, both on this process's monotonic clock. The floor is a QoS-1 publish from one MQTT
client to another through the same broker, measured by probes interleaved with the presses,
so it sees the same load.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import typer

from bench.hub_pool import write_spec
from bench.rig import (
    AdminApi,
    Home,
    TimedSmsSandbox,
    make_homes,
    now_ms,
    percentile,
    rounded,
    server_child,
    sms_refs,
    write_directory,
)
from harness.broker import Mosquitto, free_port
from harness.processes import Child, wait_until

TARGET_P99_MS = 250.0


@dataclass
class Press:
    home: Home
    seq: int
    at_ns: int  # perf_counter_ns just before the press
    at_ms: int  # epoch ms, to compare with the hub's and server's records
    sms_ns: int | None = None
    alarm_id: str | None = None


class FloorProbe:
    """QoS-1 publish → receive between two MQTT clients on the broker (ms)."""

    def __init__(self, port: int) -> None:
        self.topic = f"bench/floor/{secrets.token_hex(4)}"
        self.samples_ms: list[float] = []
        self._sent: dict[int, int] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._n = 0
        self.sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.topic}-sub")
        self.pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.topic}-pub")
        self.sub.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.sub.on_subscribe = lambda *_: self._ready.set()
        self.sub.on_message = self._on_message
        for client in (self.sub, self.pub):
            client.connect("127.0.0.1", port, keepalive=30)
            client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        at = time.perf_counter_ns()
        n = int(msg.payload)
        with self._lock:
            sent = self._sent.pop(n, None)
        if sent is not None:
            self.samples_ms.append((at - sent) / 1e6)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        if not self._ready.wait(timeout_s):
            raise TimeoutError("floor probe could not subscribe")

    def probe(self) -> None:
        self._n += 1
        with self._lock:
            self._sent[self._n] = time.perf_counter_ns()
        self.pub.publish(self.topic, str(self._n).encode(), qos=1)

    def close(self) -> None:
        for client in (self.pub, self.sub):
            client.disconnect()
            client.loop_stop()


def _hub_entry(home: Home, tmp: Path, server_url: str, mqtt_port: int) -> dict[str, Any]:
    return {
        "server_url": server_url,
        "hub_token": home.token,
        "mqtt_host": "127.0.0.1",
        "mqtt_port": mqtt_port,
        "base_topic": home.base_topic,
        "mqtt_client_id": f"carehub-{home.hub_id}",
        "hub_db": str(tmp / "hubs" / f"{home.hub_id}.db"),
        "heartbeat_interval_s": 10.0,
        "merge_repeats": False,  # one alarm per press, as the server is told (rig)
    }


@contextmanager
def _children(children: list[Child]) -> Iterator[list[Child]]:
    try:
        yield children
    finally:
        for child in reversed(children):
            child.stop()


def run_e2e(
    homes: int = 100,
    presses: int = 1000,
    workers: int = 4,
    duration_s: float = 30.0,
    seed: int = 1,
    log_level: str = "WARNING",
    keep: Path | None = None,
    say: Any = print,
    backend: str = "sqlite",
) -> dict[str, Any]:
    """Run the benchmark; returns the report (see the module docstring). ``backend``
    ``postgresql`` runs the server on a fresh PostgreSQL database, dropped afterwards."""
    from firmware_sim.button import CallButton

    rng = random.Random(seed)
    tmp = keep or Path(tempfile.mkdtemp(prefix="carehub-bench-e2e-"))
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "hubs").mkdir(exist_ok=True)
    the_homes = make_homes(homes)
    directory = write_directory(tmp / "directory.json", the_homes)
    admin_token = secrets.token_urlsafe(24)
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    workers = max(1, min(workers, homes))
    try:
        with ExitStack() as stack:
            broker = stack.enter_context(Mosquitto(workdir=tmp))
            sms = TimedSmsSandbox()
            stack.enter_context(sms)
            database_url = None
            if backend == "postgresql":
                from bench.server_bench import pg_database

                database_url = stack.enter_context(pg_database())
            children = stack.enter_context(_children([]))
            server = server_child(
                tmp, http_port, admin_token, sms.url, directory, log_level, database_url
            )
            children.append(server.start())
            admin = AdminApi(base, admin_token)
            stack.callback(admin.close)
            admin.wait_up(server)
            say(f"server up; starting {homes} hubs in {workers} hub-pool processes")
            for w in range(workers):
                entries = [_hub_entry(h, tmp, base, broker.port) for h in the_homes[w::workers]]
                spec = write_spec(tmp / f"pool-{w}.json", entries, log_level)
                children.append(
                    Child(
                        f"hub-pool-{w}",
                        [str(spec)],
                        {},
                        tmp / f"hub-pool-{w}.log",
                        module="bench.hub_pool",
                    ).start()
                )
            wait_until(
                lambda: sum(1 for h in admin.hubs() if h["online"]) == homes,
                120,
                "every hub online",
                children,
                every_s=0.5,
            )
            buttons = {
                h.hub_id: stack.enter_context(
                    CallButton(h.buttons[0], "127.0.0.1", broker.port, h.base_topic)
                )
                for h in the_homes
            }
            wait_until(
                lambda: all(b.connected.is_set() for b in buttons.values()), 30, "buttons up"
            )
            floor = FloorProbe(broker.port)
            stack.callback(floor.close)
            floor.wait_ready()
            time.sleep(1.0)  # devices announce themselves; the hubs settle

            # Each home presses presses/homes times, at random moments over the run; the
            # floor probes run on their own random moments, as many as the presses.
            who = [the_homes[i % homes] for i in range(presses)]
            events = sorted(
                [(rng.uniform(0, duration_s), "press", h) for h in who]
                + [(rng.uniform(0, duration_s), "probe", None) for _ in range(presses)],
                key=lambda e: e[0],
            )
            say(f"{presses} presses over {duration_s:.0f} s across {homes} homes …")
            done: list[Press] = []
            start = time.perf_counter()
            for offset, _kind, home in events:
                delay = start + offset - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if home is None:
                    floor.probe()
                    continue
                at_ns, at_ms = time.perf_counter_ns(), now_ms()
                seq = buttons[home.hub_id].press()
                done.append(Press(home, seq, at_ns, at_ms))
            lag_s = time.perf_counter() - start - duration_s
            drain_until = time.monotonic() + 120
            while len(sms.arrivals_ns) < presses and time.monotonic() < drain_until:
                time.sleep(0.1)  # what has not arrived by then counts as not matched
            time.sleep(0.5)
            report = _report(done, buttons, sms, admin, floor, homes, duration_s)
            report["schedule_lag_s"] = round(max(0.0, lag_s), 3)
            report["backend"] = backend
            return report
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _report(
    presses: list[Press],
    buttons: dict[str, Any],
    sms: TimedSmsSandbox,
    admin: AdminApi,
    floor: FloorProbe,
    homes: int,
    duration_s: float,
) -> dict[str, Any]:
    by_ref: dict[tuple[str, str], list[tuple[int, Any]]] = {}
    for at_ns, msg in sms.arrivals_ns:
        for ref in sms_refs(msg.body):
            by_ref.setdefault((msg.to, ref), []).append((at_ns, msg))
    # the server names alarms by its own id (the SMS reference); a hub's ids are its own
    alarms = {(a["hub_id"], a["hub_alarm_id"]): a for a in admin.alarms(1000)}
    for p in presses:
        hit = buttons[p.home.hub_id].acks.wait_for(
            lambda a, p=p: a.seq == p.seq and a.alarm_id is not None, 0
        )
        if hit is None:
            continue
        p.alarm_id = hit[1].alarm_id
        assert p.alarm_id is not None
        stored = alarms.get((p.home.hub_id, p.alarm_id))
        ref = stored["id"][-6:].upper() if stored else ""
        arrivals = by_ref.get((p.home.doctor_phone, ref), [])
        if arrivals:
            p.sms_ns = arrivals[0][0]
    latencies = [(p.sms_ns - p.at_ns) / 1e6 for p in presses if p.sms_ns is not None]
    sms_ms = {(m.to, ref): m.received_ms for _, m in sms.arrivals_ns for ref in sms_refs(m.body)}
    to_hub, hub_to_server, server_to_sms = [], [], []
    for p in presses:
        a = alarms.get((p.home.hub_id, p.alarm_id or ""))
        if a is None:
            continue
        to_hub.append(a["raised_at_ms"] - p.at_ms)
        hub_to_server.append(a["received_at_ms"] - a["raised_at_ms"])
        sent = sms_ms.get((p.home.doctor_phone, a["id"][-6:].upper()))
        if sent is not None:
            server_to_sms.append(sent - a["received_at_ms"])
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    f50, f99 = percentile(floor.samples_ms, 50), percentile(floor.samples_ms, 99)
    return {
        "presses": len(presses),
        "homes": homes,
        "duration_s": duration_s,
        "sms": len(sms.arrivals_ns),
        "matched": len(latencies),
        "latency_ms_p50": rounded(p50),
        "latency_ms_p99": rounded(p99),
        "latency_ms_max": rounded(max(latencies, default=None)),
        "floor_samples": len(floor.samples_ms),
        "floor_ms_p50": rounded(f50, 3),
        "floor_ms_p99": rounded(f99, 3),
        "ratio_p50": rounded(p50 / f50 if p50 is not None and f50 else None),
        "ratio_p99": rounded(p99 / f99 if p99 is not None and f99 else None),
        "stage_ms_p50": {
            "press_to_hub_commit": rounded(percentile(to_hub, 50)),
            "hub_to_server_commit": rounded(percentile(hub_to_server, 50)),
            "server_to_sms": rounded(percentile(server_to_sms, 50)),
        },
        "stage_ms_p99": {
            "press_to_hub_commit": rounded(percentile(to_hub, 99)),
            "hub_to_server_commit": rounded(percentile(hub_to_server, 99)),
            "server_to_sms": rounded(percentile(server_to_sms, 99)),
        },
        "target_p99_ms": TARGET_P99_MS,
    }


def bench_e2e(
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all figures."),
    homes: int = typer.Option(100, help="Simulated homes: one hub, call button, doctor each."),
    presses: int = typer.Option(1000, help="Button presses in total, spread over the homes."),
    duration: float = typer.Option(
        100.0, help="Seconds over which the presses are spread (default: 10 presses/s)."
    ),
    workers: int = typer.Option(4, help="Hub-pool processes the hubs are shared among."),
    seed: int = typer.Option(1, help="Random seed of the press schedule."),
    keep: Path | None = typer.Option(
        None, help="Keep logs and databases in this directory (default: a temporary one)."
    ),
    log_level: str = typer.Option("WARNING", help="Log level of the server and hubs."),
    backend: str = typer.Option(
        "sqlite",
        help="The server's database: sqlite, or postgresql (a fresh database on a private"
        " server started for the run, or on CAREHUB_TEST_PG when set; dropped after).",
    ),
) -> None:
    """Press-to-SMS latency (p50/p99) over many homes, beside the bare MQTT floor."""
    echo = typer.echo
    if backend not in ("sqlite", "postgresql"):
        raise typer.BadParameter("sqlite or postgresql", param_hint="--backend")
    r = run_e2e(homes, presses, workers, duration, seed, log_level, keep, say=echo, backend=backend)
    echo(
        f"End-to-end benchmark ({r['backend']}): {r['presses']} presses across {r['homes']}"
        f" homes in {r['duration_s']:.0f} s; {r['sms']} SMS requests, {r['matched']} matched"
        " to a press"
    )
    echo(
        f"  press → SMS request    p50 {r['latency_ms_p50']} ms   p99 {r['latency_ms_p99']} ms"
        f"   (target p99 ≤ {TARGET_P99_MS:.0f} ms)"
    )
    echo(f"  MQTT floor (pub→recv) p50 {r['floor_ms_p50']} ms   p99 {r['floor_ms_p99']} ms")
    echo(f"  ratio                 p50 {r['ratio_p50']}×   p99 {r['ratio_p99']}×")
    for q in ("p50", "p99"):
        stages = r[f"stage_ms_{q}"]
        echo(
            f"  stages {q} (ms clocks): press→hub commit {stages['press_to_hub_commit']},"
            f" hub→server commit {stages['hub_to_server_commit']},"
            f" server→SMS {stages['server_to_sms']}"
        )
    if as_json:
        echo(json.dumps(r))
