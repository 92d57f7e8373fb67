"""What both system benchmarks set up: simulated homes in the care directory, the server
process with the Twilio notifier aimed at a timed SMS sandbox, and the admin API."""

from __future__ import annotations

import json
import math
import re
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.broker import free_port
from harness.processes import Child, wait_http_ok, wait_until
from harness.sms_sandbox import RecordedSms, SmsSandbox

ALARM_REF = re.compile(r"/r/([0-9A-F]{6})/")


def sms_refs(body: str) -> list[str]:
    """The alarm references an SMS carries (its accept links; several when merged)."""
    return ALARM_REF.findall(body)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def now_ms() -> int:
    """Epoch milliseconds, as the hub and server stamp their records."""
    return time.time_ns() // 1_000_000


@dataclass
class Home:
    """One elder's home: a hub with its own token, topics and devices, and a doctor."""

    index: int
    hub_id: str
    token: str
    base_topic: str
    doctor_phone: str
    buttons: list[str] = field(default_factory=list)
    pendants: list[str] = field(default_factory=list)


def make_homes(
    count: int, buttons: int = 1, pendants: int = 0, shared_topic: str | None = None
) -> list[Home]:
    """`count` homes; each its own base topic unless `shared_topic` (one home per broker)."""
    homes = []
    for i in range(count):
        tag = f"h{i:03d}"
        homes.append(
            Home(
                index=i,
                hub_id=f"hub-{tag}",
                token=secrets.token_urlsafe(24),
                base_topic=shared_topic or f"carehub-{tag}",
                doctor_phone=f"+86139{i:08d}",
                buttons=[f"btn-{tag}-{b}" for b in range(buttons)],
                pendants=[f"pend-{tag}-{p}" for p in range(pendants)],
            )
        )
    return homes


def write_directory(path: Path, homes: Sequence[Home]) -> Path:
    """The care directory (JSON) for these homes: a team, doctor and elder per home."""
    doc: dict[str, list[dict[str, Any]]] = {
        "teams": [],
        "doctors": [],
        "elders": [],
        "hubs": [],
        "devices": [],
    }
    for h in homes:
        tag = h.hub_id.removeprefix("hub-")
        doc["teams"].append({"id": f"team-{tag}", "name": f"Team {tag}"})
        doc["doctors"].append(
            {
                "id": f"dr-{tag}",
                "team": f"team-{tag}",
                "name": f"Doctor {tag}",
                "phone": h.doctor_phone,
                "language": "en",
            }
        )
        doc["elders"].append(
            {
                "id": f"elder-{tag}",
                "team": f"team-{tag}",
                "name": f"Elder {tag}",
                "short_address": f"Bldg {h.index}",
            }
        )
        doc["hubs"].append({"id": h.hub_id, "elder": f"elder-{tag}", "token": h.token})
        doc["devices"] += [{"id": b, "hub": h.hub_id, "kind": "button"} for b in h.buttons]
        doc["devices"] += [{"id": p, "hub": h.hub_id, "kind": "pendant"} for p in h.pendants]
    path.write_text(json.dumps(doc))
    return path


class TimedSmsSandbox(SmsSandbox):
    """The SMS sandbox, also noting each request's arrival on the monotonic clock (ns)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals_ns: list[tuple[int, RecordedSms]] = []

    def _add(self, sms: RecordedSms) -> None:
        at = time.perf_counter_ns()
        super()._add(sms)
        with self._lock:
            self.arrivals_ns.append((at, sms))


def server_child(
    tmp: Path,
    port: int,
    admin_token: str,
    sms_url: str,
    directory: Path,
    log_level: str = "INFO",
    database_url: str | None = None,
) -> Child:
    """`carehub server` on SQLite in `tmp` (or on `database_url`), texting through the real
    Twilio SDK to `sms_url`."""
    return Child(
        "server",
        ["server", "--directory", str(directory), "--log-level", log_level],
        {
            "CAREHUB_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{tmp / 'server.db'}",
            "CAREHUB_HOST": "127.0.0.1",
            "CAREHUB_PORT": str(port),
            # Twilio's delivery callbacks come back to this server, as in production
            "CAREHUB_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CAREHUB_ADMIN_TOKEN": admin_token,
            "CAREHUB_NOTIFIER": "twilio",
            "CAREHUB_TWILIO_API_BASE": sms_url,
            "CAREHUB_TWILIO_ACCOUNT_SID": "AC" + "0" * 31 + "1",
            "CAREHUB_TWILIO_AUTH_TOKEN": "bench-secret",
            "CAREHUB_TWILIO_FROM": "+15550000000",
            # the benches press far more often than any elder: they measure the pipeline,
            # not the per-number limit that merges a real doctor's burst of texts
            "CAREHUB_SMS_MAX_PER_NUMBER": "1000",
            # and one dispatch per press: a press while the button's alarm is open would
            # otherwise join that alarm as a repeat (server.alarm_repeats)
            "CAREHUB_MERGE_REPEATS": "false",
        },
        tmp / "server.log",
    )


class AdminApi:
    """The dispatcher's read API on the server (admin bearer token)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self._client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def close(self) -> None:
        self._client.close()

    def alarms(self, limit: int = 1000) -> list[dict[str, Any]]:
        response = self._client.get("/api/v1/admin/alarms", params={"limit": limit})
        response.raise_for_status()
        return list(response.json())

    def hubs(self) -> list[dict[str, Any]]:
        response = self._client.get("/api/v1/admin/hubs")
        response.raise_for_status()
        return list(response.json())

    def wait_up(self, server: Child, timeout_s: float = 60) -> None:
        wait_http_ok(f"{self.base_url}/healthz", timeout_s, server)


def broker_has_data_dir() -> bool:
    """Whether this version of `carehub broker` keeps its persistence in `--data-dir`
    (what `carehub broker --help` lists, read from the command's definition)."""
    import typer.main

    from cli.main import app  # here: the CLI imports the benches

    command = typer.main.get_command(app)
    broker = command.commands["broker"]  # type: ignore[attr-defined]
    return any("--data-dir" in p.opts for p in broker.params)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class BrokerProcess:
    """`carehub broker` as a child process on a fixed port, restartable like a home's broker.

    Its persistence lives in `tmp/broker-data` when the command has `--data-dir` (a durable
    broker), so queued messages can survive a restart; `durable` says which it is."""

    def __init__(self, tmp: Path, port: int | None = None, log_level: str = "INFO") -> None:
        self.port = port or free_port()
        self.durable = broker_has_data_dir()
        args = ["broker", "--port", str(self.port), "--log-level", log_level]
        if self.durable:
            data_dir = tmp / "broker-data"
            data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--data-dir", str(data_dir)]
        self.child = Child("broker", args, {}, tmp / "broker.log")

    def start(self) -> BrokerProcess:
        self.child.start()
        wait_until(lambda: port_open(self.port), 30, "broker listening", [self.child], 0.05)
        return self

    def stop(self) -> None:
        self.child.stop()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
