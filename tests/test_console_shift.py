"""Issue 23, the defects a duty shift found in the console and the responder's page, over
HTTP in process: a real database, the escalation worker driven by hand on a fake clock, SMS
to a recording notifier (as `test_responder`). Each test names its defect's number.
The browser's side (no-reload actions, defaults, landing page, times) is in
`test_console_shift_browser`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from typer.testing import CliRunner

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.api_contract import AlarmUpload, FaultReport
from carehub.settings import ServerSettings
from cli.main import app as cli_app
from server.app import link_secret
from server.console.checklists import ChecklistRecord, decode
from server.console.console_store import ConsoleStore
from server.db import make_engine, migrate
from server.directory import Directory, load_directory
from server.schema import alarm_events, alarms, console_audit, notifications
from server.sealed import Sealer
from server.store import HubIdentity
from tests.dispatch_world import open_dispatching, serving
from tests.test_responder import AUTH_TOKEN, BASE, SECRET, World

PASSWORD = "correct horse battery"
HUB = HubIdentity("hub-1", "elder-1")
DIRECTORY = {
    "teams": [
        {"id": "team-a", "name": "A", "base": {"lat": 39.93, "lon": 116.39}},
        {"id": "dispatch", "name": "Dispatch", "kind": "dispatch"},
    ],
    "doctors": [
        # first by name, off duty: never the default of the Assign list
        {
            "id": "ai",
            "team": "team-a",
            "name": "Dr Ai",
            "phone": "+8613800000005",
            "on_duty": False,
        },
        {"id": "li", "team": "team-a", "name": "李医生", "phone": "+8613800000001"},
        {
            "id": "wang",
            "team": "team-a",
            "name": "Dr Wang",
            "phone": "+8613800000002",
            "priority": 1,
            "language": "en",
        },
        {
            "id": "disp",
            "team": "dispatch",
            "name": "Dispatcher",
            "phone": "+8613800000009",
            "role": "dispatcher",
            "language": "en",
        },
    ],
    "elders": [
        {
            "id": "elder-1",
            "team": "team-a",
            "name": "王秀英",
            "short_address": "和平里3-2-501",
            "address": "北京市东城区和平里3号楼2单元501",
            "care_level": 3,
            "medical_notes": "华法林；心脏起搏器",
            "key_safe_code": "4711",
            "contacts": [{"id": "son", "name": "王强", "phone": "+8613900000001"}],
        }
    ],
    "hubs": [{"id": "hub-1", "elder": "elder-1", "token": "t" * 24}],
    "devices": [
        {"id": "btn-1", "hub": "hub-1", "kind": "button"},
        {"id": "band-1", "hub": "hub-1", "kind": "wearable"},
    ],
}
PHONE = {d["id"]: d["phone"] for d in DIRECTORY["doctors"]}  # type: ignore[index]
PHONE["son"] = "+8613900000001"


class Shift(World):
    async def sign_in(self, username: str = "op") -> str:
        """Sign the console in as `username`; returns the session's CSRF token."""
        page = await self.http.get("/console/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = await self.http.post(
            "/console/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token},
        )
        assert r.status_code == 303, r.text
        return await self.csrf()

    async def csrf(self) -> str:
        page = await self.http.get("/console/health")
        return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

    async def console(self, path: str) -> str:
        r = await self.http.get(path, headers={"Accept": "text/html"})
        assert r.status_code == 200, r.text
        return r.text

    async def queue_row(self, alarm_id: str) -> str:
        rows = await self.console("/console/")
        return rows.split(f'data-alarm-id="{alarm_id}"', 1)[1].split("</tr>", 1)[0]

    async def press(self, device: str = "btn-1", kind: AlarmKind = AlarmKind.BUTTON) -> str:
        upload = AlarmUpload(
            alarm_id=uuid.uuid4().hex,
            device_id=device,
            kind=kind,
            severity=Severity.CRITICAL,
            raised_at_ms=self.clock.now_ms(),
        )
        await self.rt.store.store_alarm(HUB, upload, self.clock.now_ms())
        found = await self.scalar(
            sa.select(alarms.c.id).where(alarms.c.hub_alarm_id == upload.alarm_id)
        )
        return str(found)


SHIFT_ACCOUNTS: list[tuple[str, str, str | None, str]] = [
    ("op", "dispatcher", None, "en"),
    ("op-zh", "dispatcher", None, "zh"),
    ("fitter", "installer", None, "en"),
    ("doc-d", "doctor", "dispatch", "en"),  # a doctor of another team
]
"""(username, role, team, language) of the console accounts on duty."""


