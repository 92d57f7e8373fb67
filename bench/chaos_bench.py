"""``carehub bench chaos``: does every press and every fall reach the server exactly once while
the hub is killed, the broker restarted, the server stopped and the uplink cut?

Real processes: mosquitto, ``carehub server`` (the Twilio SDK aimed at the SMS sandbox) and
``carehub hub``, whose uplink runs through a TCP proxy the bench can cut. One home's simulated
call buttons press at random moments over the run; its fall pendants stream 50 Hz frames and
replay synthetic falls (`firmware_sim.pendant.synthetic_fall`), one fall per replay.

Faults, spread evenly over the run: the hub SIGKILLed (and started again), the broker
restarted, the server stopped for a while, the uplink cut for a while. Presses happen during
the faults too. Falls are replayed only where the hub can see them: IMU frames are QoS 0 and
the fall detector lives in the hub, so a fall streamed while the hub is dead or the broker is
down is not seen by anyone (the pendant has no detector of its own); their cancel windows and
uploads may overlap any fault.

Counted from the server's admin API at the end: button alarms by (device_id, seq); fall
alarms per (pendant, replay) by time. Lost = a press or replay with no alarm; duplicates =
more than one alarm for one. Press latency (press → stored on the server, both epoch ms on
this machine) is computed only over presses made outside the outages, an outage lasting from
the fault until the system is seen healthy again plus ``--settle`` seconds.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import typer

from bench.rig import (
    AdminApi,
    TimedSmsSandbox,
    make_homes,
    now_ms,
    percentile,
    rounded,
    server_child,
    write_directory,
)
from harness.broker import Mosquitto, free_port
from harness.processes import Child, wait_until
from harness.tcp_proxy import CuttableProxy

HZ = 50.0
UPRIGHT_S = 12.0
"""Each replay starts upright: the wearer got up after the pendant's previous fall (a "fall"
back into the posture held seconds before is rolling over, and is rightly ignored)."""
FALL_CRITICAL_S = UPRIGHT_S + 11.0
"""From a replay's start until its fall is decided: upright, the fall, then the detector
confirms 7-8 s after the impact, plus frame alignment. The hub and broker must be up
throughout (s): the detector's state lives in the hub process."""
RESTART_GUARD_S = 5.0
"""After a hub or broker restart, time allowed before a replay may start (s)."""
PENDANT_GAP_S = 40.0
"""Replays on one pendant are this far apart: the detector treats impacts within 30 s of a
confirmed fall as the same fall (s)."""
FAULT_KINDS = ("hub_kill", "broker_restart", "server_stop", "uplink_cut")


@dataclass
class Outage:
    kind: str
    at_s: float
    down_s: float
    started_ms: int | None = None
    repaired_ms: int | None = None
    recovered_ms: int | None = None
    error: str | None = None

    @property
    def blinds_falls(self) -> bool:
        """While this fault lasts, no one sees a fall (the hub's detector gets no frames)."""
        return self.kind in ("hub_kill", "broker_restart")


@dataclass
class FallReplay:
    device_id: str
    at_s: float
    started_ms: int | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)


def plan_outages(
    duration_s: float,
    counts: dict[str, int],
    outage_s: float,
    hub_down_s: float,
    broker_down_s: float,
) -> list[Outage]:
    """Faults evenly spaced over the run, each kind spread out among the others."""
    order = sorted(
        (
            ((j + 0.5) / n + 1e-3 * FAULT_KINDS.index(kind), kind)
            for kind, n in counts.items()
            for j in range(n)
        ),
    )
    slot = duration_s / (len(order) + 1)
    down = {
        "hub_kill": hub_down_s,
        "broker_restart": broker_down_s,
        "server_stop": outage_s,
        "uplink_cut": outage_s,
    }
    return [Outage(kind, slot * (i + 1), down[kind]) for i, (_, kind) in enumerate(order)]


