"""The KPI report: rows inserted at known times on SQLite and PostgreSQL, read back through
`server.kpi_store`, and printed by `carehub report kpi` (table and JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.db import make_engine, migrate
from server.directory import Directory, load_directory
from server.kpi import AlarmTimes, kpi_report, render_table
from server.kpi_store import read_alarm_times
from server.schema import alarms, voice_calls

CAREHUB = Path(sys.executable).with_name("carehub")
DAY1 = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)
DAY2 = DAY1 + 86_400_000
S, MIN = 1000, 60_000
DIRECTORY = {
    "teams": [{"id": "east", "name": "East"}, {"id": "west", "name": "West"}],
    "elders": [
        {"id": "elder-e", "team": "east", "name": "E"},
        {"id": "elder-w", "team": "west", "name": "W"},
    ],
    "hubs": [
        {"id": "hub-e", "elder": "elder-e", "token": "e" * 24},
        {"id": "hub-w", "elder": "elder-w", "token": "w" * 24},
    ],
}
D3 = DAY2 + 86_400_000
# (elder, received, first notified, accepted, arrived, state, is_test), times in ms
ROWS = [
    ("elder-e", DAY1 + 10 * S, DAY1 + 11 * S, DAY1 + 40 * S, DAY1 + 40 * S + 15 * MIN,
     "resolved", False),
    ("elder-e", DAY1 + MIN, DAY1 + 62 * S, DAY1 + 3 * MIN, DAY1 + 28 * MIN, "resolved", False),
    ("elder-e", DAY2, DAY2 + 2 * S, None, None, "dispatched", False),  # never accepted
    ("elder-e", DAY2 + 5 * MIN, DAY2 + 5 * MIN + S, None, None, "cancelled", False),  # by elder
    ("elder-e", DAY2 + 6 * MIN, DAY2 + 6 * MIN + S, DAY2 + 7 * MIN, None, "resolved", True),
    ("elder-w", DAY2 + MIN, DAY2 + 61 * S, DAY2 + 2 * MIN, None, "accepted", False),
    ("elder-w", D3, D3 + S, D3 + 5 * S, None, "accepted", False),  # after --until
]  # fmt: skip


async def _seed(url: str) -> None:
    engine = make_engine(url)
    try:
        await migrate(engine)
        await load_directory(engine, Directory.model_validate(DIRECTORY))
        async with engine.begin() as conn:
            for elder, received, first, accepted, arrived, state, test in ROWS:
                hub = "hub-e" if elder == "elder-e" else "hub-w"
                await conn.execute(
                    alarms.insert().values(
                        id=uuid.uuid4().hex,
                        hub_id=hub,
                        hub_alarm_id=uuid.uuid4().hex,
                        elder_id=elder,
                        device_id="btn-1",
                        kind="button",
                        severity="critical",
                        state=state,
                        raised_at_ms=received - 100,
                        received_at_ms=received,
                        updated_at_ms=received,
                        details={},
                        first_notified_at_ms=first,
                        accepted_at_ms=accepted,
                        arrived_at_ms=arrived,
                        is_test=test,
                    )
                )
    finally:
        await engine.dispose()


async def _read(url: str, since_ms: int, until_ms: int) -> list[AlarmTimes]:
    engine = make_engine(url)
    try:
        return await read_alarm_times(engine, since_ms, until_ms)
    finally:
        await engine.dispose()


def _report_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CAREHUB), "report", "kpi", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CAREHUB_DATABASE_URL": url},
        check=False,
    )


@pytest.mark.integration
async def test_report_from_the_alarms_table(database_url: str) -> None:
    await _seed(database_url)
    rows = await _read(database_url, DAY1, D3)
    assert len(rows) == 5  # neither the test alarm nor the one after --until
    report = kpi_report(rows, DAY1, D3)
    east, west = report.teams
    assert (east.team_id, east.alarms, east.cancelled_before_accept) == ("east", 3, 1)
    assert east.accepted_60s == pytest.approx(1 / 3) and east.accepted_180s == pytest.approx(2 / 3)
    assert east.arrived_in_circle == 0.5  # 15 min in, 25 min late
    assert east.first_notification_p50_s == 2.0 and east.accept_p50_s == 75.0
    assert east.arrival_p50_s == (30 + 15 * 60 + 120 + 25 * 60) / 2
    assert (west.alarms, west.accepted_60s, west.arrived_in_circle) == (1, 1.0, 0.0)
    assert report.overall.alarms == 4 and report.overall.accepted_60s == 0.5
    assert [(d.day, d.overall.alarms) for d in report.days] == [
        ("2026-11-02", 2),
        ("2026-11-03", 2),
    ]
    assert [t.team_id for t in report.days[1].teams] == ["east", "west"]

    result = _report_cli(
        database_url,
        "--since",
        "2026-11-02",
        "--until",
        "2026-11-03",
        "--time-zone",
        "UTC",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == json.loads(json.dumps(report.to_json()))
    assert doc["targets"]["accepted_within_s"] == {"60": 0.975, "180": 0.99}

    table = _report_cli(
        database_url, "--since", "2026-11-02", "--until", "2026-11-03", "--time-zone", "UTC"
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any(ln.split()[:4] == ["east", "3", "33.3%", "66.7%"] for ln in lines), table.stdout
    assert any(ln.split()[:3] == ["2026-11-03", "2", "50.0%"] for ln in lines), table.stdout


def test_report_rejects_bad_dates_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    result = _report_cli(url, "--since", "yesterday")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "YYYY-MM-DD" in result.stderr
    missing = _report_cli(url, "--since", "2026-11-02")  # no tables: not a server database
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "cannot read the database" in missing.stderr


ms = st.integers(0, 10 * 60_000)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), ms, st.none() | ms, st.none() | ms, st.booleans()),
        max_size=40,
    )
)
def test_overall_is_the_teams_together(
    raw: list[tuple[str, int, int | None, int | None, bool]],
) -> None:
    rows = [
        AlarmTimes(team, DAY1 + rec, None, None if acc is None else DAY1 + rec + acc, None, cancel)
        for team, rec, _, acc, cancel in raw
    ]
    report = kpi_report(rows, DAY1, DAY2)
    assert report.overall.alarms == sum(t.alarms for t in report.teams)
    assert report.overall.alarms == sum(d.overall.alarms for d in report.days)
    for k in (report.overall, *report.teams):
        if k.alarms:
            assert 0 <= k.accepted_60s <= k.accepted_180s <= 1  # type: ignore[operator]
        else:
            assert k.accepted_60s is None
    render_table(report)  # never fails on empty or partial figures


def test_operator_answer_figures() -> None:
    def row(cancelled: bool = False, op: int | None = None, **flags: bool) -> AlarmTimes:
        operator = None if op is None else DAY1 + op * S
        return AlarmTimes("a", DAY1, None, None, None, cancelled, operator, **flags)

    rows = [
        row(op=30),
        row(op=120),
        row(),  # never answered by an operator: a miss
        row(cancelled=True),  # the elder cancelled before any operator answered: left out
        row(cancelled=True, op=10, closed_by_operator=True),  # an accidental press
        row(op=20, ambulance_called=True),
    ]
    k = kpi_report(rows, DAY1, DAY2).overall
    assert (k.operator_alarms, k.operator_answered) == (5, 4)
    assert (k.operator_60s, k.operator_180s) == (pytest.approx(3 / 5), pytest.approx(4 / 5))
    assert k.operator_p50_s == 25.0 and k.operator_p90_s == pytest.approx(93.0)
    assert (k.closed_by_operator, k.ambulance_called) == (1, 1)
    assert k.alarms == 4  # the accept figures still leave both cancellations out
    table = render_table(kpi_report(rows, DAY1, DAY2)).splitlines()
    assert any(ln.split()[:4] == ["all", "5", "60.0%", "80.0%"] for ln in table), table


# (state, arrived, operator after receipt in s, triage outcome, resolution)
OPERATOR_ROWS = [
    ("cancelled", None, 20, "accidental_press", "false_alarm"),
    ("resolved", None, 40, "no_help_needed", "by_phone"),
    ("resolved", None, 200, None, "by_phone"),  # resolved by phone from the console
    ("resolved", DAY1 + 30 * MIN, 50, "send_doctor", "home_visit"),
    ("accepted", None, 70, "ambulance_called", None),
    ("dispatched", None, None, None, None),
]


@pytest.mark.integration
async def test_operator_figures_from_the_alarms_table(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        await load_directory(engine, Directory.model_validate(DIRECTORY))
        async with engine.begin() as conn:
            for i, (state, arrived, op, triage, resolution) in enumerate(OPERATOR_ROWS):
                received = DAY1 + i * MIN  # read back in this order
                await conn.execute(
                    alarms.insert().values(
                        id=uuid.uuid4().hex,
                        hub_id="hub-e",
                        hub_alarm_id=uuid.uuid4().hex,
                        elder_id="elder-e",
                        device_id="btn-1",
                        kind="button",
                        severity="critical",
                        state=state,
                        raised_at_ms=received,
                        received_at_ms=received,
                        updated_at_ms=received,
                        details={},
                        arrived_at_ms=arrived,
                        operator_at_ms=None if op is None else received + op * S,
                        triage_outcome=triage,
                        outcome=resolution,
                    )
                )
    finally:
        await engine.dispose()
    rows = await _read(database_url, DAY1, DAY2)
    assert [r.closed_by_operator for r in rows] == [True, True, True, False, False, False]
    assert [r.ambulance_called for r in rows] == [False, False, False, False, True, False]
    k = kpi_report(rows, DAY1, DAY2).overall
    assert (k.operator_alarms, k.operator_answered, k.closed_by_operator) == (6, 5, 3)
    assert k.operator_60s == pytest.approx(3 / 6) and k.operator_180s == pytest.approx(4 / 6)
    table = _report_cli(database_url, "--since", "2026-11-02", "--until", "2026-11-02")
    assert table.returncode == 0, table.stderr
    line = next(ln for ln in table.stdout.splitlines()[::-1] if ln.startswith("all "))
    assert line.split()[:4] == ["all", "6", "50.0%", "66.7%"] and line.split()[-2:] == ["3", "1"]


def test_calls_per_alarm_figures() -> None:
    def row(
        team: str, day: int, op: int | None, calls: int, answered: bool, cancelled: bool = False
    ) -> AlarmTimes:
        operator = None if op is None else day + op * S
        return AlarmTimes(
            team, day, None, None, None, cancelled, operator, calls=calls, call_answered=answered
        )

    rows = [
        row("a", DAY1, 30, 3, True),  # the home called twice, the operator once; one talked
        row("a", DAY1, None, 1, False),  # rang, nobody answered
        row("a", DAY2, None, 0, False),
        row("a", DAY2, None, 2, False, cancelled=True),  # cancelled before an operator: out
        row("b", DAY2, 5, 1, True),
    ]
    report = kpi_report(rows, DAY1, DAY2 + 86_400_000)
    k = report.overall
    assert (k.operator_alarms, k.voice_calls, k.answered_call_alarms) == (4, 5, 2)
    assert (k.calls_per_alarm, k.answered_call_share) == (1.25, 0.5)
    a, b = report.teams
    assert (a.calls_per_alarm, a.answered_call_share) == (
        pytest.approx(4 / 3),
        pytest.approx(1 / 3),
    )
    assert (b.calls_per_alarm, b.answered_call_share) == (1.0, 1.0)
    day2 = report.days[1]
    assert [(t.team_id, t.voice_calls, t.answered_call_share) for t in day2.teams] == [
        ("a", 0, 0.0),
        ("b", 1, 1.0),
    ]
    assert kpi_report([], DAY1, DAY2).overall.calls_per_alarm is None
    table = [ln.split() for ln in render_table(report).splitlines()]
    assert ["all", "4", "5", "1.25", "50.0%"] in table, table
    assert ["2026-11-03", "2", "1", "0.50", "50.0%"] in table, table


# (team's elder, operator answered after receipt in s, calls: (direction, answered, test))
CALL_ROWS = [
    (
        "elder-e",
        20,
        [("from_home", True, False), ("to_home", False, False), ("from_home", True, True)],
    ),
    ("elder-e", None, [("from_home", False, False)]),
    ("elder-e", None, []),
    ("elder-w", 40, [("to_home", True, False)]),
]


@pytest.mark.integration
async def test_calls_per_alarm_from_the_calls_table(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        await load_directory(engine, Directory.model_validate(DIRECTORY))
        async with engine.begin() as conn:
            for i, (elder, op, calls) in enumerate(CALL_ROWS):
                received, alarm_id = DAY1 + i * MIN, uuid.uuid4().hex
                hub = "hub-e" if elder == "elder-e" else "hub-w"
                await conn.execute(
                    alarms.insert().values(
                        id=alarm_id,
                        hub_id=hub,
                        hub_alarm_id=uuid.uuid4().hex,
                        elder_id=elder,
                        device_id="btn-1",
                        kind="button",
                        severity="critical",
                        state="dispatched",
                        raised_at_ms=received,
                        received_at_ms=received,
                        updated_at_ms=received,
                        details={},
                        operator_at_ms=None if op is None else received + op * S,
                    )
                )
                for direction, answered, test in calls:
                    await conn.execute(
                        voice_calls.insert().values(
                            id=uuid.uuid4().hex,
                            hub_id=hub,
                            alarm_id=alarm_id,
                            hub_alarm_id="x",
                            direction=direction,
                            state="ended",
                            offer_sdp="v=0",
                            is_test=test,
                            created_at_ms=received,
                            answered_at_ms=received + 5 * S if answered else None,
                            ended_at_ms=received + MIN,
                        )
                    )
    finally:
        await engine.dispose()
    rows = await _read(database_url, DAY1, DAY2)
    assert [(r.calls, r.call_answered) for r in rows] == [
        (2, True),
        (1, False),
        (0, False),
        (1, True),
    ]
    result = _report_cli(database_url, "--since", "2026-11-02", "--until", "2026-11-02", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["overall"]["voice_calls"], doc["overall"]["answered_call_share"]) == (4, 0.5)
    east, west = doc["days"][0]["teams"]
    assert (east["calls_per_alarm"], east["answered_call_alarms"]) == (1.0, 1)
    assert (west["calls_per_alarm"], west["answered_call_share"]) == (1.0, 1.0)
    table = _report_cli(database_url, "--since", "2026-11-02", "--until", "2026-11-02")
    assert table.returncode == 0, table.stderr
    lines = [ln.split() for ln in table.stdout.splitlines()]
    assert ["east", "3", "3", "1.00", "33.3%"] in lines, table.stdout
    assert ["all", "4", "4", "1.00", "50.0%"] in lines, table.stdout
