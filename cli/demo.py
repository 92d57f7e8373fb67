"""`carehub demo`: one call-button press travels the whole system, and a timeline is printed.

Starts a broker, the server (SQLite in a temporary directory, or the database given with
``--database-url``; console SMS), one hub and a simulated home (call button, wearable, fall
pendant) as real processes and devices, presses the button, and reads each step's time back
from where it was recorded: the device's acks, the server's alarm record and its dispatch
events.

With ``--keep-running`` it then stays up until Ctrl-C: it creates a dispatcher account,
prints the console's URL and sign-in, and the simulated home presses its call button now
and then, so the console's queue has something to show.
"""

from __future__ import annotations

import secrets
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.broker import free_port, mosquitto_binary, wait_for_port
from harness.processes import Child, wait_http_ok, wait_until

DIRECTORY = """\
[[teams]]
id = "team-east"
name = "East district family-doctor team"

[[doctors]]
id = "dr-li"
team = "team-east"
name = "Li Na"
phone = "+8613800000001"
language = "zh"
priority = 0

[[doctors]]
id = "dr-chen"
team = "team-east"
name = "Chen Wei"
phone = "+8613800000002"
language = "en"
priority = 1

[[elders]]
id = "elder-1"
team = "team-east"
name = "王秀英"
address = "东城区 和平里 3 号楼 2 单元 501"
short_address = "和平里3-2-501"

[[hubs]]
id = "hub-1"
elder = "elder-1"
token = "{token}"

[[devices]]
id = "btn-1"
hub = "hub-1"
kind = "button"

[[devices]]
id = "wear-1"
hub = "hub-1"
kind = "wearable"

[[devices]]
id = "pend-1"
hub = "hub-1"
kind = "pendant"
"""


@dataclass
class Step:
    at_ms: int
    actor: str
    text: str


DEMO_DISPATCHER = "dispatcher"


def run_demo(
    keep: bool = False,
    broker_kind: str = "auto",
    database_url: str | None = None,
    keep_running: bool = False,
    alarm_every_s: float = 60.0,
) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="carehub-demo-"))
    children: list[Child] = []
    try:
        return _run(tmp, children, broker_kind, database_url, keep_running, alarm_every_s)
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        if keep:
            print(f"\nlogs and databases kept in {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _run(
    tmp: Path,
    children: list[Child],
    broker_kind: str,
    database_url: str | None,
    keep_running: bool = False,
    alarm_every_s: float = 60.0,
) -> int:
    from firmware_sim.button import CallButton
    from firmware_sim.pendant import FallPendant
    from firmware_sim.wearable import Wearable

    mqtt_port, http_port = free_port(), free_port()
    token, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    (tmp / "directory.toml").write_text(DIRECTORY.format(token=token))
    kind = (
        broker_kind if broker_kind != "auto" else ("mosquitto" if mosquitto_binary() else "amqtt")
    )
    db = "PostgreSQL" if (database_url or "").startswith("postgresql") else "SQLite"
    print(
        f"starting MQTT broker ({kind}) on :{mqtt_port}, server on :{http_port} ({db}), one hub …"
    )

    broker_args = ["--port", str(mqtt_port), "--kind", kind, "--data-dir", str(tmp / "broker")]
    broker = Child("broker", ["broker", *broker_args], {}, tmp / "broker.log")
    children.append(broker.start())
    wait_for_port(mqtt_port, 20)
    server_env = {
        "CAREHUB_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{tmp / 'server.db'}",
        "CAREHUB_PORT": str(http_port),
        "CAREHUB_ADMIN_TOKEN": admin,
        "CAREHUB_NOTIFIER": "console",
        "CAREHUB_PUBLIC_BASE_URL": f"http://127.0.0.1:{http_port}",
        "CAREHUB_CONSOLE_INSECURE_COOKIES": "true",  # plain http on this machine
        "CAREHUB_SECRET_KEY": secrets.token_urlsafe(32),
    }
    server = Child(
        "server",
        ["server", "--directory", str(tmp / "directory.toml")],
        server_env,
        tmp / "server.log",
    )
    children.append(server.start())
    base = f"http://127.0.0.1:{http_port}"
    wait_http_ok(f"{base}/healthz", 60, server)
    hub_env = {
        "CAREHUB_SERVER_URL": base,
        "CAREHUB_HUB_TOKEN": token,
        "CAREHUB_MQTT_PORT": str(mqtt_port),
        "CAREHUB_HUB_DB": str(tmp / "hub.db"),
    }
    hub = Child("hub", ["hub"], hub_env, tmp / "hub.log")
    children.append(hub.start())
    admin_api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=5)
    wait_until(
        lambda: any(h["online"] for h in admin_api.get("/api/v1/admin/hubs").json()),
        30,
        "hub online",
        [hub],
    )

    args = ("127.0.0.1", mqtt_port)
    with (
        CallButton("btn-1", *args) as button,
        Wearable("wear-1", *args),
        FallPendant("pend-1", *args),
    ):
        button.connected.wait(10)
        time.sleep(0.5)  # let the home settle: devices announce themselves
        print("the elder presses the call button …\n")
        press_ms = time.time_ns() // 1_000_000
        seq = button.press()
        dispatched = button.acks.wait_for(
            lambda a: a.seq == seq and a.state.value == "dispatched", 20
        )
        received = button.acks.wait_for(lambda a: a.seq == seq and a.state.value == "received", 0)
        if keep_running and dispatched is not None:
            _print_result(admin_api, server, dispatched, received, press_ms, seq)
            _serve(server_env["CAREHUB_DATABASE_URL"], base, button, alarm_every_s)
    if dispatched is None or received is None:
        print("FAILED: the button got no 'dispatched' ack within 20 s")
        print(f"--- hub log\n{hub.log_tail()}\n--- server log\n{server.log_tail()}")
        return 1
    if keep_running:
        return 0
    return _print_result(admin_api, server, dispatched, received, press_ms, seq)


