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

With ``--hostile`` (see `bench.hostile`): hostile messages on every channel throughout the run
from two extra MQTT clients (far-off clocks, 1e400, NaN, impossible values, empty frames,
wrong types, 10 000-level JSON, payloads beyond 64 KiB, non-UTF-8 bytes, bad topics,
retained junk, duplicated and reordered frames), for the home's real ids and unknown ones;
the broker is `carehub broker` (durable when it has ``--data-dir``); the hub keeps its default
upload backoff; and falls are also played where the hub is blind: one impact while each
broker restart is down (the pendant must buffer and replay its frames) and one while each
killed hub is down (the broker must queue the frames for the hub's persistent session).
Those must be detected too, late. Also reported: ``recovery_s_max`` (server back → first
alarm queued during the outage stored), tracebacks in the hub's log and hub deaths. After
the run is counted, with their own figures: the hub restarted on a damaged store
(`_store_damage_phase`), then a flood phase (`flood_phase`): one of the buttons floods,
another presses.
"""

from __future__ import annotations

import contextlib
import json
import os
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

import httpx
import numpy as np
import typer

from bench.hostile import KINDS, Devices, HostilePublisher
from bench.rig import (
    AdminApi,
    BrokerProcess,
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
IMPACT_OFFSET_S = UPRIGHT_S + 0.44
"""From a replay's first sample to its impact peak (upright, 0.4 s free fall, peak)."""
FRAME_LEAD_S = 0.3
"""A replay is queued this long before the pendant tick that starts streaming it."""
HOSTILE_HUB_DOWN_S = 3.0
"""With --hostile a killed hub stays down this long: the frames queued for it by the broker
then hold the 1.5 s before an impact that the detector needs (s)."""
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Outage:
    kind: str
    at_s: float
    down_s: float
    started_ms: int | None = None
    repaired_ms: int | None = None
    recovered_ms: int | None = None
    reachable_ms: int | None = None
    """Server stop / uplink cut: when the server could be reached again (epoch ms)."""
    error: str | None = None

    @property
    def blinds_falls(self) -> bool:
        """While this fault lasts, no one sees a fall (the hub's detector gets no frames)."""
        return self.kind in ("hub_kill", "broker_restart")

    @property
    def blind_impact_s(self) -> float:
        """Where, after the fault, a --hostile fall aims its impact: while the hub is down
        (late enough for 1.5 s+ of queued frames before it), or mid broker outage (s)."""
        if self.kind == "hub_kill":
            return max(0.5, self.down_s - 0.5)
        return 0.75 * self.down_s


@dataclass
class FallReplay:
    device_id: str
    at_s: float
    aim: str = "live"
    """live, or the fault (hub_kill, broker_restart) its impact was aimed into."""
    started_ms: int | None = None
    impact_ms: int | None = None
    """Estimated wall time of the impact peak (epoch ms, the pendant's stream clock)."""
    alarms: list[dict[str, Any]] = field(default_factory=list)


def plan_outages(
    duration_s: float,
    counts: dict[str, int],
    outage_s: float,
    hub_down_s: float,
    broker_down_s: float,
    start_s: float = 0.0,
) -> list[Outage]:
    """Faults evenly spaced over the run after `start_s`, each kind spread out among the
    others."""
    order = sorted(
        (
            ((j + 0.5) / n + 1e-3 * FAULT_KINDS.index(kind), kind)
            for kind, n in counts.items()
            for j in range(n)
        ),
    )
    slot = (duration_s - start_s) / (len(order) + 1)
    down = {
        "hub_kill": hub_down_s,
        "broker_restart": broker_down_s,
        "server_stop": outage_s,
        "uplink_cut": outage_s,
    }
    return [Outage(kind, start_s + slot * (i + 1), down[kind]) for i, (_, kind) in enumerate(order)]


def plan_falls(
    falls: int, duration_s: float, outages: list[Outage], strict: bool = True
) -> list[tuple[float, int]]:
    """(start s, pendant index) of each replay: evenly spread, away from the faults that blind
    the hub, one pendant per replay at a time; as many pendants as that takes. Without
    `strict`, a replay with no room away from the faults stays where it was aimed."""
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

    plan: list[float] = []
    for i in range(falls):
        target = 1.0 + (last_s - 1.0) * (i + 0.5) / falls
        steps = [target + 0.25 * k for k in range(int(duration_s * 4))]
        steps += [target - 0.25 * k for k in range(int(duration_s * 4))]
        t = next((s for s in steps if allowed(s)), None)
        if t is None and not strict:
            t = max(1.0, target)
        if t is None:
            raise ValueError(
                f"no room for {falls} falls between the faults: lengthen --duration"
                " or ask for fewer hub kills and broker restarts"
            )
        plan.append(t)
    return assign_pendants(plan)


def assign_pendants(times: list[float]) -> list[tuple[float, int]]:
    """(start s, pendant index) for replays starting at `times`: a pendant replays again only
    PENDANT_GAP_S after its previous replay; as many pendants as that takes."""
    busy_until: list[float] = []
    plan: list[tuple[float, int]] = []
    for t in times:
        pendant = next((p for p, free in enumerate(busy_until) if free <= t), None)
        if pendant is None:
            pendant = len(busy_until)
            busy_until.append(0.0)
        busy_until[pendant] = t + PENDANT_GAP_S
        plan.append((t, pendant))
    return plan


def plan_hostile_falls(
    falls: int, duration_s: float, outages: list[Outage]
) -> list[tuple[float, int, str]]:
    """(start s, pendant index, aim) of each replay with --hostile: first one aimed into each
    hub kill and broker restart (impact while it is down; as many as `falls` allows, in time
    order), the rest evenly spread with no regard for faults (all must be detected)."""
    aimed: list[tuple[float, str]] = []
    for o in outages:
        start = o.at_s + o.blind_impact_s - IMPACT_OFFSET_S
        if o.blinds_falls and start >= 1.0 and len(aimed) < falls:
            aimed.append((start, o.kind))
    # the others away from those faults where there is room (so "live" and "blind" falls
    # can be told apart), else anywhere
    live = plan_falls(falls - len(aimed), duration_s, outages, strict=False)
    spread = [(t, "live") for t, _ in live]
    ordered = sorted(aimed + spread)
    return [
        (t, p, aim)
        for (t, p), (_, aim) in zip(assign_pendants([t for t, _ in ordered]), ordered, strict=True)
    ]


def store_damage_figures(
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    raised: set[tuple[str, int]],
    presses: set[tuple[str, int]],
) -> dict[str, int]:
    """The damaged-store phase counted on its own, from the server's alarms `before` the
    damage and `after` it: its `presses` (device, seq) never stored (lost), alarms for a
    press already `raised` before the damage (duplicates: the fresh store forgot it), and
    anything else new (unexpected)."""
    seen = {a["id"] for a in before}
    new = [a for a in after if a["id"] not in seen]
    keys = [(a["device_id"], a["seq"]) if a["kind"] == "button" else None for a in new]
    stored = {k for k in keys if k is not None}
    return {
        "store_damage_alarms_lost": len(presses - stored),
        "store_damage_duplicates": sum(1 for k in keys if k in raised),
        "store_damage_unexpected": sum(1 for k in keys if k not in raised and k not in presses),
    }


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
        hostile: bool = False,
        hostile_rate: float = 4.0,
    ) -> None:
        self.presses, self.falls, self.duration_s = presses, falls, duration_s
        self.settle_s, self.cancel_window_s, self.drain_s = settle_s, cancel_window_s, drain_s
        self.log_level, self.tmp, self.say = log_level, tmp, say
        self.hostile, self.hostile_rate = hostile, hostile_rate
        self.rng = random.Random(seed)
        self.seed = seed
        self.np_rng = np.random.default_rng(seed)
        # with --hostile the first fault comes late enough for a fall to be aimed into it
        n = sum(counts.values())
        first_s = IMPACT_OFFSET_S - 1.0
        start_s = max(0.0, (first_s * (n + 1) - duration_s) / n) if hostile and n else 0.0
        self.outages = plan_outages(
            duration_s, counts, outage_s, hub_down_s, broker_down_s, start_s=start_s
        )
        self.fall_plan = (
            plan_hostile_falls(falls, duration_s, self.outages)
            if hostile
            else [(t, p, "live") for t, p in plan_falls(falls, duration_s, self.outages)]
        )
        pendants = 1 + max((p for _, p, _ in self.fall_plan), default=-1)
        self.home = make_homes(1, buttons=buttons, pendants=pendants, shared_topic="carehub")[0]
        self.press_log: list[tuple[str, int, int]] = []  # device, seq, press epoch ms
        self.replays: list[FallReplay] = []
        self.admin_token = secrets.token_urlsafe(24)
        self.pendant_phase_ms: dict[str, int] = {}
        self.injector: HostilePublisher | None = None
        self.broker_durable: bool | None = None
        self.hub_crashes = 0
        self._hub_lock = threading.Lock()
        self._hub_expected = False
        self._done = threading.Event()

    # ------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        from firmware_sim.button import CallButton
        from firmware_sim.pendant import FallPendant

        tmp = self.tmp
        directory = write_directory(tmp / "directory.json", [self.home])
        http_port = free_port()
        self.base_url = f"http://127.0.0.1:{http_port}"
        with ExitStack() as stack:
            if self.hostile:
                broker = BrokerProcess(tmp, log_level=self.log_level)
                self.broker_durable = broker.durable
                self.broker: BrokerProcess | Mosquitto = stack.enter_context(broker)
            else:
                self.broker = stack.enter_context(Mosquitto(workdir=tmp))
            self.sms = TimedSmsSandbox()
            stack.enter_context(self.sms)
            self.proxy = stack.enter_context(CuttableProxy(http_port))
            self.server = server_child(
                tmp, http_port, self.admin_token, self.sms.url, directory, self.log_level
            )
            hub_env = {
                "CAREHUB_SERVER_URL": self.proxy.url,
                "CAREHUB_HUB_TOKEN": self.home.token,
                "CAREHUB_MQTT_HOST": "127.0.0.1",
                "CAREHUB_MQTT_PORT": str(self.broker.port),
                "CAREHUB_HUB_DB": str(tmp / "hub.db"),
                "CAREHUB_HEARTBEAT_INTERVAL_S": "1",
                "CAREHUB_FALL_CANCEL_WINDOW_S": str(self.cancel_window_s),
                "CAREHUB_MERGE_REPEATS": "false",  # each press its own alarm, as on the server
            }
            if not self.hostile:  # --hostile measures recovery with the hub's own backoff
                hub_env["CAREHUB_RETRY_MAX_S"] = "2"
            self.hub = Child(
                "hub", ["hub", "--log-level", self.log_level], hub_env, tmp / "hub.log"
            )
            stack.callback(self.hub.stop)
            stack.callback(self.server.stop)
            self.admin = AdminApi(self.base_url, self.admin_token)
            stack.callback(self.admin.close)
            self.server.start()
            self.admin.wait_up(self.server)
            with self._hub_lock:
                self.hub.start()
                self._hub_expected = True
            self._wait_hub_heartbeat(since_ms=0, timeout_s=60)
            watcher = threading.Thread(target=self._watch_hub, daemon=True, name="hub-watch")
            watcher.start()
            stack.callback(watcher.join, 5)
            stack.callback(self._done.set)
            args = ("127.0.0.1", self.broker.port)
            buttons = [
                stack.enter_context(CallButton(b, *args, retry_s=1.0)) for b in self.home.buttons
            ]
            pendants = []
            for p in self.home.pendants:
                pendants.append(stack.enter_context(FallPendant(p, *args)))
                # its sample clock starts now and frames are 1 s: ticks fall on this phase
                self.pendant_phase_ms[p] = now_ms() % 1000
            wait_until(
                lambda: all(d.connected.is_set() for d in [*buttons, *pendants]), 30, "devices"
            )
            if self.hostile:
                self.injector = stack.enter_context(
                    HostilePublisher(
                        *args,
                        Devices("carehub", self.home.buttons, self.home.pendants),
                        rate_per_s=self.hostile_rate,
                        seed=self.seed,
                    )
                )
            time.sleep(2.0)  # the detectors see a little of each stream before the run
            self.say(
                f"chaos run{' (hostile)' if self.hostile else ''}: {self.presses} presses on"
                f" {len(buttons)} buttons, {self.falls} falls on {len(pendants)} pendants, over"
                f" {self.duration_s:.0f} s; faults: "
                + ", ".join(f"{o.kind}@{o.at_s:.0f}s" for o in self.outages)
            )
            self._script(buttons, pendants)
            if self.injector is not None:
                self.injector.stop_injecting()
            self.say("run over; waiting for the server to have everything …")
            self._drain()
            # counted before the damaged store and the flood: their alarms are not the run's
            report = self.report()
            if self.hostile:
                report.update(self._store_damage_phase(buttons))
            if self.hostile and len(buttons) > 1:
                report.update(flood_phase(self, buttons[0].device_id, buttons[-1]))
            report["alarms_lost"] = alarms_lost(report)
            self._done.set()
            return report

    def _press_times(self) -> list[float]:
        """One press in the middle of each server stop and uplink cut (so each outage has an
        alarm to recover), the rest at random moments."""
        pinned = [
            o.at_s + o.down_s / 2 for o in self.outages if o.kind in ("server_stop", "uplink_cut")
        ][: self.presses]
        return pinned + [
            self.rng.uniform(0.5, self.duration_s - 0.5) for _ in range(self.presses - len(pinned))
        ]

    def _script(self, buttons: list[Any], pendants: list[Any]) -> None:
        from firmware_sim.pendant import synthetic_fall

        start = time.monotonic()
        start_ms = now_ms()
        events: list[tuple[float, str, Any]] = []
        for i, at_s in enumerate(self._press_times()):
            events.append((at_s, "press", i % len(buttons)))
        for at_s, p, aim in self.fall_plan:
            replay = FallReplay(self.home.pendants[p], at_s, aim)
            # queue it just before the pendant tick nearest `at_s`: the impact time is known
            phase = self.pendant_phase_ms[replay.device_id]
            want_ms = start_ms + at_s * 1000
            tick_ms = phase + round((want_ms - phase) / 1000) * 1000
            if tick_ms - FRAME_LEAD_S * 1000 < start_ms:
                tick_ms += 1000
            replay.impact_ms = int(tick_ms + IMPACT_OFFSET_S * 1000)
            self.replays.append(replay)
            call_s = (tick_ms - start_ms) / 1000 - FRAME_LEAD_S
            events.append((call_s, "fall", (replay, pendants[p])))
        for outage in self.outages:
            events.append((outage.at_s, "fault", outage))
        events.sort(key=lambda e: e[0])
        threads = []
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
            if o.kind == "hub_kill":
                with self._hub_lock:
                    self._hub_expected = False
                    self.hub.kill()
            else:
                {
                    "broker_restart": self.broker.stop,
                    "server_stop": self.server.stop,
                    "uplink_cut": self.proxy.cut,
                }[o.kind]()
            time.sleep(o.down_s)
            o.repaired_ms = now_ms()
            if o.kind == "hub_kill":
                with self._hub_lock:
                    self.hub.start()
                    self._hub_expected = True
                self._wait_hub_heartbeat(since_ms=o.repaired_ms, timeout_s=60)
            elif o.kind == "broker_restart":
                self.broker.start()
            elif o.kind == "server_stop":
                self.server.start()
                o.reachable_ms = self._wait_server_reachable(60)
            else:
                self.proxy.restore()
                o.reachable_ms = now_ms()
            o.recovered_ms = now_ms()
        except Exception as e:  # reported, and the run goes on
            o.error = f"{type(e).__name__}: {e}"

    def _store_damage_phase(self, buttons: list[Any]) -> dict[str, Any]:
        """--hostile, after the run is counted: the hub restarted on a store whose header a
        torn write overwrote. It must set the store aside, report `hub_store_damaged` to the
        server, and take a press from each button (counted from the devices' side).

        Its own figures, apart from the run's: a press the hub had already raised before the
        damage, published again after it (a button still retrying it, the broker delivering
        it once more on the hub's reconnection), becomes a new alarm, since the fresh store no
        longer knows its (device, seq): `store_damage_duplicates` (docs/reliability.md, "When
        the hub's store fails")."""
        known = self.admin.alarms()
        raised = {(a["device_id"], a["seq"]) for a in known if a["kind"] == "button"}
        with self._hub_lock:
            self._hub_expected = False
            self.hub.stop()
            with (self.tmp / "hub.db").open("r+b") as f:
                f.write(os.urandom(100))
            since = now_ms()
            self.hub.start()
            self._hub_expected = True
        try:  # a hub that hangs on the damaged store still gets its presses, to lose them
            self._wait_hub_heartbeat(since_ms=since, timeout_s=60)
        except TimeoutError as e:
            self.say(f"hub not back on a damaged store: {e}")
        presses = [(b.device_id, b.press()) for b in buttons]
        faults: list[Any] = []
        alarms: set[tuple[str, int]] = set()
        deadline = time.monotonic() + max(30.0, self.drain_s)
        while time.monotonic() < deadline and not (faults and set(presses) <= alarms):
            time.sleep(0.5)
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(
                    f"{self.base_url}/api/v1/admin/faults",
                    params={"limit": 1000},
                    headers={"Authorization": f"Bearer {self.admin_token}"},
                    timeout=10,
                )
                faults = [f for f in answer.json() if f["fault"] == "hub_store_damaged"]
                alarms = {(a["device_id"], a["seq"]) for a in self.admin.alarms()}
        time.sleep(2.0)  # anything published again has had time to arrive
        return {
            "store_damage_reported": bool(faults),
            "store_damage_presses": len(presses),
            **store_damage_figures(known, self.admin.alarms(), raised, set(presses)),
        }

    def _wait_server_reachable(self, timeout_s: float) -> int:
        """Epoch ms at which the request that first found the server healthy was sent."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.server.running:
                raise RuntimeError(f"server exited early:\n{self.server.log_tail()}")
            sent_ms = now_ms()
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return sent_ms
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not healthy {timeout_s} s after its restart")

    def _watch_hub(self) -> None:
        """Count every time the hub is found dead while it should be running (and start it
        again, so the run goes on and measures the rest)."""
        while not self._done.wait(0.2):
            with self._hub_lock:
                if self._hub_expected and not self.hub.running:
                    self.hub_crashes += 1
                    code = self.hub.process.returncode if self.hub.process else None
                    self.say(f"hub found dead (exit code {code}); starting it again")
                    self.hub.start()

    def _wait_hub_heartbeat(self, since_ms: int, timeout_s: float) -> None:
        """The hub is back: it is connected to the broker and its heartbeat reached the server."""
        wait_until(
            lambda: any(
                (h["last_seen_ms"] or 0) >= since_ms and h["online"] for h in self.admin.hubs()
            ),
            timeout_s,
            "hub heartbeat",
            every_s=0.1,
        )

    def _expected_presses(self) -> dict[tuple[str, int], int | None]:
        """(device, seq) → press epoch ms of every press that must become one alarm: the
        buttons' presses and the hostile skewed-clock presses the broker took (time None)."""
        expected: dict[tuple[str, int], int | None] = {(d, s): at for d, s, at in self.press_log}
        if self.injector is not None:
            for key in self.injector.skewed_presses():
                expected.setdefault(key, None)
        return expected

    def _drain(self) -> None:
        want = set(self._expected_presses())
        deadline = time.monotonic() + self.drain_s
        while time.monotonic() < deadline:
            try:
                alarms = self.admin.alarms()
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            have = {(a["device_id"], a["seq"]) for a in alarms if a["kind"] == "button"}
            falls = [a for a in alarms if a["kind"] == "fall"]
            seen = {id(r) for a in falls if (r := self._replay_for(a)) is not None}
            if want <= have and all(id(r) in seen for r in self.replays):
                break
            time.sleep(0.5)
        time.sleep(2.0)  # anything sent twice has had time to arrive twice

    # ------------------------------------------------------------ counting

    def report(self) -> dict[str, Any]:
        alarms = self.admin.alarms()
        expected = self._expected_presses()
        by_press: dict[tuple[str, int], list[dict[str, Any]]] = {}
        unexpected = 0
        for r in self.replays:
            r.alarms.clear()
        for a in alarms:
            if a["kind"] == "button":
                key = (a["device_id"], a["seq"])
                if key in expected:
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
        pressed = {k: at for k, at in expected.items() if at is not None}
        skewed = [k for k, at in expected.items() if at is None]
        lost_presses = sum(1 for k in pressed if k not in by_press)
        dup_presses = sum(len(by_press[k]) - 1 for k in pressed if k in by_press)
        lost_skewed = sum(1 for k in skewed if k not in by_press)
        dup_skewed = sum(len(by_press[k]) - 1 for k in skewed if k in by_press)
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

        blind = [r for r in self.replays if self._blinded_by(r) is not None]
        decided = [
            (min(a["raised_at_ms"] for a in r.alarms) - r.impact_ms) / 1000
            for r in self.replays
            if r.alarms and r.impact_ms is not None
        ]
        recoveries = [self._recovery_s(o, alarms) for o in self.outages]
        measured = [x for x in recoveries if x is not None]
        hostile = self.injector
        return {
            "sent": len(pressed) + len(skewed) + len(self.replays),
            "stored": len(alarms),
            "lost": lost_presses + lost_skewed + lost_falls,
            "duplicates": dup_presses + dup_skewed + dup_falls,
            "unexpected": unexpected,
            "falls_played": len(self.replays),
            "falls_detected": sum(1 for r in self.replays if r.alarms),
            "recovery_s_max": rounded(max(measured, default=None), 2),
            "hub_tracebacks": self._hub_tracebacks(),
            "hub_crashes": self.hub_crashes,
            "hostile": hostile is not None,
            "presses": len(pressed),
            "presses_lost": lost_presses,
            "presses_duplicated": dup_presses,
            "skewed_presses": len(skewed),
            "skewed_presses_lost": lost_skewed,
            "skewed_presses_duplicated": dup_skewed,
            "falls": len(self.replays),
            "falls_lost": lost_falls,
            "falls_duplicated": dup_falls,
            "falls_blind_played": len(blind),
            "falls_blind_detected": sum(1 for r in blind if r.alarms),
            "fall_alarm_s_max": rounded(max(decided, default=None), 2),
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
            "broker_durable": self.broker_durable,
            "hostile_sent": sum(hostile.counts.values()) if hostile else 0,
            "hostile_by_kind": (
                {k: hostile.counts.get(k, 0) for k in KINDS} if hostile is not None else {}
            ),
            "hostile_skipped": hostile.skipped if hostile else 0,
            "fall_replays": [
                {
                    "device_id": r.device_id,
                    "at_s": round(r.at_s, 1),
                    "aim": r.aim,
                    "impact_in": self._blinded_by(r) or "live",
                    "alarms": len(r.alarms),
                    "alarm_after_impact_s": (
                        round((min(a["raised_at_ms"] for a in r.alarms) - r.impact_ms) / 1000, 2)
                        if r.alarms and r.impact_ms is not None
                        else None
                    ),
                }
                for r in self.replays
            ],
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
                    "first_alarm_stored_s": rec,
                    "error": o.error,
                }
                for o, rec in zip(self.outages, recoveries, strict=True)
            ],
        }

    def _recovery_s(self, o: Outage, alarms: list[dict[str, Any]]) -> float | None:
        """Server stop / uplink cut: from the server reachable again to the first alarm
        raised on the hub during the outage being stored on the server (s). An outage whose
        alarms never arrived counts until now; other faults: None."""
        if o.kind not in ("server_stop", "uplink_cut") or o.started_ms is None:
            return None
        if o.reachable_ms is None:  # never reachable again: the whole time since the fault
            return round((now_ms() - o.started_ms) / 1000, 2)
        queued = [
            a["received_at_ms"]
            for a in alarms
            if o.started_ms <= a["raised_at_ms"] < o.reachable_ms
        ]
        first = min(queued, default=now_ms())
        return round(max(0, first - o.reachable_ms) / 1000, 2)

    def _blinded_by(self, r: FallReplay) -> str | None:
        """The fault (hub_kill, broker_restart) during which the replay's impact happened."""
        if r.impact_ms is None:
            return None
        for o in self.outages:
            if o.blinds_falls and o.started_ms is not None:
                # a killed hub is surely blind until started again; a broker until it listens
                end = o.repaired_ms if o.kind == "hub_kill" else o.recovered_ms
                if o.started_ms <= r.impact_ms <= (end or now_ms()):
                    return o.kind
        return None

    def _hub_tracebacks(self) -> int:
        try:
            return self.hub.log_path.read_text(errors="replace").count(TRACEBACK)
        except OSError:
            return 0

    def _replay_for(self, alarm: dict[str, Any]) -> FallReplay | None:
        """The replay of this pendant that started last before the alarm was raised (the
        detector decides within seconds, late ones within tens; replays on one pendant are
        PENDANT_GAP_S apart)."""
        candidates = [
            r
            for r in self.replays
            if r.device_id == alarm["device_id"]
            and r.started_ms is not None
            and r.started_ms <= alarm["raised_at_ms"] < r.started_ms + PENDANT_GAP_S * 1000
        ]
        return max(candidates, key=lambda r: r.started_ms or 0, default=None)


