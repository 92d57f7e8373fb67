"""Issue 23's defects 1-8 in a real browser (Playwright driving Debian's chromium) against a
real server process: each test shows, on the page an operator or a responder reads, what the
defect said was wrong (the route tests of `test_console_shift` pin the same fixes over HTTP
in process). Alarms arrive over the hub's API; the server's own escalation worker texts the
ladder (a quick ladder from this module's directory file) and each responder's link is
derived from the server's secret, as the server derives it."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.api_contract import AlarmUpload, FaultReport
from server.accept_link import link_token
from server.db import make_engine
from server.dispatch.rows import alarm_ref
from server.store import ServerStore
from tests.console_server import console_server
from tests.mqtt_tools import wait_for
from tests.test_console_browser import browser, contexts  # noqa: F401  (fixtures)
from tests.test_console_shift_browser import HUB, _in_worker, shot, sign_in

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = pytest.mark.integration

SECRET = "defects-" + "k" * 32
# a press climbs Doctor A (half a second), then Doctor B (an hour): time to accept;
# a critical vital-sign alarm runs A, B, the dispatcher and once more, in seconds
DIRECTORY = """\
[[teams]]
id = "team-a"
name = "Team A"

[teams.policies]
button_critical = "press"
vitals_critical = "loop"

[[teams]]
id = "dispatch"
name = "Dispatch"
kind = "dispatch"

[[policies]]
id = "press"
repeat = 0

[[policies.steps]]
target = "team_on_duty"
wait_s = 0.5
rank = 0

[[policies.steps]]
target = "team_on_duty"
wait_s = 3600
rank = 1

[[policies]]
id = "loop"
repeat = 1

[[policies.steps]]
target = "team_on_duty"
wait_s = 0.5
rank = 0

[[policies.steps]]
target = "team_on_duty"
wait_s = 0.5
rank = 1

[[policies.steps]]
target = "dispatcher"
wait_s = 0.5

[[doctors]]
id = "dr-a"
team = "team-a"
name = "Doctor A"
phone = "+8613800000001"
language = "en"

[[doctors]]
id = "dr-b"
team = "team-a"
name = "Doctor B"
phone = "+8613800000002"
priority = 1
language = "en"

[[doctors]]
id = "desk"
team = "dispatch"
name = "Dispatcher"
phone = "+8613800000009"
role = "dispatcher"
language = "en"

[[elders]]
id = "elder-1"
team = "team-a"
name = "Zhang San"
short_address = "Bldg 3-501"
address = "Bldg 3, Unit 5, Room 501"
care_level = 3
medical_notes = "Warfarin; pacemaker"

