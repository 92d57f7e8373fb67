"""The console's alarm page, its actions, the health board and the KPI page, over HTTP
(no browser), and the pure pieces behind them (timeline, lifecycle, plots)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.api_contract import AlarmUpload, FaultReport
from carehub.clock import FakeClock
from server.console.alarm_detail import TimelineEntry, lifecycle, merged_timeline
from server.console.health_board import lasted
from server.console.plots import (
    MAX_BARS,
    MAX_POINTS,
    MAX_TICKS,
    acceleration_svg,
    calendar_days,
    magnitudes,
    series_svg,
)
from server.db import make_engine
from server.schema import alarm_events, alarms, console_audit, escalations, notifications
from server.store import HubIdentity, ServerStore
from server.triage import TriageOutcome
from tests.test_console import _client, _seed, csrf, login

HUB_A = HubIdentity("hub-a", "elder-a")


def fall_window(t0_ms: int, hz: float = 50.0) -> dict[str, object]:
    """2 s still, a 3.5 g impact, 3 s lying still: (N, 3) samples in g."""
    acc = [[0.0, 0.0, 1.0]] * 100 + [[2.0, 1.5, 2.3]] * 3 + [[1.0, 0.05, 0.05]] * 150
    return {"hz": hz, "t0_ms": t0_ms, "acc": acc}


# ------------------------------------------------------------ the core


def test_timeline_starts_with_device_hub_server_then_time_order() -> None:
    events = [TimelineEntry(50, "note", "console:x", "b"), TimelineEntry(30, "step", "system", "")]
    sms = [TimelineEntry(40, "sms", "server", "Dr Li", sms_status="delivered")]
    out = merged_timeline(5, 10, 20, events, sms)
    assert [e.kind for e in out] == ["device", "raised", "received", "step", "sms", "note"]
    assert [e.kind for e in merged_timeline(None, 10, 20, [], [])] == ["raised", "received"]


def test_lifecycle_is_active_or_cleared_by_acknowledged_with_the_assignee() -> None:
    ack = TimelineEntry(1, "acknowledged", "console:d", "")
    assigned = TimelineEntry(2, "assigned", "console:d", "to Dr Li")
    life = lifecycle("received", [ack, assigned], None)
    assert life.active and life.acknowledged and life.assignee == "Dr Li"
    assert lifecycle("received", [assigned], "Dr Wu").assignee == "Dr Wu"  # who accepted wins
    cancelled = lifecycle("cancelled", [], None)
    assert not cancelled.active and not cancelled.acknowledged and cancelled.assignee is None


@given(st.lists(st.lists(st.floats(-16, 16), min_size=3, max_size=3), min_size=1, max_size=300))
def test_acceleration_plot_has_one_point_per_sample(acc: list[list[float]]) -> None:
    svg = str(acceleration_svg(100.0, 0.0, acc, 500.0))
    points = re.search(r'points="([^"]*)"', svg)
    assert points is not None and len(points.group(1).split()) == len(acc)
    for xy in points.group(1).split():
        x, y = map(float, xy.split(","))
        assert 0 <= x <= 640 and 0 <= y <= 220


def drawn(svg: str) -> tuple[int, int]:
    """The number of points of the plot's line, and of its time ticks."""
    points = re.search(r'points="([^"]*)"', svg)
    assert points is not None
    return len(points.group(1).split()), len(re.findall(r">[+-]\d+ s</text>", svg))


@pytest.mark.parametrize("hz", [1e-300, 1e-3, 5.0, 1e300])
def test_acceleration_plot_work_is_bounded_whatever_the_window(hz: float) -> None:
    """A window no device sends (stored before the upload bounds) draws a bounded plot;
    the peak survives the thinning."""
    acc = [[0.0, 0.0, 1.0]] * 20_000
    acc[12_345] = [0.0, 0.0, 9.0]
    svg = str(acceleration_svg(hz, 0.0, acc, 1000.0))
    points, ticks = drawn(svg)
    assert 2 <= points <= MAX_POINTS and ticks <= MAX_TICKS
    assert "max 9.0 g" in svg and ",36.0" in svg  # the peak, drawn at the top