def plan_falls(falls: int, duration_s: float, outages: list[Outage]) -> list[tuple[float, int]]:
    """(start s, pendant index) of each replay: evenly spread, away from the faults that blind
    the hub, one pendant per replay at a time; as many pendants as that takes."""
    # the hub must see each replay from 2 s before its impact (after UPRIGHT_S) until it is
    # decided (FALL_CRITICAL_S); the upright lead-in before that may overlap a fault
    blind = [
        (o.at_s - 1.0 - FALL_CRITICAL_S, o.at_s + o.down_s + RESTART_GUARD_S - UPRIGHT_S + 2.0)
        for o in outages
        if o.blinds_falls
    ]
    last_s = duration_s - FALL_CRITICAL_S

    def allowed(t: float) -> bool:
        return 1.0 <= t <= last_s and not any(a < t < b for a, b in blind)

    plan: list[tuple[float, int]] = []
    busy_until: list[float] = []
    for i in range(falls):
        target = 1.0 + (last_s - 1.0) * (i + 0.5) / falls
        steps = [target + 0.25 * k for k in range(int(duration_s * 4))]
        steps += [target - 0.25 * k for k in range(int(duration_s * 4))]
        t = next((s for s in steps if allowed(s)), None)
        if t is None:
            raise ValueError(
                f"no room for {falls} falls between the faults: lengthen --duration"
                " or ask for fewer hub kills and broker restarts"
            )
        pendant = next((p for p, free in enumerate(busy_until) if free <= t), None)
        if pendant is None:
            pendant = len(busy_until)
            busy_until.append(0.0)
        busy_until[pendant] = t + PENDANT_GAP_S
        plan.append((t, pendant))
    return plan


