"""Issue 24 across real processes: a `carehub server` and a `carehub hub` on a private
Mosquitto, the directory giving elder-1 a daily check-in window, SMS to the sandbox.

- A press inside the window is acked `checked_in` and reaches no one; the next press is an
  emergency as always (its SMS is the proof that the server has worked since: the check-in
  made no alarm and no SMS).
- No check-in by the window's end: ONE welfare check on the server, in the console queue,
  and no SMS — an emergency pressed after it reaches the doctor, the welfare check still
  nobody, and a hub restart raises it no second time.
- The day's summary reaches the server's ``daily_summaries`` once.

Neither process takes a fake clock, so the time zone is picked to put now around midday and
the missed window ends one to two minutes after the server starts (its first whole minute
after the hub is up). The day's end is a hub that was off over midnight: while it is stopped
its open day is moved back one date in its store, as a restart on the next morning finds it.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from harness.processes import wait_until
from server.console.console_store import add_account_to
from tests.conftest import DIRECTORY, Deployment
from tests.mqtt_tools import AckWatcher, pub
from tests.test_e2e_check_in import noon_zone

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


def _local_now() -> datetime:
    """Now, in a zone where it is around midday (a window fits around it)."""
    now = datetime.now(UTC)
    return now.astimezone(ZoneInfo(noon_zone(now)))


def _with_check_in(local: datetime, start: datetime, end: datetime) -> str:
    """The shared directory with team-a in `local`'s zone and a check-in window for elder-1."""
    zone = str(local.tzinfo)
    text = DIRECTORY.replace('name = "Team A"\n', f'name = "Team A"\ntime_zone = "{zone}"\n')
    elder = 'short_address = "Bldg 3-501"\n'
    since, until = start.strftime("%H:%M"), end.strftime("%H:%M")
    window = f'check_in = {{{{ window_start = "{since}", window_end = "{until}" }}}}\n'
    return text.replace(elder, elder + window)  # braces doubled: the text is formatted


def _minute(local: datetime, minutes: int) -> datetime:
    return local.replace(second=0, microsecond=0) + timedelta(minutes=minutes)


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"CAREHUB_CONSOLE_INSECURE_COOKIES": "true"}


def _press(d: Deployment, device: str, seq: int) -> None:
    press = {"v": 1, "seq": seq, "ts": int(time.time() * 1000), "action": "press"}
    pub(d, device, "button", json.dumps(press))


def _summaries(d: Deployment) -> list[tuple[str, dict]]:
    with sqlite3.connect(d.tmp / "server.db") as db:
        rows = db.execute(
            "SELECT day, figures FROM daily_summaries WHERE elder_id='elder-1' ORDER BY day"
        ).fetchall()
    return [(day, json.loads(figures)) for day, figures in rows]


def _console_queue(d: Deployment) -> str:
    """The console's queue as the duty dispatcher sees it (signed in over HTTP)."""
    url = f"sqlite+aiosqlite:///{d.tmp / 'server.db'}"
    asyncio.run(add_account_to(url, "disp", PASSWORD, "dispatcher", None, "en", 0))
    with httpx.Client(base_url=d.base_url, timeout=10) as console:
        page = console.get("/console/login").text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed_in = console.post(
            "/console/login",
            data={"username": "disp", "password": PASSWORD, "csrf_token": token},
        )
        assert signed_in.status_code == 303, signed_in.text[:300]
        return console.get("/console/", headers={"Accept": "text/html"}).text