def test_a_series_plot_draws_at_most_its_bars() -> None:
    labels = [f"d-{i}" for i in range(10 * MAX_BARS)]
    svg = str(series_svg(labels, [1.0] * len(labels), "s"))
    assert svg.count('class="bar"') == MAX_BARS and "d-3659:" in svg and "d-0:" not in svg


def test_plots_refuse_nothing_but_draw_nothing_from_bad_input() -> None:
    assert magnitudes([[1, 2], ["a", 0, 0], [3, 4, 0]]) == [5.0]
    assert str(acceleration_svg(0.0, 0.0, [[0, 0, 1]], None)) == ""
    assert str(acceleration_svg(50.0, 0.0, [], None)) == ""
    bars = str(series_svg(["2026-11-01", "2026-11-02"], [0.5, None], "%", 100))
    assert bars.count('class="bar"') == 1 and "–" in bars and ">50<" in bars
    assert "<script" not in str(series_svg(["<script>"], [1.0], "s"))


def test_how_long_a_problem_lasted() -> None:
    assert [lasted(10**7, 10**7 - d) for d in (5_000, 120_000, 7_200_000, 3 * 86_400_000)] == [
        "5 s",
        "2 min",
        "2 h",
        "3 d",
    ]
    assert lasted(0, None) == "—"


# ------------------------------------------------------------ over HTTP


async def _fall_and_fault(url: str) -> str:
    engine = make_engine(url)
    try:
        store = ServerStore(engine)
        now = FakeClock().now_ms()
        upload = AlarmUpload(
            alarm_id=uuid.uuid4().hex,
            device_id="btn-a",
            kind=AlarmKind.FALL,
            severity=Severity.CRITICAL,
            raised_at_ms=now,
            event_ts_ms=now - 900,
            details={"impact_ts_ms": now - 3000, "window": fall_window(now - 5000)},
        )
        await store.store_alarm(HUB_A, upload, now)
        fault = FaultReport(
            report_id="f1", device_id="btn-a", fault="battery_low", active=True, at_ms=now - 60_000
        )
        await store.record_fault(HUB_A, fault, now)
        async with engine.connect() as conn:
            return str(await conn.scalar(sa.select(alarms.c.id).where(alarms.c.kind == "fall")))
    finally:
        await engine.dispose()


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    asyncio.run(_seed(url, FakeClock()))
    return url, asyncio.run(_fall_and_fault(url))


@pytest.fixture
def client(seeded: tuple[str, str]) -> Iterator[TestClient]:
    yield from _client(seeded[0])


def _rows(url: str, query: sa.Select[tuple[object, ...]]) -> list[tuple[object, ...]]:
    async def go() -> list[tuple[object, ...]]:
        engine = make_engine(url)
        async with engine.connect() as conn:
            rows = [tuple(r) for r in await conn.execute(query)]
        await engine.dispose()
        return rows

    return asyncio.run(go())