class ChaosRun:
    """One scripted run; `report()` after `run()`."""

    def __init__(
        self,
        presses: int,
        falls: int,
        duration_s: float,
        counts: dict[str, int],
        outage_s: float,
        hub_down_s: float,
        broker_down_s: float,
        settle_s: float,
        buttons: int,
        cancel_window_s: float,
        drain_s: float,
        seed: int,
        log_level: str,
        tmp: Path,
        say: Any,
    ) -> None:
        self.presses, self.falls, self.duration_s = presses, falls, duration_s
        self.settle_s, self.cancel_window_s, self.drain_s = settle_s, cancel_window_s, drain_s
        self.log_level, self.tmp, self.say = log_level, tmp, say
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.outages = plan_outages(duration_s, counts, outage_s, hub_down_s, broker_down_s)
        self.fall_plan = plan_falls(falls, duration_s, self.outages)
        pendants = 1 + max((p for _, p in self.fall_plan), default=-1)
        self.home = make_homes(1, buttons=buttons, pendants=pendants, shared_topic="carehub")[0]
        self.press_log: list[tuple[str, int, int]] = []  # device, seq, press epoch ms
        self.replays: list[FallReplay] = []
        self.admin_token = secrets.token_urlsafe(24)

    # ------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        from firmware_sim.button import CallButton
        from firmware_sim.pendant import FallPendant

        tmp = self.tmp
        directory = write_directory(tmp / "directory.json", [self.home])
        http_port = free_port()
        base = f"http://127.0.0.1:{http_port}"
        with ExitStack() as stack:
            self.broker = stack.enter_context(Mosquitto(workdir=tmp))
            self.sms = TimedSmsSandbox()
            stack.enter_context(self.sms)
            self.proxy = stack.enter_context(CuttableProxy(http_port))
            self.server = server_child(
                tmp, http_port, self.admin_token, self.sms.url, directory, self.log_level
            )
            self.hub = Child(
                "hub",
                ["hub", "--log-level", self.log_level],
                {
                    "CAREHUB_SERVER_URL": self.proxy.url,
                    "CAREHUB_HUB_TOKEN": self.home.token,
                    "CAREHUB_MQTT_HOST": "127.0.0.1",
                    "CAREHUB_MQTT_PORT": str(self.broker.port),
                    "CAREHUB_HUB_DB": str(tmp / "hub.db"),
                    "CAREHUB_RETRY_MAX_S": "2",
                    "CAREHUB_HEARTBEAT_INTERVAL_S": "1",
                    "CAREHUB_FALL_CANCEL_WINDOW_S": str(self.cancel_window_s),
                },
                tmp / "hub.log",
            )
            stack.callback(self.hub.stop)
            stack.callback(self.server.stop)
            self.admin = AdminApi(base, self.admin_token)
            stack.callback(self.admin.close)
            self.server.start()
            self.admin.wait_up(self.server)
            self.hub.start()
            self._wait_hub_heartbeat(since_ms=0, timeout_s=60)
            args = ("127.0.0.1", self.broker.port)
            buttons = [
                stack.enter_context(CallButton(b, *args, retry_s=1.0)) for b in self.home.buttons
            ]
            pendants = [stack.enter_context(FallPendant(p, *args)) for p in self.home.pendants]
            wait_until(
                lambda: all(d.connected.is_set() for d in [*buttons, *pendants]), 30, "devices"
            )
            time.sleep(2.0)  # the detectors see a little of each stream before the run
            self.say(
                f"chaos run: {self.presses} presses on {len(buttons)} buttons, {self.falls}"
                f" falls on {len(pendants)} pendants, over {self.duration_s:.0f} s; faults: "
                + ", ".join(f"{o.kind}@{o.at_s:.0f}s" for o in self.outages)
            )
            self._script(buttons, pendants)
            self.say("run over; waiting for the server to have everything …")
            self._drain()
            return self.report()

    def _script(self, buttons: list[Any], pendants: list[Any]) -> None:
        from firmware_sim.pendant import synthetic_fall

        events: list[tuple[float, str, Any]] = []
        for i in range(self.presses):
            events.append((self.rng.uniform(0.5, self.duration_s - 0.5), "press", i % len(buttons)))
        for at_s, p in self.fall_plan:
            replay = FallReplay(self.home.pendants[p], at_s)
            self.replays.append(replay)
            events.append((at_s, "fall", (replay, pendants[p])))
        for outage in self.outages:
            events.append((outage.at_s, "fault", outage))
        events.sort(key=lambda e: e[0])
        threads = []
        start = time.monotonic()
        for at_s, kind, what in events:
            delay = start + at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if kind == "press":
                button = buttons[what]
                at = now_ms()
                seq = button.press()
                self.press_log.append((button.device_id, seq, at))
            elif kind == "fall":
                replay, pendant = what
                replay.started_ms = now_ms()
                pendant.replay(synthetic_fall(HZ, self.np_rng, lying_s=10.0, upright_s=UPRIGHT_S))
            else:
                thread = threading.Thread(target=self._outage, args=(what,), daemon=True)
                thread.start()
                threads.append(thread)
        time.sleep(max(0.0, start + self.duration_s - time.monotonic()))
        for thread in threads:
            thread.join(120)

    def _outage(self, o: Outage) -> None:
        """Inject one fault, repair it after `down_s`, and note when all is well again."""
        try:
            o.started_ms = now_ms()
            {
                "hub_kill": self.hub.kill,
                "broker_restart": self.broker.stop,
                "server_stop": self.server.stop,
                "uplink_cut": self.proxy.cut,
            }[o.kind]()
            time.sleep(o.down_s)
            o.repaired_ms = now_ms()
            if o.kind == "hub_kill":
                self.hub.start()
                self._wait_hub_heartbeat(since_ms=o.repaired_ms, timeout_s=60)
            elif o.kind == "broker_restart":
                self.broker.start()
            elif o.kind == "server_stop":
                self.server.start()
                self.admin.wait_up(self.server)
            else:
                self.proxy.restore()
            o.recovered_ms = now_ms()
        except Exception as e:  # reported, and the run goes on
            o.error = f"{type(e).__name__}: {e}"

    def _wait_hub_heartbeat(self, since_ms: int, timeout_s: float) -> None:
        """The hub is back: it is connected to the broker and its heartbeat reached the server."""
        wait_until(
            lambda: any(
                (h["last_seen_ms"] or 0) >= since_ms and h["online"] for h in self.admin.hubs()
            ),
            timeout_s,
            "hub heartbeat",
            [self.hub],
            every_s=0.1,
        )

    def _drain(self) -> None:
        want = {(d, s) for d, s, _ in self.press_log}
        deadline = time.monotonic() + self.drain_s
        while time.monotonic() < deadline:
            try:
                alarms = self.admin.alarms()
            except Exception:
                time.sleep(0.5)
                continue
            have = {(a["device_id"], a["seq"]) for a in alarms if a["kind"] == "button"}
            falls = sum(1 for a in alarms if a["kind"] == "fall")
            if want <= have and falls >= len(self.replays):
                break
            time.sleep(0.5)
        time.sleep(2.0)  # anything sent twice has had time to arrive twice

    # ------------------------------------------------------------ counting

    def report(self) -> dict[str, Any]:
        alarms = self.admin.alarms()
        pressed = {(d, s): at for d, s, at in self.press_log}
        by_press: dict[tuple[str, int], list[dict[str, Any]]] = {}
        unexpected = 0
        for a in alarms:
            if a["kind"] == "button":
                key = (a["device_id"], a["seq"])
                if key in pressed:
                    by_press.setdefault(key, []).append(a)
                else:
                    unexpected += 1
            elif a["kind"] == "fall":
                replay = self._replay_for(a)
                if replay is None:
                    unexpected += 1
                else:
                    replay.alarms.append(a)
            else:
                unexpected += 1
        lost_presses = sum(1 for k in pressed if k not in by_press)
        dup_presses = sum(len(v) - 1 for v in by_press.values())
        lost_falls = sum(1 for r in self.replays if not r.alarms)
        dup_falls = sum(max(0, len(r.alarms) - 1) for r in self.replays)

        windows = [
            (o.started_ms, (o.recovered_ms or now_ms()) + int(self.settle_s * 1000))
            for o in self.outages
            if o.started_ms is not None
        ]
        calm: list[float] = []
        stormy: list[float] = []
        for key, at in pressed.items():
            if key not in by_press:
                continue
            latency = by_press[key][0]["received_at_ms"] - at
            (stormy if any(a <= at <= b for a, b in windows) else calm).append(latency)
        sms_keys = [(m.to, m.body) for _, m in self.sms.arrivals_ns]
        return {
            "sent": len(pressed) + len(self.replays),
            "stored": len(alarms),
            "lost": lost_presses + lost_falls,
            "duplicates": dup_presses + dup_falls,
            "unexpected": unexpected,
            "presses": len(pressed),
            "presses_lost": lost_presses,
            "presses_duplicated": dup_presses,
            "falls": len(self.replays),
            "falls_lost": lost_falls,
            "falls_duplicated": dup_falls,
            "pendants": len(self.home.pendants),
            "buttons": len(self.home.buttons),
            "duration_s": self.duration_s,
            "latency_ms_p50": rounded(percentile(calm, 50)),
            "latency_ms_p99": rounded(percentile(calm, 99)),
            "latency_presses": len(calm),
            "latency_in_outages_ms_p50": rounded(percentile(stormy, 50)),
            "latency_in_outages_ms_max": rounded(max(stormy, default=None)),
            "sms": len(sms_keys),
            "sms_repeated": len(sms_keys) - len(set(sms_keys)),
            "outages": [
                {
                    "kind": o.kind,
                    "at_s": round(o.at_s, 1),
                    "down_s": o.down_s,
                    "recovery_ms": (
                        o.recovered_ms - o.repaired_ms
                        if o.recovered_ms is not None and o.repaired_ms is not None
                        else None
                    ),
                    "error": o.error,
                }
                for o in self.outages
            ],
        }

    def _replay_for(self, alarm: dict[str, Any]) -> FallReplay | None:
        """The replay of this pendant that started last before the alarm was raised (the
        detector decides within seconds; replays on one pendant are PENDANT_GAP_S apart)."""
        candidates = [
            r
            for r in self.replays
            if r.device_id == alarm["device_id"]
            and r.started_ms is not None
            and r.started_ms <= alarm["raised_at_ms"] < r.started_ms + PENDANT_GAP_S * 1000
        ]
        return max(candidates, key=lambda r: r.started_ms or 0, default=None)