[[elders.contacts]]
id = "son"
name = "Zhang Qiang"
phone = "+8613900000001"
language = "en"

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
"""


@dataclass(frozen=True)
class Centre:
    base: str
    token: str
    db: Path

    def raise_alarm(self, kind: AlarmKind, device: str, details: dict[str, object]) -> str:
        """The hub uploads an alarm; returns the server's id of it."""
        now = int(datetime.now(UTC).timestamp() * 1000)
        upload = AlarmUpload(
            alarm_id=uuid.uuid4().hex,
            device_id=device,
            kind=kind,
            severity=Severity.CRITICAL,
            raised_at_ms=now,
            details=details,
        )
        r = httpx.post(
            f"{self.base}/api/v1/alarms",
            json=upload.model_dump(mode="json"),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert r.status_code in (200, 201), r.text
        return str(self.one("SELECT id FROM alarms WHERE hub_alarm_id = ?", upload.alarm_id))

    def one(self, sql: str, *args: object) -> object:
        with sqlite3.connect(self.db) as conn:
            row = conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def link(self, alarm_id: str, member: str, last: bool = False) -> str:
        """The path of the link in the member's (first or last) alarm text, once sent."""
        order = "DESC" if last else "ASC"
        sql = (
            "SELECT id FROM notifications WHERE alarm_id = ? AND doctor_id = ?"
            f" AND link_token_hash IS NOT NULL ORDER BY created_at_ms {order}, position {order}"
        )
        nid = wait_for(lambda: self.one(sql, alarm_id, member), 15)
        assert nid, f"{member} was not texted about {alarm_id}"
        key = hashlib.sha256(b"carehub-links\0" + SECRET.encode()).digest()  # link_secret()
        return f"/r/{alarm_ref(alarm_id)}/{link_token(key, str(nid))}"

    def accept(self, alarm_id: str, member: str) -> str:
        link = self.link(alarm_id, member)
        r = httpx.post(self.base + link + "/accept", timeout=10)
        assert r.status_code == 200, r.text
        return link


@pytest.fixture
def centre(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Centre]:
    monkeypatch.setenv("CAREHUB_SECRET_KEY", SECRET)  # the server process inherits it
    token = secrets.token_urlsafe(24)
    with console_server(tmp_path, "disp", hub_token=token, directory=DIRECTORY) as base:
        yield Centre(base, token, tmp_path / "server.db")


VITALS: dict[str, object] = {
    "reason": "red NEWS2 sub-score (spo2) for 90 s",
    "scores": {"spo2": 3, "hr": 1, "total": 4},
    "readings": [
        {"ts_ms": 1_000, "hr": 88, "spo2": 93, "rr": 18, "temp": 36.9},
        {"ts_ms": 31_000, "hr": 96, "spo2": 89, "rr": 20, "temp": 37.1},
    ],
}


def test_1_a_vitals_alarm_shows_its_readings_and_the_detectors_reason(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: Centre,
) -> None:  # type: ignore[no-untyped-def]
    """Defect 1: the page showed "—" for every reading (`readings` is a list of epoch
    medians, read as a dict) and not the detector's reason."""
    alarm_id = centre.raise_alarm(AlarmKind.VITALS, "wear-1", VITALS)
    page = sign_in(browser, contexts, centre.base, "disp")
    page.goto(f"/console/alarms/{alarm_id}")
    vitals = page.locator("#vitals")
    expect(vitals.locator("tr", has_text="SpO2")).to_contain_text("89")  # the latest epoch
    expect(vitals.locator("tr", has_text="Heart rate")).to_contain_text("96")
    expect(vitals.locator("tr", has_text="Respiration rate")).to_contain_text("20")
    expect(page.locator("#vitals-reason")).to_contain_text("red NEWS2 sub-score (spo2) for 90 s")
    shot(page, "defect-1-vitals-en.png")


async def _faults(url: str, reports: list[tuple[bool, int]]) -> None:
    engine = make_engine(url)
    try:
        store = ServerStore(engine)
        for active, at_ms in reports:
            report = FaultReport(
                report_id=uuid.uuid4().hex,
                device_id="btn-1",
                fault="device_offline",
                active=active,
                at_ms=at_ms,
            )
            await store.record_fault(HUB, report, at_ms)
    finally:
        await engine.dispose()


def test_2_the_health_board_drops_a_fault_the_hub_cleared(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: Centre,
) -> None:  # type: ignore[no-untyped-def]
    """Defect 2: the board showed every `active` fault row ever stored (two "device offline"
    rows for one button, and cleared faults stayed), not the latest per hub/device/kind."""
    url = f"sqlite+aiosqlite:///{centre.db}"
    now = int(datetime.now(UTC).timestamp() * 1000)
    _in_worker(_faults(url, [(True, now - 180_000), (False, now - 120_000), (True, now - 60_000)]))
    page = sign_in(browser, contexts, centre.base, "disp")
    page.goto("/console/health")
    rows = page.locator("#devices-offline tbody tr")
    expect(rows).to_have_count(1)  # raised again: one row, not two
    expect(rows).to_contain_text("btn-1")
    _in_worker(_faults(url, [(False, now)]))
    page.reload()
    expect(page.locator("#devices-offline .count")).to_have_text("0")  # the hub cleared it
    expect(rows).to_have_count(0)
    shot(page, "defect-2-health-en.png")


def test_3_after_accept_the_responder_reads_medical_notes_and_care_level(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: Centre,
) -> None:  # type: ignore[no-untyped-def]
    """Defect 3: the responder's page after Accept had no medical notes and no care level."""
    alarm_id = centre.raise_alarm(AlarmKind.BUTTON, "btn-1", {})
    link = centre.link(alarm_id, "dr-a")
    phone = browser.new_context(base_url=centre.base, locale="en-US")
    contexts.append(phone)
    page = phone.new_page()
    page.goto(link)
    expect(page.locator("button.accept")).to_be_visible()
    expect(page.locator("#medical-notes")).to_have_count(0)  # not before accepting
    page.click("button.accept")
    expect(page.locator("#medical-notes")).to_have_text("Warfarin; pacemaker")
    expect(page.locator("#care-level")).to_have_text("3")
    shot(page, "defect-3-responder-en.png")


def test_4_the_console_records_a_phoned_in_arrival(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: Centre,
) -> None:  # type: ignore[no-untyped-def]
    """Defect 4: the console could not record an arrival (a phoned-in arrival was a miss)."""
    alarm_id = centre.raise_alarm(AlarmKind.BUTTON, "btn-1", {})
    centre.accept(alarm_id, "dr-a")
    page = sign_in(browser, contexts, centre.base, "disp")
    page.goto(f"/console/alarms/{alarm_id}")
    page.click("#arrived-form button")
    expect(page.locator("#timeline li.ev-arrived")).to_contain_text("recorded at the console")
    expect(page.locator("#arrived-form")).to_have_count(0)
    assert centre.one("SELECT arrived_at_ms FROM alarms WHERE id = ?", alarm_id) is not None
    shot(page, "defect-4-arrival-en.png")


def test_5_queue_timeline_and_responder_page_number_steps_alike(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: Centre,
) -> None:  # type: ignore[no-untyped-def]
    """Defect 5: the queue said "step 4" where the timeline said "step 3", the count ran on
    through a repeat and the responder's page said "Step 4". A three-step ladder run twice:
    its fourth step taken is step 1 of the first repeat, on every view."""
    alarm_id = centre.raise_alarm(AlarmKind.VITALS, "wear-1", VITALS)
    exhausted = "SELECT 1 FROM alarm_events WHERE alarm_id = ? AND kind = 'ladder_exhausted'"
    assert wait_for(lambda: centre.one(exhausted, alarm_id), 30), "the ladder did not run out"
    page = sign_in(browser, contexts, centre.base, "disp")
    step = page.locator(f"tr[data-alarm-id='{alarm_id}'] td.step")
    expect(step).to_contain_text("step 3 (repeat 1)")
    page.goto(f"/console/alarms/{alarm_id}")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("step 1: Doctor A")
    expect(timeline).to_contain_text("step 3: Dispatcher")
    expect(timeline).to_contain_text("step 1 (repeat 1): Doctor A")
    expect(timeline).to_contain_text("step 3 (repeat 1): Dispatcher")
    expect(timeline).not_to_contain_text("step 4")
    expect(timeline).not_to_contain_text("step 0")
    shot(page, "defect-5-steps-en.png")

    page.goto(centre.link(alarm_id, "dr-a", last=True))  # the repeat's text to Doctor A
    step_shown = page.locator("dl").first.locator("dt", has_text="Step")
    expect(step_shown.locator("xpath=following-sibling::dd[1]")).to_have_text("1 (repeat 1)")


def test_6_accepted_reached_and_resolved_by_one_doctor_reads_acknowledged(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: Centre,
) -> None:  # type: ignore[no-untyped-def]
    """Defect 6: an alarm accepted, reached and resolved by one doctor read "cleared ·
    unacknowledged · assigned to …"."""
    alarm_id = centre.raise_alarm(AlarmKind.BUTTON, "btn-1", {})
    link = centre.accept(alarm_id, "dr-a")
    assert httpx.post(centre.base + link + "/arrived", timeout=10).status_code == 200
    page = sign_in(browser, contexts, centre.base, "disp")
    page.goto(f"/console/alarms/{alarm_id}")
    page.select_option("#resolve-form select", "home_visit")
    page.click("#resolve-form button[type=submit]")
    lifecycle = page.locator("#lifecycle")
    expect(lifecycle).to_contain_text("cleared")
    expect(lifecycle).to_contain_text("accepted by: Doctor A")
    expect(lifecycle).not_to_contain_text("unacknowledged")
    expect(lifecycle).not_to_contain_text("assigned to")
    page.reload()
    expect(lifecycle).to_contain_text("accepted by: Doctor A")
    expect(lifecycle).not_to_contain_text("unacknowledged")
    shot(page, "defect-6-lifecycle-en.png")


def test_7_notified_shows_the_ladders_texts_each_responder_once(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: Centre,
) -> None:  # type: ignore[no-untyped-def]
    """Defect 7: the "Notified" column mixed the family's and the "taken" texts with the
    ladder's, and named a doctor twice. Doctor B accepts (A is told "taken", the son
    "accepted"), then the operator assigns Doctor A as well."""
    alarm_id = centre.raise_alarm(AlarmKind.BUTTON, "btn-1", {})
    centre.accept(alarm_id, "dr-b")
    family = "SELECT count(*) FROM notifications WHERE alarm_id = ? AND contact_id IS NOT NULL"
    assert wait_for(lambda: centre.one(family, alarm_id), 15), "the son was not told"
    page = sign_in(browser, contexts, centre.base, "disp")
    page.goto(f"/console/alarms/{alarm_id}")
    page.select_option("#assign-form select", "dr-a")
    page.click("#assign-form button")
    expect(page.locator("#timeline li.ev-assigned")).to_contain_text("Doctor A")
    assigned = (
        "SELECT 1 FROM notifications WHERE alarm_id = ? AND doctor_id = 'dr-a'"
        " AND purpose LIKE 'assigned-%'"
    )
    assert wait_for(lambda: centre.one(assigned, alarm_id), 15), "Doctor A was not texted again"
    page.goto("/console/")
    chips = page.locator(f"tr[data-alarm-id='{alarm_id}'] span.sms")
    expect(chips).to_have_count(2)
    names = sorted(t.split(":", 1)[0] for t in chips.all_inner_texts())
    assert names == ["Doctor A", "Doctor B"], chips.all_inner_texts()
    expect(chips.filter(has_text="Doctor B")).to_contain_text("accepted")
    shot(page, "defect-7-notified-en.png")


def test_8_last_14_days_draws_14_bars_ending_today_in_the_centres_zone(
    browser,  # noqa: F811
    contexts,  # noqa: F811
    centre: Centre,
) -> None:  # type: ignore[no-untyped-def]
    """Defect 8: "Last 14 days" drew 15 bars, and the KPI day was UTC in one place and the
    centre's zone in another. A browser in New York reads the centre's (Asia/Shanghai) days."""
    page = sign_in(browser, contexts, centre.base, "disp", timezone_id="America/New_York")
    page.goto("/console/kpi")
    labels = page.locator("#plot-accepted text").filter(has_text=re.compile(r"^\d\d-\d\d$"))
    expect(labels).to_have_count(14)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%m-%d")
    days = labels.evaluate_all("ts => ts.map(t => t.textContent)")
    assert days[-1] == today, days  # the centre's day, not UTC's or the browser's
    shot(page, "defect-8-kpi-en.png")
