"""Welfare checks on SQLite and PostgreSQL: stored like any alarm, but no ladder and no SMS;
they wait last in the dispatcher's queue with their reason and the usual pattern beside
today, and have their own KPI (time to close), apart from the emergency figures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.api_contract import AlarmUpload, WelfareReason
from carehub.clock import FakeClock
from carehub.settings import ServerSettings
from server.change_signal import ChangeSignal
from server.console.accounts import Account, Role
from server.console.alarm_actions import resolve
from server.console.live_queue import open_alarms
from server.db import make_engine
from server.dispatch_store import DispatchStore
from server.escalator import Escalator
from server.kpi import AlarmTimes, kpi_report, render_table
from server.kpi_store import read_alarm_times
from server.main import prepare_database
from server.schema import alarms, escalations, notifications
from server.store import HubIdentity, ServerStore
from server.welfare import Figure, starts_ladder, welfare_view
from tests.conftest import DIRECTORY
from tests.dispatch_world import press_button
from tests.test_console import _client, _seed, login

TOKEN = "hub-token-for-welfare-012345"
DETAILS = {
    "welfare": WelfareReason.INACTIVE_DAYTIME.value,
    "usual": {"longest_still_min": 95, "active_min_by_now": 140.5},
    "today": {"longest_still_min": 260, "active_min_by_now": 12},
}


class Texts:
    """Records every SMS the escalator asks for."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
        self.sent.append((to, body))
        return f"SM{len(self.sent)}"


def welfare_upload(now_ms: int, details: dict[str, object] = DETAILS) -> AlarmUpload:
    return AlarmUpload(
        alarm_id=uuid.uuid4().hex,
        device_id="pend-1",
        kind=AlarmKind.WELFARE,
        severity=Severity.WARNING,
        raised_at_ms=now_ms,
        details=details,
    )


async def test_a_second_welfare_check_is_its_own_alarm_not_a_repeat(
    database_url: str, tmp_path: Path
) -> None:
    """The day's stillness check is still open when the pendant's night-time rise raises
    another: it must reach the dispatcher as its own alarm, not vanish into the first."""
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN))
    await prepare_database(ServerSettings(database_url=database_url), directory)  # type: ignore[call-arg]
    store = ServerStore(make_engine(database_url))  # merge_repeats on, as by default
    hub = await store.hub_by_token(TOKEN)
    assert isinstance(hub, HubIdentity)
    clock = FakeClock()
    first = await store.store_alarm(hub, welfare_upload(clock.now_ms()), clock.now_ms())
    clock.advance(3600)
    night = {**DETAILS, "welfare": WelfareReason.NIGHT_NO_RETURN.value}
    second = await store.store_alarm(hub, welfare_upload(clock.now_ms(), night), clock.now_ms())
    assert first.created and second.created and second.joined is None
    async with store.engine.connect() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count()).where(alarms.c.kind == AlarmKind.WELFARE.value)
            )
        ).scalar_one()
    assert count == 2


async def test_a_welfare_check_texts_nobody_climbs_no_ladder_and_waits_last_in_the_queue(
    database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN))
    await prepare_database(ServerSettings(database_url=database_url), directory)  # type: ignore[call-arg]
    engine = make_engine(database_url)
    store = ServerStore(engine)
    hub = await store.hub_by_token(TOKEN)
    assert isinstance(hub, HubIdentity)
    clock = FakeClock()
    stored = await store.store_alarm(hub, welfare_upload(clock.now_ms()), clock.now_ms())
    assert stored.created
    texts = Texts()
    dispatch = DispatchStore(store, b"k" * 32)
    escalator = Escalator(dispatch, texts, clock, ChangeSignal(), "x")
    assert await escalator.pass_once() == 0 and texts.sent == []
    assert await dispatch.start_ladders(clock.now_ms()) == 0  # the sweep leaves it alone too
    async with engine.connect() as conn:
        welfare_id = (await conn.execute(sa.select(alarms.c.id))).scalar_one()
        assert (await conn.execute(sa.select(escalations))).all() == []
        assert (await conn.execute(sa.select(notifications))).all() == []
    # an emergency after it: texted as ever, and shown first
    clock.advance(60)
    button_id = await press_button(store, hub, clock.now_ms())
    await escalator.pass_once()
    assert texts.sent and all(button_id[-6:].upper() in body for _, body in texts.sent)
    queue = await open_alarms(engine)
    assert [r.alarm_id for r in queue] == [button_id, welfare_id]
    welfare = queue[1].welfare
    assert welfare is not None and queue[0].welfare is None
    assert welfare.reason == "inactive_daytime"
    assert welfare.figures == (
        Figure("longest_still_min", "95", "260"),
        Figure("active_min_by_now", "140.5", "12"),
    )
    # the dispatcher closes it after 10 minutes: its own KPI, none of the emergency ones
    clock.advance(540)
    dispatcher = Account("d", "disp", Role.DISPATCHER, None, "en")
    await resolve(engine, welfare_id, dispatcher, "by_phone", clock.now_ms())
    report = kpi_report(
        await read_alarm_times(engine, 0, clock.now_ms() + 1), 0, clock.now_ms() + 1
    )
    assert report.overall.alarms == 1  # the button press only
    assert report.overall.operator_alarms == 1 and report.overall.closed_by_operator == 0
    assert report.overall.welfare_checks == 1 and report.overall.welfare_closed == 1
    assert report.overall.welfare_close_p50_s == 600.0
    await engine.dispose()