FLOOD_RATE_PER_S = 2000
FLOOD_S = 10.0
FLOOD_OTHER_PRESSES = 4
"""The flood phase (--hostile): one paired button publishes FLOOD_RATE_PER_S valid presses a
second (a new seq each, QoS 1) for FLOOD_S s, while another button of the home presses
FLOOD_OTHER_PRESSES times, evenly spread; its answers and texts must not wait for the flood."""


def _flood(port: int, device_id: str, stop_at: float) -> int:
    """Publish presses at FLOOD_RATE_PER_S until `stop_at` (monotonic s); returns how many."""
    import paho.mqtt.client as paho

    from carehub.mqtt_contract import ButtonEvent, Channel, Topics, encode

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"flood-{device_id}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    topic, sent, start = Topics("carehub").device(device_id, Channel.BUTTON), 0, time.monotonic()
    try:
        while (now := time.monotonic()) < stop_at:
            due = int((now - start) * FLOOD_RATE_PER_S)
            for _ in range(due - sent):
                sent += 1
                event = ButtonEvent(v=1, seq=sent, ts=now_ms(), action="press")
                client.publish(topic, encode(event), qos=1)
            time.sleep(0.005)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


def _answer(button: Any, seq: int) -> tuple[int, Any] | None:
    """(receive epoch ms, ack) of the button's first ack naming an alarm for `seq`."""
    entry: tuple[int, Any] | None = button.acks.wait_for(
        lambda a: a.seq == seq and a.alarm_id is not None, 120
    )
    return entry