def _serve(database_url: str, base: str, button: Any, every_s: float) -> None:
    """Create the dispatcher's account, print how to sign in, then press the call button
    every `every_s` seconds until Ctrl-C (KeyboardInterrupt)."""
    import asyncio

    from server.console.console_store import add_account_to

    password = secrets.token_urlsafe(12)
    now_ms = time.time_ns() // 1_000_000
    asyncio.run(
        add_account_to(database_url, DEMO_DISPATCHER, password, "dispatcher", None, "zh", now_ms)
    )
    print(f"\nconsole: {base}/console/", flush=True)
    print(f"login: {DEMO_DISPATCHER} / {password}", flush=True)
    print(f"a new alarm every {every_s:g} s; press Ctrl-C to stop", flush=True)
    # Ctrl-C ends the loop between presses: raised in the middle of one (inside the MQTT
    # client, a lock held), it left the button's close waiting on that lock for ever
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(every_s):  # a pace for the demo, not a wait for anything
            seq = button.press()
            print(f"btn-1 pressed (seq {seq})", flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    raise KeyboardInterrupt


def _print_result(
    admin_api: httpx.Client,
    server: Child,
    dispatched: Any,
    received: Any,
    press_ms: int,
    seq: int,
) -> int:
    if received is None:
        print("FAILED: the button got no 'received' ack")
        return 1
    listed = admin_api.get("/api/v1/admin/alarms").json()  # the ack names the hub's id
    server_id = next(
        (a["id"] for a in listed if a["hub_alarm_id"] == dispatched[1].alarm_id),
        dispatched[1].alarm_id,
    )
    answer = admin_api.get(f"/api/v1/admin/alarms/{server_id}")
    if answer.status_code != 200:
        print(f"FAILED: the server answered {answer.status_code} for the alarm: {answer.text}")
        print(f"--- server log\n{server.log_tail()}")
        return 1
    alarm = answer.json()
    steps = _timeline(press_ms, seq, received, dispatched, alarm)
    _print(steps, press_ms)
    return 0


def _timeline(
    press_ms: int, seq: int, received: Any, dispatched: Any, alarm: dict[str, Any]
) -> list[Step]:
    sms = alarm["notifications"][0]
    step = next(e for e in alarm["events"] if e["kind"] == "step")
    doctor = sms["doctor_id"]
    sent_ms = sms["sent_at_ms"] or alarm["first_notified_at_ms"] or step["at_ms"]
    body = sms["body"].replace("{link}", "<accept link>")
    return [
        Step(press_ms, "button", f"btn-1 press, seq {seq}"),
        Step(
            alarm["raised_at_ms"],
            "hub",
            f"alarm {alarm['hub_alarm_id'][:8]} raised, stored on the hub (fsync'd)",
        ),
        Step(received[0], "elder", "btn-1 shows 'received': the hub has the call"),
        Step(
            alarm["received_at_ms"],
            "server",
            "alarm stored on the server (idempotent by hub-made id)",
        ),
        Step(step["at_ms"], "dispatch", f"escalation {step['detail']} (team-east on duty)"),
        Step(sent_ms, "sms", f"SMS sent to {doctor}: “{body}”"),
        Step(dispatched[0], "elder", "btn-1 shows 'dispatched': help is coming"),
    ]


def _print(steps: list[Step], origin_ms: int) -> None:
    print("timeline (ms after the press)")
    for step in sorted(steps, key=lambda s: s.at_ms):
        print(f"  {step.at_ms - origin_ms:+7d} ms  {step.actor:<9} {step.text}")