def test_only_welfare_checks_are_ladderless() -> None:
    assert not starts_ladder(AlarmKind.WELFARE)
    assert all(starts_ladder(k) for k in AlarmKind if k is not AlarmKind.WELFARE)


def test_what_the_queue_shows_of_a_hubs_details_is_bounded_and_never_fails() -> None:
    assert welfare_view(None).reason == "unknown" and welfare_view(None).figures == ()
    odd = welfare_view({"welfare": "bored", "usual": {"a": [1], "b": True, "c": "x" * 99}})
    assert odd.reason == "unknown" and odd.figures == (Figure("c", "x" * 40, "–"),)
    many = welfare_view({"welfare": "missed_check_in", "today": {f"f{i}": i for i in range(50)}})
    assert many.reason == "missed_check_in" and len(many.figures) == 12


def _times(received: int, **kw: object) -> AlarmTimes:
    base: dict[str, object] = {"first_notified_ms": None, "accepted_ms": None, "arrived_ms": None}
    return AlarmTimes("team-a", received, **{**base, **kw})  # type: ignore[arg-type]


def test_welfare_checks_have_their_own_time_to_close_and_stay_out_of_emergency_figures() -> None:
    rows = [
        _times(0, first_notified_ms=1_000, accepted_ms=30_000),  # an emergency, accepted in 30 s
        _times(0, welfare=True, closed_ms=300_000),  # closed after 5 min
        _times(0, welfare=True, closed_ms=900_000),  # 15 min
        _times(0, welfare=True),  # still open
        _times(0, welfare=True, cancelled_before_accept=True),  # the elder checked in late
    ]
    k = kpi_report(rows, 0, 1).overall
    assert (k.alarms, k.accepted_60s, k.operator_alarms) == (1, 1.0, 1)
    assert (k.welfare_checks, k.welfare_closed) == (3, 2)
    assert k.welfare_close_p50_s == 600.0 and k.welfare_close_p90_s == 840.0
    table = render_table(kpi_report(rows, 0, 1, "UTC"))
    assert "welfare checks" in table and "600s/840s" in table


def test_the_console_queue_and_kpi_page_show_the_welfare_check(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    clock = FakeClock()
    asyncio.run(_seed(url, clock))

    async def add_welfare() -> None:
        engine = make_engine(url)
        upload = welfare_upload(clock.now_ms())
        await ServerStore(engine).store_alarm(HubIdentity("hub-a", "elder-a"), upload, 0)
        await engine.dispose()

    asyncio.run(add_welfare())
    for client in _client(url):
        assert login(client, "disp") == 303
        page = client.get("/console/").text
        assert "Still for much longer than usual" in page
        assert 'data-figure="longest_still_min"' in page and ">260<" in page
        assert "call the elder, then the contacts" in page
        rows = page.split('<tr class="alarm ')[1:]
        assert len(rows) == 3 and " welfare" in rows[-1].split('"', 1)[0]  # last
        welfare_id = rows[-1].split('data-alarm-id="', 1)[1].split('"', 1)[0]
        detail = client.get(f"/console/alarms/{welfare_id}")
        assert detail.status_code == 200 and "Welfare check" in detail.text
        kpi = client.get("/console/kpi").text
        assert 'id="kpi-welfare"' in kpi and "Time to close (median)" in kpi