def alarms_lost(report: dict[str, Any]) -> int:
    """Every device event of every phase that should have become an alarm on the server and
    did not, counted from the devices' side: the run's presses and falls, the presses after
    the damaged store, the other button's presses during the flood (none of them may end in
    silence; issue 20's `alarms_lost`)."""
    return int(
        report["lost"]
        + report.get("store_damage_alarms_lost", 0)
        + report.get("flood_other_press_unanswered", 0)
    )


def flood_phase(run: ChaosRun, flood_id: str, other: Any) -> dict[str, Any]:
    """Button `flood_id` floods while the button `other` presses: how long the other waits
    for `received` (device side) and for its SMS; how many alarms and hub log lines the
    flood made. The home's own buttons, after the run is counted (the run's figures are
    unchanged by it)."""
    run.say(f"flood phase: {flood_id} publishes {FLOOD_RATE_PER_S} presses/s for {FLOOD_S} s")
    before = {a["id"] for a in run.admin.alarms() if a["device_id"] == flood_id}
    log_from = len(run.hub.log_path.read_text(errors="replace").splitlines())
    presses: list[tuple[int, int]] = []  # seq, press epoch ms
    sent: list[int] = []
    stop_at = time.monotonic() + FLOOD_S
    flooder = threading.Thread(
        target=lambda: sent.append(_flood(run.broker.port, flood_id, stop_at)), daemon=True
    )
    flooder.start()
    for i in range(FLOOD_OTHER_PRESSES):  # evenly spread over the flood
        at_s = stop_at - FLOOD_S * (1 - (i + 0.5) / FLOOD_OTHER_PRESSES)
        time.sleep(max(0.0, at_s - time.monotonic()))
        at = now_ms()
        presses.append((other.press(), at))
    flooder.join(FLOOD_S + 60)
    acks = [_answer(other, seq) for seq, _ in presses]
    received = [a[0] - at for a, (_, at) in zip(acks, presses, strict=True) if a is not None]
    ids = {a[1].alarm_id for a in acks if a is not None}
    texted: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(texted) < len(ids):
        refs = {
            a["id"][-6:].upper(): a["hub_alarm_id"]
            for a in run.admin.alarms()
            if a["hub_alarm_id"] in ids
        }
        for _, sms in run.sms.arrivals_ns:
            for ref in sms_refs(sms.body):
                if ref in refs:
                    texted.setdefault(refs[ref], sms.received_ms)
        time.sleep(0.5)
    at_by_id = {a[1].alarm_id: at for a, (_, at) in zip(acks, presses, strict=True) if a}
    to_sms = [texted[i] - at_by_id[i] for i in texted]
    log = run.hub.log_path.read_text(errors="replace").splitlines()[log_from:]
    return {
        "flood_sent": sent[0] if sent else 0,
        "flood_alarms": sum(
            1 for a in run.admin.alarms() if a["device_id"] == flood_id and a["id"] not in before
        ),
        "flood_hub_log_lines": sum(1 for line in log if flood_id in line),
        "flood_other_presses": len(presses),
        "flood_other_press_unanswered": len(presses) - len(received),
        "flood_other_press_received_ms_max": max(received, default=None),
        "flood_other_press_sms_ms_max": max(to_sms, default=None)
        if len(to_sms) == len(presses)
        else None,
    }


