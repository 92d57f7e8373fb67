"""Three `carehub server` processes on one PostgreSQL database, as docs/operations.md deploys
them behind a load balancer that keeps each hub on one process (issue 22): every escalation
step of every alarm is sent exactly once, and none is skipped — also when one process is
SIGKILLed in the middle (then the messages it had in flight are sent at least once, after the
send lease) and its hubs go on uploading to the others.

Each alarm's home has a team of two doctors (ranks 0 and 1) and a fast policy: rank 0, rank 1,
1 s each, run twice (repeat 1), so a ladder sends four texts — rank 0 at steps 0 and 2,
rank 1 at steps 1 and 3 — and runs out in about four seconds while nobody answers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.server_bench import (
    MonotonicSmsSandbox,
    doctor_phone,
    fleet_directory,
    hub_token,
    server_process,
    start_servers,
)
from carehub import api_contract as api
from harness.postgres import psql
from harness.processes import Child, wait_http_ok, wait_until

ALARMS = 60
STEPS = [(0, 1.0), (1, 1.0)]
REPEAT = 1
EXPECTED = [(rank, f"step-{pos}") for pos, (rank, _) in enumerate(STEPS * (REPEAT + 1))]
"""What the policy says each ladder sends, in order: (doctor rank, notification purpose)."""
LEASE_S = 3
PROCESSES = 3


@dataclass
class District:
    servers: list[tuple[Child, str]]
    sms: MonotonicSmsSandbox
    db: str
    seed: str
    down: set[int] = field(default_factory=set)
    """Processes the load balancer found dead."""

    def process_for(self, hub: int) -> int:
        """The load balancer's choice: each hub on one process, a dead process's hubs on
        the next live one (as a consistent hash moves only the dead process's share)."""
        i = hub % len(self.servers)
        while i in self.down:
            i = (i + 1) % len(self.servers)
        return i

    def upload(self, hub: int) -> None:
        _, url = self.servers[self.process_for(hub)]
        r = httpx.post(
            f"{url}{api.ALARMS_PATH}",
            json={
                "alarm_id": f"a{hub}",
                "device_id": f"btn-{hub}",
                "kind": "button",
                "raised_at_ms": time.time_ns() // 1_000_000,
            },
            headers={"Authorization": f"Bearer {hub_token(self.seed, hub)}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text

    def ladders_done(self) -> bool:
        """Every ladder ran out and nothing waits to be sent."""
        open_ladders = psql(self.db, "select count(*) from escalations where status <> 'exhausted'")
        unsent = psql(
            self.db,
            "select count(*) from notifications where status not in ('sent', 'delivered')",
        )
        ladders = psql(self.db, "select count(*) from escalations")
        return ladders[0][0] == str(ALARMS) and open_ladders[0][0] == unsent[0][0] == "0"


@pytest.fixture
def district(tmp_path: Path, pg_url: str) -> Iterator[District]:
    seed = "mp-" + tmp_path.name
    directory = fleet_directory(tmp_path / "directory.json", ALARMS, seed, STEPS, REPEAT)
    with MonotonicSmsSandbox() as sms:
        servers = [
            server_process(
                f"server-{i}",
                tmp_path,
                pg_url,
                directory if i == 0 else None,  # one process loads it (docs/operations.md)
                sms.url,
                {"CAREHUB_SMS_LEASE_S": str(LEASE_S)},
                log_level="INFO",
            )
            for i in range(PROCESSES)
        ]
        try:
            start_servers(servers[:1], 60)  # migrates and loads the directory alone
            for child, _ in servers[1:]:  # the others together: nothing left to migrate
                child.start()
            for child, url in servers[1:]:
                wait_http_ok(f"{url}/healthz", 60, child)
            yield District(servers, sms, pg_url, seed)
        finally:
            for child, _ in servers:
                child.stop()


def _by_phone(sms: MonotonicSmsSandbox) -> Counter[str]:
    return Counter(s.to for _, s in sms.arrivals)


def _check_every_step_once(district: District, in_flight_at_kill: int = 0) -> int:
    """Every (alarm, step) has one notification, sent, to the doctor the policy names, and
    the sandbox got one request for it (plus at most the messages in flight at a kill);
    returns how many duplicate requests the sandbox saw."""
    rows = psql(
        district.db,
        "select h.id, n.purpose, n.to_phone, n.status, n.provider_ref, n.attempts "
        "from notifications n join alarms a on a.id = n.alarm_id join hubs h on h.id = a.hub_id",
    )
    by_alarm: dict[int, list[tuple[str, str]]] = {}
    for hub_id, purpose, phone, status, _, _ in rows:
        assert status in ("sent", "delivered")  # delivered: its callback came back
        by_alarm.setdefault(int(hub_id.removeprefix("hub-")), []).append((purpose, phone))
    assert sorted(by_alarm) == list(range(ALARMS))
    for hub, notes in by_alarm.items():
        assert sorted(notes) == sorted(
            (purpose, doctor_phone(hub, rank)) for rank, purpose in EXPECTED
        ), hub
    refs = [r[4] for r in rows]
    sids = {s.sid for _, s in district.sms.arrivals}
    assert len(set(refs)) == len(refs) == ALARMS * len(EXPECTED)
    assert set(refs) <= sids  # each recorded send is a request the provider received
    per_phone = _by_phone(district.sms)
    retried = Counter(r[2] for r in rows if int(r[5]) > 1)
    duplicates = 0
    for hub in range(ALARMS):
        for rank in {rank for rank, _ in EXPECTED}:
            phone = doctor_phone(hub, rank)
            want = sum(1 for r, _ in EXPECTED if r == rank)
            assert want <= per_phone[phone] <= want + retried[phone], (phone, per_phone[phone])
            duplicates += per_phone[phone] - want
    assert duplicates <= in_flight_at_kill
    return duplicates


def test_three_processes_send_every_step_exactly_once(district: District) -> None:
    for hub in range(ALARMS):
        district.upload(hub)
    children = [c for c, _ in district.servers]
    wait_until(district.ladders_done, 45, "every ladder run out and sent", children, 0.5)
    assert len(district.sms.arrivals) == ALARMS * len(EXPECTED)
    assert _check_every_step_once(district) == 0
    # every process took steps: the work is shared, not one process doing everything
    logs = [c.log_path.read_text() for c in children]
    assert all("sent for notification" in log for log in logs)


def test_a_killed_process_leaves_no_step_unsent_and_only_in_flight_ones_twice(
    district: District,
) -> None:
    first = ALARMS // 2
    for hub in range(first):
        district.upload(hub)
    assert district.sms.wait_for(first * len(EXPECTED) // 3, 30), len(district.sms.arrivals)
    victim_index = 1
    victim, _ = district.servers[victim_index]
    victim.kill()
    district.down.add(victim_index)
    # in flight at the kill: claimed by the dead process for sending, no outcome recorded
    in_flight = int(
        psql(district.db, "select count(*) from notifications where status = 'sending'")[0][0]
    )
    # the dead process's hubs go on, through the load balancer, to the next live process
    for hub in range(first, ALARMS):
        district.upload(hub)
    assert any(hub % PROCESSES == victim_index for hub in range(first, ALARMS))
    survivors = [c for i, (c, _) in enumerate(district.servers) if i != victim_index]
    wait_until(district.ladders_done, 45, "every ladder run out and sent", survivors, 0.5)
    duplicates = _check_every_step_once(district, in_flight)
    print(f"in flight at the kill: {in_flight}; sent twice: {duplicates}")
    logs = [c.log_path.read_text() for c in survivors]
    assert all("sent for notification" in log for log in logs)