def test_the_alarm_page_shows_elder_plot_and_timeline_and_audits_notes(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, fall = seeded
    assert login(client, "disp") == 303
    page = client.get(f"/console/alarms/{fall}")
    assert page.status_code == 200
    text = page.text
    assert "Wang A" in text and "Warfarin; pacemaker" in text and "openstreetmap.org" in text
    assert "Son A" in text and "4711" not in text and 'id="key-safe-form"' in text
    assert "<svg" in text and 'class="impact"' in text and 'class="one-g"' in text
    assert "Device event" in text and "Hub raised" in text and "Server received" in text
    assert "active" in text and "unacknowledged" in text
    audit = _rows(url, sa.select(console_audit.c.username, console_audit.c.alarm_id))
    assert audit == [("disp", fall)]


async def _stored_unchecked(url: str, details: dict[str, object]) -> str:
    """A fall alarm whose details skip today's upload checks (stored by an older server)."""
    engine = make_engine(url)
    try:
        now = FakeClock().now_ms()
        upload = AlarmUpload.model_construct(
            alarm_id=uuid.uuid4().hex,
            device_id="btn-a",
            kind=AlarmKind.FALL,
            severity=Severity.CRITICAL,
            raised_at_ms=now,
            details=details,
        )
        await ServerStore(engine, merge_repeats=False).store_alarm(HUB_A, upload, now)
        async with engine.connect() as conn:
            return str(
                await conn.scalar(
                    sa.select(alarms.c.id).where(alarms.c.hub_alarm_id == upload.alarm_id)
                )
            )
    finally:
        await engine.dispose()


def test_a_stored_pathological_window_renders_a_bounded_plot(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, _ = seeded
    window = {"hz": 1e-2, "t0_ms": 0, "acc": [[0.0, 0.0, 1.0]] * 5000}
    alarm_id = asyncio.run(_stored_unchecked(url, {"impact_ts_ms": 10, "window": window}))
    assert login(client, "disp") == 303
    page = client.get(f"/console/alarms/{alarm_id}")
    assert page.status_code == 200
    points, ticks = drawn(page.text)
    assert points <= MAX_POINTS and ticks <= MAX_TICKS


def test_who_may_see_an_alarm(client: TestClient, seeded: tuple[str, str]) -> None:
    url, fall = seeded
    other = _rows(url, sa.select(alarms.c.id).where(alarms.c.elder_id == "elder-b"))[0][0]
    assert login(client, "doc-a") == 303
    assert client.get(f"/console/alarms/{fall}").status_code == 200
    assert client.get(f"/console/alarms/{other}").status_code == 404  # another team's
    assert client.get("/console/alarms/nope").status_code == 404
    client.cookies.clear()
    assert login(client, "inst") == 303
    page = client.get(f"/console/alarms/{fall}")
    assert page.status_code == 200 and "Warfarin" not in page.text and "Son A" not in page.text
    assert 'id="ack-form"' not in page.text
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = client.post(f"/console/alarms/{fall}/acknowledge", data={"csrf_token": token})
    assert refused.status_code == 403
    assert len(_rows(url, sa.select(console_audit.c.id))) == 1  # only doc-a's view


def test_actions_are_recorded_with_who_and_when_and_resolve_tells_the_hub(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, fall = seeded
    assert login(client, "disp") == 303
    token = csrf(client)
    base = f"/console/alarms/{fall}"
    assert client.post(f"{base}/acknowledge", data={"csrf_token": token}).status_code == 200
    assert client.post(f"{base}/note", data={"csrf_token": token, "text": "  "}).status_code == 409
    r = client.post(f"{base}/note", data={"csrf_token": token, "text": "son is on his way"})
    assert r.status_code == 200 and "son is on his way" in r.text and "acknowledged" in r.text
    client.post(f"{base}/callback", data={"csrf_token": token, "text": "+86 138 0000 0009"})
    r = client.post(f"{base}/assign", data={"csrf_token": token, "member": "li"})
    assert r.status_code == 200 and "assigned to: Dr Li" in r.text
    assert (
        client.post(f"{base}/assign", data={"csrf_token": "x", "member": "li"}).status_code == 403
    )
    sent = _rows(
        url,
        sa.select(notifications.c.doctor_id, notifications.c.link_token_hash).where(
            notifications.c.alarm_id == fall, notifications.c.purpose.like("assigned-%")
        ),
    )
    assert len(sent) == 1 and sent[0][0] == "li" and sent[0][1] is not None
    bad = client.post(f"{base}/resolve", data={"csrf_token": token, "outcome": "magic"})
    assert bad.status_code == 409 and "false_alarm" in bad.text
    r = client.post(f"{base}/resolve", data={"csrf_token": token, "outcome": "home_visit"})
    assert r.status_code == 200 and "cleared" in r.text and "home visit" in r.text
    assert (
        client.post(f"{base}/resolve", data={"csrf_token": token, "outcome": "other"}).status_code
        == 409
    )
    events = _rows(
        url,
        sa.select(
            alarm_events.c.kind, alarm_events.c.actor, alarm_events.c.state, alarm_events.c.at_ms
        )
        .where(alarm_events.c.alarm_id == fall, alarm_events.c.actor.like("console:%"))
        .order_by(alarm_events.c.id),
    )
    assert [(k, a, s) for k, a, s, _ in events] == [
        ("acknowledged", "console:disp", None),
        ("note", "console:disp", None),
        ("callback", "console:disp", None),
        ("assigned", "console:disp", None),
        ("checklist", "console:disp", None),  # the fall's checklist, kept with the outcome
        ("state", "console:disp", "resolved"),
    ]
    assert all(isinstance(at, int) and at > 0 for *_, at in events)
    assert _rows(url, sa.select(alarms.c.state, alarms.c.outcome).where(alarms.c.id == fall)) == [
        ("resolved", "home_visit")
    ]
    ladder = _rows(url, sa.select(escalations.c.status).where(escalations.c.alarm_id == fall))
    assert ladder in ([], [("closed",)])

    async def hub_hears() -> list[str]:
        engine = make_engine(url)
        updates = await ServerStore(engine).updates_for_hub("hub-a", 0)
        await engine.dispose()
        return [u.state.value for u in updates]

    assert "resolved" in asyncio.run(hub_hears())


def test_notes_are_editable_by_their_author_only(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, fall = seeded
    base = f"/console/alarms/{fall}"
    assert login(client, "disp") == 303
    token = csrf(client)
    client.post(f"{base}/note", data={"csrf_token": token, "text": "first"})
    note_id = _rows(url, sa.select(alarm_events.c.id).where(alarm_events.c.kind == "note"))[0][0]
    r = client.post(f"{base}/edit", data={"csrf_token": token, "event": note_id, "text": "fixed"})
    assert r.status_code == 200 and "fixed" in r.text
    system = _rows(url, sa.select(alarm_events.c.id).where(alarm_events.c.actor != "console:disp"))
    if system:
        r = client.post(
            f"{base}/edit", data={"csrf_token": token, "event": system[0][0], "text": "x"}
        )
        assert r.status_code == 409
    client.cookies.clear()
    assert login(client, "root") == 303
    r = client.post(
        f"{base}/edit", data={"csrf_token": csrf(client), "event": note_id, "text": "no"}
    )
    assert r.status_code == 409 and "only the author" in r.text


def test_health_board_lists_problems_for_installers_not_the_queue(client: TestClient) -> None:
    assert login(client, "inst") == 303
    page = client.get("/console/health")
    assert page.status_code == 200
    battery = page.text.split('id="battery-low"', 1)[1].split("</section>", 1)[0]
    assert "hub-a / btn-a" in battery
    assert re.search(r'class="lasted">\d+ (s|min|h|d)<', battery)  # the app's clock is real
    offline = page.text.split('id="hubs-offline"', 1)[1].split("</section>", 1)[0]
    assert "hub-a" in offline and "never seen" in offline  # no heartbeat yet
    assert "Warfarin" not in page.text


def test_kpi_page_has_a_table_and_plots(client: TestClient, seeded: tuple[str, str]) -> None:
    now = int(time.time() * 1000)  # the app runs on the real clock

    async def recent() -> None:
        engine = make_engine(seeded[0])
        async with engine.begin() as conn:
            await conn.execute(
                alarms.update().values(
                    received_at_ms=now - 3_600_000,
                    first_notified_at_ms=now - 3_598_000,
                    accepted_at_ms=now - 3_560_000,
                    operator_at_ms=now - 3_590_000,
                )
            )
        await engine.dispose()

    asyncio.run(recent())
    assert login(client, "disp") == 303
    page = client.get("/console/kpi")
    assert page.status_code == 200
    assert page.text.count("<svg") == 3 and "team-a" in page.text and "all teams" in page.text
    operator = page.text.split('id="kpi-operator"', 1)[1].split("</table>", 1)[0]
    assert "Time to answer (median)" in operator and "<td>10 s</td>" in operator
    assert client.get("/console/kpi?days=0").status_code == 400
    assert client.get("/console/kpi?time_zone=Mars/Base").status_code == 400
    client.cookies.clear()
    assert login(client, "inst") == 303
    assert client.get("/console/kpi").status_code == 403


def test_kpi_page_has_calls_per_alarm(client: TestClient, seeded: tuple[str, str]) -> None:
    from server.schema import voice_calls

    url, fall = seeded
    now = int(time.time() * 1000)  # the app runs on the real clock

    async def calls() -> int:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.execute(alarms.update().values(received_at_ms=now - 3_600_000))
            for call_id, answered in (("c-1", None), ("c-2", now - 3_500_000)):
                await conn.execute(
                    voice_calls.insert().values(
                        id=call_id,
                        hub_id="hub-a",
                        alarm_id=fall,
                        hub_alarm_id="x",
                        direction="from_home",
                        state="ended",
                        offer_sdp="v=0",
                        created_at_ms=now - 3_550_000,
                        answered_at_ms=answered,
                    )
                )
            n = await conn.scalar(sa.select(sa.func.count()).select_from(alarms))
        await engine.dispose()
        return int(n or 0)

    n = asyncio.run(calls())
    assert login(client, "disp") == 303
    page = client.get("/console/kpi")
    assert page.status_code == 200
    table = page.text.split('id="kpi-calls"', 1)[1].split("</table>", 1)[0]
    assert "Calls per alarm" in table and "Alarms with an answered call" in table
    overall = table.split("<td>all teams</td>", 1)[1].split("</tr>", 1)[0]
    assert overall == f"<td>{n}</td><td>2</td><td>{2 / n:.2f}</td><td>{100 / n:.0f} %</td>"


def test_calendar_days_cover_the_window_in_the_time_zone() -> None:
    day = 86_400_000
    start = 1_763_942_400_000  # 2025-11-24 00:00 UTC = 08:00 in Shanghai
    assert calendar_days(start, start + 2 * day, "UTC") == [
        "2025-11-24",
        "2025-11-25",
        "2025-11-26",
    ]
    assert calendar_days(start - 9 * 3_600_000, start, "Asia/Shanghai") == [
        "2025-11-23",
        "2025-11-24",
    ]


def test_key_safe_is_revealed_on_the_alarm_page_and_audited(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, fall = seeded
    assert login(client, "disp") == 303
    assert "4711" not in client.get(f"/console/alarms/{fall}").text
    r = client.post(f"/console/alarms/{fall}/key-safe", data={"csrf_token": csrf(client)})
    assert r.status_code == 200 and 'id="key-safe-code"' in r.text and "4711" in r.text
    seen = _rows(url, sa.select(console_audit.c.action).order_by(console_audit.c.id))
    assert seen == [("medical_notes",), ("medical_notes",), ("key_safe",)]
    assert client.post(f"/console/alarms/{fall}/key-safe").status_code == 403  # no CSRF token


def test_a_vitals_alarm_shows_readings_and_news2_sub_scores(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, _ = seeded

    async def vitals_alarm() -> str:
        engine = make_engine(url)
        upload = AlarmUpload(
            alarm_id=uuid.uuid4().hex,
            device_id="btn-a",
            kind=AlarmKind.VITALS,
            severity=Severity.WARNING,
            raised_at_ms=FakeClock().now_ms(),
            details={
                "reason": "news2",
                "scores": {"hr": 3, "spo2": 1, "total": 4},
                "readings": {"hr": 134, "spo2": 95},
            },
        )
        await ServerStore(engine).store_alarm(HUB_A, upload, FakeClock().now_ms())
        async with engine.connect() as conn:
            found = await conn.scalar(sa.select(alarms.c.id).where(alarms.c.kind == "vitals"))
        await engine.dispose()
        return str(found)

    alarm_id = asyncio.run(vitals_alarm())
    assert login(client, "doc-a") == 303
    page = client.get(f"/console/alarms/{alarm_id}").text
    table = page.split('id="vitals"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'class="triggered"><td>Heart rate \(bpm\)</td><td>134</td><td>3<', table)
    assert "NEWS2 total</td><td>—</td><td>4<" in table
    client.cookies.clear()
    assert login(client, "inst") == 303
    assert 'id="vitals"' not in client.get(f"/console/alarms/{alarm_id}").text


async def _fall_again(url: str) -> None:
    engine = make_engine(url)
    try:
        now = FakeClock().now_ms() + 60_000
        upload = AlarmUpload(
            alarm_id=uuid.uuid4().hex,
            device_id="btn-a",
            kind=AlarmKind.FALL,
            severity=Severity.CRITICAL,
            raised_at_ms=now,
        )
        stored = await ServerStore(engine).store_alarm(HUB_A, upload, now)
        assert stored.joined is not None
    finally:
        await engine.dispose()


def test_a_repeat_updates_the_open_alarm_visibly(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, fall = seeded
    assert login(client, "disp") == 303
    before = client.get("/console/", headers={"Accept": "text/html-fragment"}).text
    assert 'data-repeats="0"' in before and "from this device" not in before
    asyncio.run(_fall_again(url))
    rows = client.get("/console/", headers={"Accept": "text/html-fragment"}).text
    assert rows.count(f'data-alarm-id="{fall}"') == 1, "still one row for the device's falls"
    assert 'data-repeats="1"' in rows and "2× from this device" in rows
    page = client.get(f"/console/alarms/{fall}").text
    assert 'id="repeats"' in page and "Raised again" in page and "2× from this device" in page


def test_each_triage_outcome_is_posted_recorded_and_shown(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, _ = seeded
    expected = {
        TriageOutcome.ACCIDENTAL_PRESS: ("cancelled", "false_alarm", "Accidental press"),
        TriageOutcome.NO_HELP_NEEDED: ("resolved", "by_phone", "Talked, no help needed"),
        TriageOutcome.SEND_DOCTOR: ("received", None, "Send the doctor"),
        TriageOutcome.AMBULANCE_CALLED: ("received", None, "Ambulance called (120)"),
    }
    ids = {o: asyncio.run(_stored_unchecked(url, {})) for o in expected}
    assert login(client, "disp") == 303
    token = csrf(client)
    page = client.get(f"/console/alarms/{ids[TriageOutcome.SEND_DOCTOR]}").text
    assert 'id="triage-form"' in page and 'value="accidental_press"' in page
    for outcome, (state, resolution, label) in expected.items():
        base = f"/console/alarms/{ids[outcome]}"
        forged = client.post(f"{base}/triage", data={"csrf_token": "x", "outcome": outcome.value})
        assert forged.status_code == 403
        r = client.post(f"{base}/triage", data={"csrf_token": token, "outcome": outcome.value})
        assert r.status_code == 200 and f'"triage-outcome">{label}<' in r.text
        assert "Operator&#39;s outcome" in r.text
        row = _rows(
            url,
            sa.select(
                alarms.c.state, alarms.c.outcome, alarms.c.triage_outcome, alarms.c.operator_at_ms
            ).where(alarms.c.id == ids[outcome]),
        )[0]
        # the app's escalator may have dispatched a held-for-nobody ladder meanwhile
        assert row[0] == state or (state == "received" and row[0] == "dispatched")
        assert row[1:3] == (resolution, outcome.value) and isinstance(row[3], int)
        audit = _rows(
            url,
            sa.select(alarm_events.c.actor, alarm_events.c.detail).where(
                alarm_events.c.alarm_id == ids[outcome], alarm_events.c.kind == "triage"
            ),
        )
        assert audit == [("console:disp", outcome.value)]
    closed = f"/console/alarms/{ids[TriageOutcome.ACCIDENTAL_PRESS]}/triage"
    again = client.post(closed, data={"csrf_token": token, "outcome": "send_doctor"})
    assert again.status_code == 409 and "cancelled" in again.text
    bad = client.post(
        f"/console/alarms/{ids[TriageOutcome.SEND_DOCTOR]}/triage",
        data={"csrf_token": token, "outcome": "magic"},
    )
    assert bad.status_code == 409 and "accidental_press" in bad.text
    client.cookies.clear()
    assert login(client, "doc-b") == 303  # another team's alarm is answered as none
    r = client.post(
        f"/console/alarms/{ids[TriageOutcome.SEND_DOCTOR]}/triage",
        data={"csrf_token": csrf(client), "outcome": "ambulance_called"},
    )
    assert r.status_code == 404


def test_an_acknowledgement_is_the_operators_answer_time(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    url, fall = seeded
    assert login(client, "disp") == 303
    token = csrf(client)
    client.post(f"/console/alarms/{fall}/acknowledge", data={"csrf_token": token})
    first = _rows(url, sa.select(alarms.c.operator_at_ms).where(alarms.c.id == fall))[0][0]
    assert isinstance(first, int)
    client.post(
        f"/console/alarms/{fall}/triage", data={"csrf_token": token, "outcome": "send_doctor"}
    )
    assert _rows(url, sa.select(alarms.c.operator_at_ms).where(alarms.c.id == fall)) == [(first,)]