def run_chaos(
    presses: int = 200,
    falls: int = 50,
    duration_s: float = 180.0,
    hub_kills: int = 3,
    broker_restarts: int = 1,
    server_stops: int = 1,
    uplink_cuts: int = 1,
    outage_s: float = 8.0,
    hub_down_s: float = 1.0,
    broker_down_s: float = 2.0,
    settle_s: float = 3.0,
    buttons: int = 4,
    cancel_window_s: float = 1.5,
    drain_s: float = 90.0,
    seed: int = 1,
    log_level: str = "INFO",
    keep: Path | None = None,
    say: Any = print,
) -> dict[str, Any]:
    tmp = keep or Path(tempfile.mkdtemp(prefix="carehub-bench-chaos-"))
    tmp.mkdir(parents=True, exist_ok=True)
    counts = {
        "hub_kill": hub_kills,
        "broker_restart": broker_restarts,
        "server_stop": server_stops,
        "uplink_cut": uplink_cuts,
    }
    try:
        return ChaosRun(
            presses,
            falls,
            duration_s,
            {k: n for k, n in counts.items() if n > 0},
            outage_s,
            hub_down_s,
            broker_down_s,
            settle_s,
            max(1, buttons),
            cancel_window_s,
            drain_s,
            seed,
            log_level,
            tmp,
            say,
        ).run()
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def bench_chaos(
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all figures."),
    presses: int = typer.Option(200, help="Button presses, at random moments over the run."),
    falls: int = typer.Option(50, help="Synthetic falls replayed by the pendants (0: none)."),
    duration: float = typer.Option(180.0, help="Length of the scripted run (s)."),
    hub_kills: int = typer.Option(3, help="Times the hub is killed with SIGKILL."),
    broker_restarts: int = typer.Option(1, help="Times the MQTT broker is restarted."),
    server_stops: int = typer.Option(1, help="Times the server is stopped for --outage s."),
    uplink_cuts: int = typer.Option(1, help="Times the hub's uplink is cut for --outage s."),
    outage: float = typer.Option(8.0, help="How long a server stop or uplink cut lasts (s)."),
    settle: float = typer.Option(
        3.0, help="Seconds after recovery still counted as outage for the latency."
    ),
    buttons: int = typer.Option(4, help="Call buttons in the home."),
    seed: int = typer.Option(1, help="Random seed of the script."),
    keep: Path | None = typer.Option(
        None, help="Keep logs and databases in this directory (default: a temporary one)."
    ),
    log_level: str = typer.Option("INFO", help="Log level of the server and hub."),
) -> None:
    """Kill, restart and cut the system under a scripted run; count lost and duplicated alarms."""
    echo = typer.echo
    r = run_chaos(
        presses=presses,
        falls=falls,
        duration_s=duration,
        hub_kills=hub_kills,
        broker_restarts=broker_restarts,
        server_stops=server_stops,
        uplink_cuts=uplink_cuts,
        outage_s=outage,
        settle_s=settle,
        buttons=buttons,
        seed=seed,
        log_level=log_level,
        keep=keep,
        say=echo,
    )
    echo(
        f"Chaos benchmark: {r['presses']} presses and {r['falls']} falls sent over"
        f" {r['duration_s']:.0f} s; {r['stored']} alarms stored on the server"
    )
    echo(
        f"  lost {r['lost']} (presses {r['presses_lost']}, falls {r['falls_lost']}),"
        f" duplicates {r['duplicates']} (presses {r['presses_duplicated']},"
        f" falls {r['falls_duplicated']}), unexpected {r['unexpected']}   (target 0 / 0)"
    )
    echo(
        f"  press → stored on server, outside outages ({r['latency_presses']} presses):"
        f" p50 {r['latency_ms_p50']} ms, p99 {r['latency_ms_p99']} ms;"
        f" during outages p50 {r['latency_in_outages_ms_p50']} ms,"
        f" max {r['latency_in_outages_ms_max']} ms"
    )
    for o in r["outages"]:
        echo(
            f"  {o['kind']:<15} at {o['at_s']:>6.1f} s, down {o['down_s']} s,"
            f" healthy {o['recovery_ms']} ms after repair"
            + (f"  ERROR {o['error']}" if o["error"] else "")
        )
    echo(f"  SMS requests {r['sms']} (repeated {r['sms_repeated']})")
    if as_json:
        echo(json.dumps(r))