class TestCheckedIn:
    @pytest.fixture
    def directory(self) -> str:
        local = _local_now()
        return _with_check_in(local, _minute(local, -60), _minute(local, 60))

    def test_a_press_in_the_window_is_the_check_in_and_the_day_reaches_the_server_once(
        self, deployment: Deployment
    ) -> None:
        d = deployment
        watcher = AckWatcher(d, "btn-1")
        _press(d, "btn-1", 1)
        acks = watcher.collect("checked_in")
        assert [(a["state"], a["seq"], a.get("alarm_id")) for a in acks] == [
            ("checked_in", 1, None)
        ]
        _press(d, "btn-1", 2)  # after the check-in: a call for help as always
        acks = watcher.collect("dispatched")
        watcher.close()
        assert [a["state"] for a in acks[1:]] == ["received", "dispatched"]
        wait_until(lambda: len(d.sms.messages) == 1, 15, "the emergency's SMS", [d.server])
        alarms = d.alarms()
        assert [(a["kind"], a["hub_alarm_id"]) for a in alarms] == [
            ("button", acks[-1]["alarm_id"])
        ], "the check-in raised nothing on the server"
        assert len(d.sms.messages) == 1 and d.sms.messages[0].to == "+8613800000001"
        assert _summaries(d) == []  # the day is not over

        # the hub is off over midnight: its open day becomes yesterday's, then it starts
        d.hub.stop()
        with sqlite3.connect(d.tmp / "hub.db") as db:
            ((day, body),) = db.execute(
                "SELECT day, body FROM day_aggregates WHERE closed=0"
            ).fetchall()
            moved = json.loads(body)
            yesterday = (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()
            moved["day"], moved["start_ms"] = yesterday, moved["start_ms"] - 86_400_000
            db.execute(
                "UPDATE day_aggregates SET day=?, body=? WHERE day=?",
                (yesterday, json.dumps(moved), day),
            )
        d.hub.start()
        wait_until(lambda: len(_summaries(d)) == 1, 30, "the day's summary", [d.server, d.hub])
        ((stored_day, figures),) = _summaries(d)
        assert stored_day == yesterday
        assert (figures["check_ins"], figures["presses"], figures["complete"]) == (1, 1, False)

        d.restart_hub(kill=False)  # a later start queues the closed day no second time
        d.wait_hub_online()
        watcher = AckWatcher(d, "btn-2")
        _press(d, "btn-2", 5)  # today is a new day, its window open: today's check-in
        assert [a["state"] for a in watcher.collect("checked_in")] == ["checked_in"]
        _press(d, "btn-2", 6)  # and an alarm after it: the hub's queues have moved on
        watcher.collect("dispatched")
        watcher.close()
        wait_until(lambda: len(d.alarms()) == 2, 20, "the second emergency", [d.hub])
        assert len(_summaries(d)) == 1
        queued = re.findall(r"daily summary of (\S+) queued", d.hub.log_path.read_text())
        assert queued == [yesterday]
        with sqlite3.connect(d.tmp / "hub.db") as db:
            sent = db.execute("SELECT ref, sent_at_ms IS NOT NULL FROM outbox WHERE kind='summary'")
            assert sent.fetchall() == [(f"summary:{yesterday}", 1)], "queued once, sent"


class TestMissed:
    @pytest.fixture
    def directory(self) -> str:
        local = _local_now()
        end = _minute(local, 2)  # one to two minutes from now
        self.end_ms = int(end.timestamp() * 1000)
        return _with_check_in(local, _minute(local, -1), end)

    def test_no_check_in_by_the_windows_end_is_one_welfare_check_and_no_sms(
        self, deployment: Deployment
    ) -> None:
        d = deployment
        assert time.time() * 1000 < self.end_ms - 5_000, "the hub came up after the window"
        left_s = self.end_ms / 1000 - time.time()
        wait_until(lambda: len(d.alarms()) == 1, left_s + 30, "the welfare check", [d.hub])
        (welfare,) = d.alarms()
        assert (welfare["kind"], welfare["severity"]) == ("welfare", "warning")
        assert welfare["device_id"] == "btn-1" and welfare["raised_at_ms"] >= self.end_ms
        details = d.alarm(welfare["id"])["details"]
        assert details["welfare"] == "missed_check_in"
        assert details["today"]["check_in_at"] is None

        queue = _console_queue(d)
        assert f'data-alarm-id="{welfare["id"]}"' in queue
        assert 'data-reason="missed_check_in"' in queue and "No daily check-in" in queue

        d.restart_hub(kill=False)  # the day's welfare check is kept: not raised again
        d.wait_hub_online()
        watcher = AckWatcher(d, "btn-2")
        _press(d, "btn-2", 9)  # after the window: an emergency, as always
        acks = watcher.collect("dispatched")
        watcher.close()
        assert acks and acks[-1]["state"] == "dispatched"
        wait_until(lambda: len(d.sms.messages) == 1, 15, "the emergency's SMS", [d.server])
        assert [(a["kind"], a["device_id"]) for a in d.alarms()] == [
            ("button", "btn-2"),
            ("welfare", "btn-1"),
        ]
        assert len(d.sms.messages) == 1, "the welfare check texted nobody"
        assert d.sms.messages[0].to == "+8613800000001" and "Zhang" in d.sms.messages[0].body
        assert d.alarm(welfare["id"])["state"] == "received", "no ladder climbed for it"