@contextlib.asynccontextmanager
async def open_shift(
    database_url: str,
    directory: object = DIRECTORY,
    accounts: list[tuple[str, str, str | None, str]] = SHIFT_ACCOUNTS,
) -> AsyncIterator[Shift]:
    """A server runtime on `directory` with these console `accounts`, served in process."""
    settings = ServerSettings(
        database_url=database_url,
        secret_key=SecretStr(SECRET),
        public_base_url=BASE,
        twilio_auth_token=SecretStr(AUTH_TOKEN),
        console_insecure_cookies=True,
    )
    async with (
        open_dispatching(
            database_url,
            directory,
            PHONE,
            sealer_key=SECRET,
            link_key=link_secret(settings),
            base_url=BASE,
        ) as d,
        serving(settings, d) as (rt, http),
    ):
        for username, role, team, language in accounts:
            await ConsoleStore(d.engine).add_account(
                username, PASSWORD, role, team, language, d.clock.now_ms()
            )
        yield Shift(d.clock, rt, d.sms, http)


@pytest.fixture
async def shift(database_url: str) -> AsyncIterator[Shift]:
    async with open_shift(database_url) as s:
        yield s


def text_of(html: str) -> str:
    """The words of an HTML part, tags and runs of white space gone."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


# ------------------------------------------------------------ 1. vital signs


async def test_1_a_vitals_alarm_shows_the_latest_epoch_and_the_detectors_reason(
    shift: Shift,
) -> None:
    """The hub sends `readings` as a list of epoch medians (docs/vital-signs.md)."""
    now = shift.clock.now_ms()
    upload = AlarmUpload(
        alarm_id=uuid.uuid4().hex,
        device_id="band-1",
        kind=AlarmKind.VITALS,
        severity=Severity.CRITICAL,
        raised_at_ms=now,
        details={
            "reason": "red NEWS2 sub-score (spo2) for 90 s",
            "scores": {"spo2": 3, "hr": 1, "total": 4},
            "readings": [
                {"ts_ms": now - 60_000, "hr": 88, "spo2": 93, "rr": 18, "temp": 36.9},
                {"ts_ms": now - 30_000, "hr": 96, "spo2": 89, "rr": 20, "temp": 37.1},
            ],
        },
    )
    await shift.rt.store.store_alarm(HUB, upload, now)
    alarm_id = await shift.scalar(sa.select(alarms.c.id).where(alarms.c.kind == "vitals"))
    await shift.sign_in()
    page = await shift.console(f"/console/alarms/{alarm_id}")
    table = text_of(page.split('id="vitals"', 1)[1].split("</table>", 1)[0])
    assert "SpO2 (%) 89 3" in table and "Heart rate (bpm) 96 1" in table  # the latest epoch
    assert "Respiration rate (/min) 20" in table and "NEWS2 total — 4" in table
    assert "red NEWS2 sub-score (spo2) for 90 s" in page
    shift.http.cookies.clear()
    await shift.sign_in("op-zh")  # 12: the reason in the reader's language
    page = await shift.console(f"/console/alarms/{alarm_id}")
    assert "NEWS2 红色子评分（血氧）持续 90 秒" in page and "red NEWS2" not in page


# ------------------------------------------------------------ 2. the health board


async def test_2_the_health_board_shows_a_fault_until_its_latest_report_clears_it(
    shift: Shift,
) -> None:
    """Raised, cleared, raised, cleared (each `carehub sim press` wakes the button): the
    faults table keeps every report; the board shows the latest of each."""
    now = shift.clock.now_ms()
    for i, active in enumerate([True, False, True]):
        report = FaultReport(
            report_id=f"f{i}",
            device_id="btn-1",
            fault="device_offline",
            active=active,
            at_ms=now + i * 60_000,
        )
        await shift.rt.store.record_fault(HUB, report, now + i * 60_000)
    await shift.sign_in("fitter")

    async def offline_rows() -> int:
        board = await shift.console("/console/health")
        section = board.split('id="devices-offline"', 1)[1].split("</section>", 1)[0]
        return section.count("hub-1 / btn-1")

    assert await offline_rows() == 1  # raised again: one row, not two
    cleared = FaultReport(
        report_id="f3", device_id="btn-1", fault="device_offline", active=False, at_ms=now + 180_000
    )
    await shift.rt.store.record_fault(HUB, cleared, now + 200_000)
    assert await offline_rows() == 0  # the hub cleared it


# ------------------------------------------------------------ 3. the responder's page


async def test_3_after_accept_the_responder_sees_medical_notes_and_care_level(
    shift: Shift,
) -> None:
    await shift.press()
    await shift.run()
    link = shift.link("li")
    before = await shift.http.get(link)
    assert "华法林" not in before.text  # not before accepting
    accepted = await shift.http.post(link + "/accept")
    assert "华法林；心脏起搏器" in accepted.text
    assert re.search(r'id="care-level">3<', accepted.text)
    other = await shift.http.get(shift.link("li"))
    assert "华法林" in other.text


# ------------------------------------------------------------ 4. arrival from the console


async def test_4_the_console_records_a_phoned_in_arrival(shift: Shift) -> None:
    alarm_id = await shift.press()
    await shift.run()
    await shift.http.post(shift.link("li") + "/accept")
    token = await shift.sign_in()
    page = await shift.console(f"/console/alarms/{alarm_id}")
    assert 'id="arrived-form"' in page
    shift.clock.advance(600)  # ten minutes later, li phones: "I am there"
    r = await shift.http.post(f"/console/alarms/{alarm_id}/arrived", data={"csrf_token": token})
    assert r.status_code in (200, 303), r.text
    arrived = await shift.scalar(sa.select(alarms.c.arrived_at_ms).where(alarms.c.id == alarm_id))
    assert arrived == shift.clock.now_ms()  # the service circle counts it
    events = await shift.rows(
        sa.select(alarm_events.c.kind, alarm_events.c.actor, alarm_events.c.detail).where(
            alarm_events.c.alarm_id == alarm_id, alarm_events.c.kind == "arrived"
        )
    )
    assert [(e.actor, e.detail) for e in events] == [("member:li", "via console:op")]
    page = await shift.console(f"/console/alarms/{alarm_id}")
    assert 'id="arrived-form"' not in page and "recorded at the console" in page
    again = await shift.http.post(f"/console/alarms/{alarm_id}/arrived", data={"csrf_token": token})
    assert again.status_code == 409  # nothing left to record


# ------------------------------------------------------------ 5. step numbers


async def test_5_queue_timeline_and_responder_page_number_steps_alike(shift: Shift) -> None:
    """The default ladder has four steps (li, wang, backup teams, dispatcher) and runs
    twice more: its fifth step taken is step 1 of the first repeat, on every view."""
    alarm_id = await shift.press()
    await shift.run()
    await shift.run(60)  # step 2: wang
    await shift.sign_in()
    row = text_of(await shift.queue_row(alarm_id))
    timeline = text_of(
        (await shift.console(f"/console/alarms/{alarm_id}")).split('id="timeline"')[1]
    )
    assert "step 2 ·" in row
    assert "step 2: Dr Wang" in timeline and "step 1: 李医生" in timeline
    assert "step 0" not in timeline and "step 3" not in timeline

    await shift.run(60 + 120)  # backup teams (none: skipped), the dispatcher, li again
    li_links = [b for b in shift.sms.to("li") if "/r/" in b]
    assert len(li_links) == 2, shift.sms.to("li")
    row = text_of(await shift.queue_row(alarm_id))
    assert "step 1 (repeat 1) ·" in row, row
    timeline = text_of(
        (await shift.console(f"/console/alarms/{alarm_id}")).split('id="timeline"')[1]
    )
    assert "step 4: Dispatcher" in timeline and "step 1 (repeat 1): 李医生" in timeline
    assert "step 5" not in timeline
    page = text_of((await shift.http.get(shift.link("li", -1))).text)
    assert "呼叫轮次 1 (第 1 轮重复)" in page and "呼叫轮次 5" not in page
    first = text_of((await shift.http.get(shift.link("li", 0))).text)
    assert "呼叫轮次 1 " in first + " "


# ------------------------------------------------------------ 6. lifecycle


async def test_6_accepted_arrived_resolved_reads_acknowledged_and_accepted_by(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    await shift.run()
    link = shift.link("li")
    await shift.http.post(link + "/accept")
    await shift.http.post(link + "/arrived")
    token = await shift.sign_in()
    await shift.http.post(
        f"/console/alarms/{alarm_id}/resolve", data={"csrf_token": token, "outcome": "home_visit"}
    )
    page = await shift.console(f"/console/alarms/{alarm_id}")
    life = text_of(page.split('id="lifecycle"', 1)[1].split("</span>", 1)[0])
    assert "unacknowledged" not in life and "acknowledged" in life
    assert "accepted by: 李医生" in life and "assigned to" not in life


# ------------------------------------------------------------ 7. the Notified column


async def test_7_notified_shows_each_responder_once_without_family_or_notices(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    await shift.run()
    await shift.run(60)  # wang too
    await shift.http.post(shift.link("wang") + "/accept")  # li is told "taken", son "accepted"
    await shift.run()
    token = await shift.sign_in()
    await shift.http.post(
        f"/console/alarms/{alarm_id}/assign", data={"csrf_token": token, "member": "li"}
    )
    await shift.run()
    assert any("王强" not in b for b in shift.sms.to("son")) and shift.sms.to("son")
    cell = (await shift.queue_row(alarm_id)).split("</td>")[5]
    chips = re.findall(r'<span class="sms[^"]*">([^<]*)</span>', cell)
    names = [c.split(":", 1)[0] for c in chips]
    assert sorted(names) == ["Dr Wang", "李医生"], chips  # once each; no family, no notices
    assert any(c.startswith("Dr Wang") and "accepted" in c for c in chips)


# ------------------------------------------------------------ 8. KPI days


async def test_8_the_last_14_days_are_14_days_in_the_centres_zone(shift: Shift) -> None:
    await shift.sign_in()
    page = await shift.console("/console/kpi")
    plot = page.split('id="plot-accepted"', 1)[1].split("</figure>", 1)[0]
    days = re.findall(r">(\d\d-\d\d)</text>", plot)  # one slot per day, each labelled
    # the fake clock's now is 2025-11-24 16:00 UTC: already the 25th in Shanghai
    assert len(days) == 14 and days[0] == "11-12" and days[-1] == "11-25", days
    assert "Asia/Shanghai" in page
    one = await shift.console("/console/kpi?days=1")
    assert re.findall(r">(\d\d-\d\d)</text>", one.split('id="plot-accepted"', 1)[1])[:1] == [
        "11-25"
    ]


def test_8_the_kpi_window_is_whole_local_days() -> None:
    from server.console.plots import calendar_days
    from server.kpi import days_start_ms

    now = 1_764_000_000_000  # 2025-11-24 16:00 UTC: already the 25th in Shanghai
    since = days_start_ms(now, 14, "Asia/Shanghai")
    labels = calendar_days(since, now, "Asia/Shanghai")
    assert len(labels) == 14 and labels[-1] == "2025-11-25" and labels[0] == "2025-11-12"
    assert len(calendar_days(days_start_ms(now, 1, "UTC"), now, "UTC")) == 1


def test_8_the_cli_and_the_console_count_kpi_days_in_the_same_zone(tmp_path: Path) -> None:
    """`carehub report kpi` without --time-zone counts days in the centre's zone, as the
    console's KPI page does (both read `console_time_zone`)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"

    async def migrated() -> None:
        engine = make_engine(url)
        await migrate(engine)
        await engine.dispose()

    asyncio.run(migrated())
    with ThreadPoolExecutor(1) as worker:  # the CLI runs its own event loop
        result = worker.submit(
            CliRunner().invoke,
            cli_app,
            ["report", "kpi", "--since", "2026-11-02", "--database-url", url, "--json"],
        ).result()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["time_zone"] == ServerSettings().console_time_zone
    assert ServerSettings().console_time_zone == "Asia/Shanghai"