def run_chaos(
    presses: int = 200,
    falls: int = 50,
    duration_s: float = 180.0,
    hub_kills: int = 3,
    broker_restarts: int = 1,
    server_stops: int = 1,
    uplink_cuts: int = 1,
    outage_s: float = 8.0,
    hub_down_s: float | None = None,
    broker_down_s: float = 2.0,
    settle_s: float = 3.0,
    buttons: int = 4,
    cancel_window_s: float = 1.5,
    drain_s: float = 90.0,
    seed: int = 1,
    log_level: str = "INFO",
    keep: Path | None = None,
    say: Any = print,
    hostile: bool = False,
    hostile_rate: float = 4.0,
) -> dict[str, Any]:
    tmp = keep or Path(tempfile.mkdtemp(prefix="carehub-bench-chaos-"))
    tmp.mkdir(parents=True, exist_ok=True)
    counts = {
        "hub_kill": hub_kills,
        "broker_restart": broker_restarts,
        "server_stop": server_stops,
        "uplink_cut": uplink_cuts,
    }
    if hub_down_s is None:
        hub_down_s = HOSTILE_HUB_DOWN_S if hostile else 1.0
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
            hostile=hostile,
            hostile_rate=hostile_rate,
        ).run()
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def bench_chaos(
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all figures."),
    hostile: bool = typer.Option(
        False,
        "--hostile",
        help="Also inject hostile MQTT messages throughout, restart `carehub broker`, keep the"
        " hub's default backoff, and play falls while the hub or the broker is down.",
    ),
    hostile_rate: float = typer.Option(4.0, help="Hostile messages per second (--hostile)."),
    presses: int = typer.Option(200, help="Button presses, at random moments over the run."),
    falls: int = typer.Option(50, help="Synthetic falls replayed by the pendants (0: none)."),
    duration: float = typer.Option(180.0, help="Length of the scripted run (s)."),
    hub_kills: int = typer.Option(3, help="Times the hub is killed with SIGKILL."),
    broker_restarts: int = typer.Option(1, help="Times the MQTT broker is restarted."),
    server_stops: int = typer.Option(1, help="Times the server is stopped for --outage s."),
    uplink_cuts: int = typer.Option(1, help="Times the hub's uplink is cut for --outage s."),
    outage: float = typer.Option(8.0, help="How long a server stop or uplink cut lasts (s)."),
    hub_down: float | None = typer.Option(
        None, help="How long a killed hub stays down (s; default 1, or 3 with --hostile)."
    ),
    broker_down: float = typer.Option(2.0, help="How long a restarted broker stays down (s)."),
    settle: float = typer.Option(
        3.0, help="Seconds after recovery still counted as outage for the latency."
    ),
    drain: float = typer.Option(
        90.0, help="After the run, wait at most this long for every alarm to be stored (s)."
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
    try:
        r = run_chaos(
            presses=presses,
            falls=falls,
            duration_s=duration,
            hub_kills=hub_kills,
            broker_restarts=broker_restarts,
            server_stops=server_stops,
            uplink_cuts=uplink_cuts,
            outage_s=outage,
            hub_down_s=hub_down,
            broker_down_s=broker_down,
            settle_s=settle,
            drain_s=drain,
            buttons=buttons,
            seed=seed,
            log_level=log_level,
            keep=keep,
            say=echo,
            hostile=hostile,
            hostile_rate=hostile_rate,
        )
    except ValueError as e:  # e.g. no room for the falls between the faults
        echo(f"carehub bench chaos: {e}", err=True)
        raise typer.Exit(2) from None
    echo(
        f"Chaos benchmark{' (hostile)' if r['hostile'] else ''}: {r['presses']} presses and"
        f" {r['falls']} falls sent over {r['duration_s']:.0f} s; {r['stored']} alarms stored"
        " on the server"
    )
    echo(
        f"  lost {r['lost']} (presses {r['presses_lost']}, skewed-clock presses"
        f" {r['skewed_presses_lost']} of {r['skewed_presses']}, falls {r['falls_lost']}),"
        f" duplicates {r['duplicates']} (presses {r['presses_duplicated']}, skewed"
        f" {r['skewed_presses_duplicated']}, falls {r['falls_duplicated']}),"
        f" unexpected {r['unexpected']}   (target 0 / 0 / 0)"
    )
    echo(f"  alarms lost over every phase, from the devices' side: {r['alarms_lost']}   (target 0)")
    echo(
        f"  falls detected {r['falls_detected']} of {r['falls_played']} (impact while hub or"
        f" broker down: {r['falls_blind_detected']} of {r['falls_blind_played']}); latest"
        f" alarm {r['fall_alarm_s_max']} s after its impact"
    )
    echo(
        f"  recovery after server stop / uplink cut: worst {r['recovery_s_max']} s   (target"
        f" ≤ 2 s); hub tracebacks {r['hub_tracebacks']}, hub crashes {r['hub_crashes']}"
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
            + (
                f", first queued alarm stored {o['first_alarm_stored_s']} s after"
                if o["first_alarm_stored_s"] is not None
                else ""
            )
            + (f"  ERROR {o['error']}" if o["error"] else "")
        )
    if r["hostile"]:
        kinds = ", ".join(f"{k} {n}" for k, n in r["hostile_by_kind"].items())
        echo(
            f"  hostile messages injected {r['hostile_sent']} ({kinds}); skipped while"
            f" disconnected {r['hostile_skipped']}; broker durable: {r['broker_durable']}"
        )
    if "store_damage_reported" in r:
        echo(
            f"  hub restarted on a damaged store: fault reported {r['store_damage_reported']};"
            f" presses after it lost {r['store_damage_alarms_lost']} of"
            f" {r['store_damage_presses']}   (target True, 0); earlier presses raised again"
            f" {r['store_damage_duplicates']}, unexpected {r['store_damage_unexpected']}"
        )
    echo(f"  SMS requests {r['sms']} (repeated {r['sms_repeated']})")
    if "flood_sent" in r:
        echo(
            f"  flood: {r['flood_sent']} presses from one button in {FLOOD_S:.0f} s made"
            f" {r['flood_alarms']} alarms and {r['flood_hub_log_lines']} hub log lines; the"
            f" other button's {r['flood_other_presses']} presses: received within"
            f" {r['flood_other_press_received_ms_max']} ms (target ≤ 1000), SMS within"
            f" {r['flood_other_press_sms_ms_max']} ms (target ≤ 3000), unanswered"
            f" {r['flood_other_press_unanswered']}"
        )
    if as_json:
        echo(json.dumps(r))