# ------------------------------------------------------------ 9. the timeline


async def test_9_the_timeline_is_in_order_and_shows_no_sids_or_internal_ids(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    await shift.run()
    sid = shift.sms.ref_to("li")
    async with shift.rt.store.engine.begin() as conn:  # queued a moment before it was sent
        await conn.execute(
            notifications.update().values(created_at_ms=notifications.c.created_at_ms - 5)
        )
    shift.clock.advance(3)  # the handset says "delivered" after the provider took it
    delivered = await shift.twilio(
        "/twilio/status", {"MessageSid": sid, "MessageStatus": "delivered"}
    )
    assert delivered.status_code in (200, 204)
    await shift.sign_in()
    page = await shift.console(f"/console/alarms/{alarm_id}")
    timeline = page.split('id="timeline"', 1)[1]
    kinds = re.findall(r'data-kind="(\w+)"', timeline)
    assert kinds.index("sms_sent") < kinds.index("sms"), kinds
    assert sid not in page and "urgent" not in text_of(timeline)
    assert "member:" not in timeline and "li, " not in timeline


async def test_9_an_action_answered_to_the_page_script_is_not_another_audited_view(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    token = await shift.sign_in()
    await shift.console(f"/console/alarms/{alarm_id}")  # opening the page: one audit row
    fragment = {"Accept": "text/html-fragment"}
    for action, data in [("acknowledge", {}), ("note", {"text": "son on his way"})]:
        r = await shift.http.post(
            f"/console/alarms/{alarm_id}/{action}",
            data={"csrf_token": token, **data},
            headers=fragment,
        )
        assert r.status_code == 200 and 'id="alarm-screen"' in r.text
    assert "son on his way" in r.text
    audit = await shift.rows(sa.select(console_audit.c.id))
    assert len(audit) == 1


# ------------------------------------------------------------ 10. safe defaults


async def test_10_resolve_and_assign_have_no_preselected_choice_and_duty_is_marked(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    await shift.sign_in()
    page = await shift.console(f"/console/alarms/{alarm_id}")
    resolve = page.split('id="resolve-form"', 1)[1].split("</form>", 1)[0]
    first = re.search(r"<option([^>]*)>", resolve)
    assert first is not None and 'value=""' in first.group(1) and "selected" in first.group(1)
    assert "required" in resolve
    assign = page.split('id="assign-form"', 1)[1].split("</form>", 1)[0]
    options = re.findall(r"<option([^>]*)>([^<]*)</option>", assign)
    assert 'value=""' in options[0][0] and "selected" in options[0][0]
    labels = [label for _, label in options[1:]]
    assert labels[0].endswith("on duty") and "Dr Ai" in labels[-1] and "off duty" in labels[-1]
    refused = await shift.http.post(
        f"/console/alarms/{alarm_id}/resolve", data={"csrf_token": await shift.csrf()}
    )
    assert refused.status_code == 409  # no outcome chosen: nothing is resolved
    assert await shift.state(alarm_id) is not AlarmState.RESOLVED


# ------------------------------------------------------------ 11. the installer lands


async def test_11_an_installer_lands_on_the_health_board(shift: Shift) -> None:
    page = await shift.http.get("/console/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = await shift.http.post(
        "/console/login", data={"username": "fitter", "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/health"
    queue = await shift.http.get("/console/", headers={"Accept": "text/html"})
    assert queue.status_code == 303 and queue.headers["location"] == "/console/health"


# ------------------------------------------------------------ 12. Chinese throughout


async def test_12_a_chinese_operator_reads_the_timeline_and_outcome_in_chinese(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    await shift.run()
    await shift.http.post(shift.link("li") + "/accept")
    token = await shift.sign_in("op-zh")
    await shift.http.post(
        f"/console/alarms/{alarm_id}/resolve", data={"csrf_token": token, "outcome": "by_phone"}
    )
    page = await shift.console(f"/console/alarms/{alarm_id}")
    timeline = text_of(page.split('id="timeline"', 1)[1])
    assert "通过链接" in timeline and "电话处理" in timeline and "第 1 步" in timeline
    for english in ("accepted via", "outcome:", "step 0", "via link", "system"):
        assert english not in timeline, english
    assert 'data-time-zone="Asia/Shanghai"' in page and 'lang="zh-CN"' in page


async def test_12_a_chinese_doctor_who_replies_late_is_answered_in_chinese(
    shift: Shift,
) -> None:
    await shift.press()
    await shift.run()
    await shift.run(60)  # wang is asked too, and accepts first
    await shift.http.post(shift.link("wang") + "/accept")
    code = re.search(r"回复(\d+)a", shift.sms.to("li")[0])
    assert code is not None
    r = await shift.reply("li", code.group(1) + "a")
    assert "已由Dr Wang接受" in r.text and "already accepted" not in r.text


async def test_12_kpi_health_board_and_header_speak_chinese(shift: Shift) -> None:
    now = shift.clock.now_ms()
    await shift.rt.store.record_fault(
        HUB,
        FaultReport(
            report_id="low", device_id="btn-1", fault="battery_low", active=True, at_ms=now
        ),
        now,
    )
    shift.clock.advance(300)
    await shift.sign_in("op-zh")
    kpi = await shift.console("/console/kpi")
    assert "(max" not in kpi and "最高" in kpi
    board = await shift.console("/console/health")
    battery = board.split('id="battery-low"', 1)[1].split("</section>", 1)[0]
    assert 'class="lasted">5 分钟<' in battery
    assert "调度员" in board and "· dispatcher<" not in board


# ------------------------------------------------------------ claims across dispatchers


async def test_claims_one_operator_has_an_alarm_and_every_console_sees_who(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    token = await shift.sign_in("op")
    assert "unclaimed" in await shift.queue_row(alarm_id)
    r = await shift.http.post(f"/console/alarms/{alarm_id}/claim", data={"csrf_token": token})
    assert r.status_code in (200, 303)
    assert "yours" in await shift.queue_row(alarm_id)
    page = await shift.console(f"/console/alarms/{alarm_id}")
    assert 'id="release-form"' in page and 'id="claim-form"' not in page

    shift.http.cookies.clear()
    token = await shift.sign_in("op-zh")  # the other dispatcher on the shift
    assert "由 op 处理" in await shift.queue_row(alarm_id)
    page = await shift.console(f"/console/alarms/{alarm_id}")
    assert 'id="take-over-form"' in page and "从 op 接手" in page
    refused = await shift.http.post(f"/console/alarms/{alarm_id}/claim", data={"csrf_token": token})
    assert refused.status_code == 409 and "op 正在处理此警报" in refused.text  # 12: in Chinese
    assert (
        await shift.http.post(f"/console/alarms/{alarm_id}/release", data={"csrf_token": token})
    ).status_code == 409  # not theirs to release
    taken = await shift.http.post(
        f"/console/alarms/{alarm_id}/claim", data={"csrf_token": token, "take_over": "1"}
    )
    assert taken.status_code in (200, 303)
    assert "由您处理" in await shift.queue_row(alarm_id)
    events = await shift.rows(
        sa.select(alarm_events.c.kind, alarm_events.c.actor, alarm_events.c.detail)
        .where(alarm_events.c.alarm_id == alarm_id, alarm_events.c.kind == "claimed")
        .order_by(alarm_events.c.id)
    )
    assert [tuple(e) for e in events] == [
        ("claimed", "console:op", ""),
        ("claimed", "console:op-zh", "from op"),
    ]
    timeline = text_of(
        (await shift.console(f"/console/alarms/{alarm_id}")).split('id="timeline"')[1]
    )
    assert "已认领 从 op 接手" in timeline
    await shift.http.post(f"/console/alarms/{alarm_id}/release", data={"csrf_token": token})
    assert "无人认领" in await shift.queue_row(alarm_id)


async def test_claims_two_operators_claiming_at_once_one_gets_it(shift: Shift) -> None:
    from server.console.accounts import Account, Role
    from server.console.alarm_actions import ClaimedByOther, claim

    alarm_id = await shift.press()
    engine = shift.rt.store.engine
    a = Account("1", "op", Role.DISPATCHER, None, "en")
    b = Account("2", "op-zh", Role.DISPATCHER, None, "zh")
    now = shift.clock.now_ms()
    results = await asyncio.gather(
        claim(engine, alarm_id, a, now), claim(engine, alarm_id, b, now), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, ClaimedByOther)]
    assert len(refused) == 1 and [r for r in results if r is None] == [None]
    holder = await shift.scalar(sa.select(alarms.c.claimed_by).where(alarms.c.id == alarm_id))
    assert refused[0].holder == holder and holder in ("op", "op-zh")


def test_12_the_detectors_reasons_are_said_in_the_readers_language() -> None:
    from server.console.i18n import translator
    from server.console.timeline_text import reason_text

    zh, en = translator("zh"), translator("en")
    for reason, chinese in [
        ("red NEWS2 sub-score (spo2) for 90 s", "NEWS2 红色子评分（血氧）持续 90 秒"),
        (
            "red NEWS2 sub-score (hr, rr) most of 600 s",
            "NEWS2 红色子评分（心率, 呼吸频率）在 600 秒内多数时间出现",
        ),
        ("NEWS2 total >= 7 for 90 s (signal in doubt)", "NEWS2 总分 ≥ 7，持续 90 秒 （信号存疑）"),
        ("temperature >= 39.1 °C for 600 s", "体温 ≥ 39.1 °C，持续 600 秒"),
    ]:
        assert reason_text(zh, reason) == chinese
        assert reason_text(en, reason) == reason  # English: as the detector wrote it
    assert reason_text(zh, "something new") == "something new"


def test_the_timeline_says_triage_device_flag_and_operator_first_events() -> None:
    """Triage, the state it led to, a device flag and operator first
    keep their detail on the alarm page: `describe` gave "" for kinds it did not know."""
    from server.console.alarm_detail import TimelineEntry
    from server.console.i18n import translator
    from server.console.timeline_text import describe

    en, zh = translator("en"), translator("zh")

    def said(t: Callable[[str], str], kind: str, detail: str) -> str:
        return describe(t, TimelineEntry(0, kind, "console:disp", detail), {}, None)

    assert said(en, "triage", "send_doctor") == "Send the doctor"
    assert said(zh, "triage", "send_doctor") == zh("triage.send_doctor") != "send_doctor"
    assert said(en, "state", "accidental_press") == "Accidental press"
    assert said(en, "device_flag", "btn-9: device_foreign") == "btn-9: OTHER HOME'S DEVICE"
    assert said(en, "operator_first", "30 s") == "30 s"


async def test_cue_an_unclaimed_alarm_asks_louder_as_it_waits(shift: Shift) -> None:
    alarm_id = await shift.press()
    token = await shift.sign_in("op")

    async def cue() -> str:
        rows = await shift.http.get("/console/", headers={"Accept": "text/html-fragment"})
        row = rows.text.split(f'data-alarm-id="{alarm_id}"', 1)[0].rsplit("<tr", 1)[1]
        found = re.search(r"\bcue-(\d)\b", row)
        return found.group(1) if found else "none"

    assert await cue() == "0"
    shift.clock.advance(61)
    assert await cue() == "1"
    shift.clock.advance(120)
    assert await cue() == "2"
    await shift.http.post(f"/console/alarms/{alarm_id}/claim", data={"csrf_token": token})
    assert await cue() == "0"  # someone has it


# ------------------------------------------------------------ elder search and history


async def test_elders_are_found_by_name_or_address_and_show_their_alarm_history(
    shift: Shift,
) -> None:
    first = await shift.press()
    token = await shift.sign_in("op")
    await shift.http.post(
        f"/console/alarms/{first}/resolve", data={"csrf_token": token, "outcome": "by_phone"}
    )
    shift.clock.advance(3600)
    second = await shift.press()
    for query in ("王", "和平里3", "ELDER-1"):
        found = await shift.console(f"/console/elders?q={query}")
        assert 'href="/console/elders/elder-1"' in found, query
    for query in ("nobody", "%", "_"):
        assert "No elder matches." in await shift.console(f"/console/elders?q={query}"), query
    card = await shift.console("/console/elders/elder-1")
    history = card.split('id="history"', 1)[1].split("</table>", 1)[0]
    assert history.index(second) < history.index(first)  # newest first
    assert "resolved · handled by phone" in text_of(history)
    assert (await shift.http.get("/console/elders?q=" + "x" * 81)).status_code == 422
    shift.http.cookies.clear()
    await shift.sign_in("doc-d")
    assert "No elder matches." in await shift.console("/console/elders?q=王")  # not their team


# ------------------------------------------------------------ checklists


async def test_checklist_items_are_ticked_once_with_who_and_show_on_the_timeline(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    token = await shift.sign_in("op")
    page = await shift.console(f"/console/alarms/{alarm_id}")
    items = re.findall(r'data-item="(\w+)"', page.split('id="checklist"', 1)[1])
    assert items == ["call_elder", "call_family", "responder_on_way"]  # a button alarm's
    for _ in range(2):  # ticked twice: recorded once
        r = await shift.http.post(
            f"/console/alarms/{alarm_id}/check", data={"csrf_token": token, "item": "call_elder"}
        )
        assert r.status_code in (200, 303)
    wrong = await shift.http.post(
        f"/console/alarms/{alarm_id}/check", data={"csrf_token": token, "item": "ask_injury"}
    )
    assert wrong.status_code == 409  # a fall's item, not a button's
    page = await shift.console(f"/console/alarms/{alarm_id}")
    done = page.split('data-item="call_elder"', 1)[1].split("</li>", 1)[0]
    assert "Called the elder" in done and "op" in done and "<form" not in done
    events = await shift.rows(
        sa.select(alarm_events.c.detail, alarm_events.c.actor).where(
            alarm_events.c.alarm_id == alarm_id, alarm_events.c.kind == "checked"
        )
    )
    assert [tuple(e) for e in events] == [("call_elder", "console:op")]
    timeline = text_of(page.split('id="timeline"', 1)[1])
    assert "Checked Called the elder op" in timeline


async def test_checklist_is_kept_with_a_triage_that_closes_the_alarm(shift: Shift) -> None:
    """The operator's outcome "no help needed" resolves the alarm: what was checked is kept
    with it, as with Resolve."""
    alarm_id = await shift.press()
    token = await shift.sign_in("op")
    await shift.http.post(
        f"/console/alarms/{alarm_id}/check", data={"csrf_token": token, "item": "call_elder"}
    )
    r = await shift.http.post(
        f"/console/alarms/{alarm_id}/triage",
        data={"csrf_token": token, "outcome": "no_help_needed"},
    )
    assert r.status_code in (200, 303), r.text
    recorded = await shift.rows(
        sa.select(alarm_events.c.detail, alarm_events.c.actor).where(
            alarm_events.c.alarm_id == alarm_id, alarm_events.c.kind == "checklist"
        )
    )
    assert [tuple(e) for e in recorded] == [
        ("done=call_elder;missed=call_family,responder_on_way", "console:op")
    ]
    history = text_of(await shift.console("/console/elders/elder-1"))
    assert "✓ Called the elder ✗ Called the family" in history


CENTRE_VITALS = ["致电老人，询问感觉如何", "确认手环戴好; SpO2=? (100%)"]


async def test_the_centres_own_checklist_shows_and_is_recorded_with_the_outcome(
    shift: Shift,
) -> None:
    """The directory file's [checklists] replaces a kind's built-in list: its items, the
    centre's own words, are shown as written, ticked, and kept with the outcome."""
    directory = {**DIRECTORY, "checklists": {"vitals": CENTRE_VITALS}}
    engine = shift.rt.store.engine
    await load_directory(engine, Directory.model_validate(directory), Sealer(SECRET))
    alarm_id = await shift.press("band-1", AlarmKind.VITALS)
    button = await shift.press()
    token = await shift.sign_in("op")
    page = await shift.console(f"/console/alarms/{alarm_id}")
    shown = page.split('id="checklist"', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r'data-item="([^"]*)"', shown) == [
        "致电老人，询问感觉如何",
        "确认手环戴好; SpO2=? (100%)",
    ]
    assert "check." not in shown  # shown as written, not looked up
    button_page = await shift.console(f"/console/alarms/{button}")  # a kind left out
    assert 'data-item="call_elder"' in button_page
    wrong = await shift.http.post(
        f"/console/alarms/{alarm_id}/check", data={"csrf_token": token, "item": "call_elder"}
    )
    assert wrong.status_code == 409  # the built-in item is no longer vitals'
    r = await shift.http.post(
        f"/console/alarms/{alarm_id}/check",
        data={"csrf_token": token, "item": CENTRE_VITALS[1]},
    )
    assert r.status_code in (200, 303), r.text
    r = await shift.http.post(
        f"/console/alarms/{alarm_id}/resolve", data={"csrf_token": token, "outcome": "by_phone"}
    )
    assert r.status_code in (200, 303), r.text
    recorded = await shift.rows(
        sa.select(alarm_events.c.detail).where(
            alarm_events.c.alarm_id == alarm_id, alarm_events.c.kind == "checklist"
        )
    )
    assert [decode(r[0]) for r in recorded] == [
        ChecklistRecord(done=(CENTRE_VITALS[1],), missed=(CENTRE_VITALS[0],))
    ]
    timeline = text_of(
        (await shift.console(f"/console/alarms/{alarm_id}")).split('id="timeline"', 1)[1]
    )
    assert f"Checked {CENTRE_VITALS[1]} op" in timeline
    assert f"done: {CENTRE_VITALS[1]} · not done: {CENTRE_VITALS[0]}" in timeline
    history = text_of(await shift.console("/console/elders/elder-1"))
    assert f"✓ {CENTRE_VITALS[1]} ✗ {CENTRE_VITALS[0]}" in history

    await load_directory(engine, Directory.model_validate(DIRECTORY), Sealer(SECRET))
    again = await shift.press("band-1", AlarmKind.VITALS)  # the file without it: built-in
    page = await shift.console(f"/console/alarms/{again}")
    shown = page.split('id="checklist"', 1)[1].split("</ul>", 1)[0]
    assert re.findall(r'data-item="([^"]*)"', shown) == [
        "call_elder",
        "check_wearable",
        "tell_doctor",
    ]


async def test_resolving_offers_the_incidents_other_alarms_and_refuses_a_stranger(
    shift: Shift,
) -> None:
    """A press and, a minute later, a vital-sign alarm of one elder are one incident; an
    alarm resolved with the press must be one of its incident's open alarms."""
    press = await shift.press()
    shift.clock.advance(60)
    vitals = await shift.press("band-1", AlarmKind.VITALS)
    shift.clock.advance(shift.rt.settings.console_incident_window_s + 1)
    later = await shift.press("btn-1", AlarmKind.FALL)  # another incident
    token = await shift.sign_in("op")
    page = await shift.console(f"/console/alarms/{press}")
    offered = re.findall(r'name="also" value="(\w+)"', page)
    assert offered == [vitals]

    refused = await shift.http.post(
        f"/console/alarms/{press}/resolve",
        data={"csrf_token": token, "outcome": "by_phone", "also": [vitals, later]},
    )
    assert refused.status_code == 409 and "not an open alarm of this incident" in refused.text
    states = dict(
        tuple(r)
        for r in await shift.rows(sa.select(alarms.c.id, alarms.c.state))  # type: ignore[misc]
    )
    assert AlarmState.RESOLVED.value not in states.values()  # nothing was resolved

    r = await shift.http.post(
        f"/console/alarms/{press}/resolve",
        data={"csrf_token": token, "outcome": "by_phone", "also": [vitals]},
    )
    assert r.status_code in (200, 303), r.text
    resolved = await shift.rows(
        sa.select(alarms.c.id, alarms.c.outcome).where(alarms.c.state == "resolved")
    )
    assert sorted(tuple(r) for r in resolved) == sorted([(press, "by_phone"), (vitals, "by_phone")])
    kept = await shift.rows(
        sa.select(alarm_events.c.alarm_id).where(alarm_events.c.kind == "checklist")
    )
    assert sorted(r[0] for r in kept) == sorted([press, vitals])  # each its own list
