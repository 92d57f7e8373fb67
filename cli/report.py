"""`carehub report kpi`: reads the server's database and prints the KPI report."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import SQLAlchemyError

from server.db import make_engine
from server.kpi import KpiReport, kpi_report, render_table
from server.kpi_store import read_alarm_times


def kpi_command(
    database_url: str, since: str, until: str | None, time_zone: str, as_json: bool
) -> int:
    """Exit status: 0 printed, 2 bad arguments or unreadable database (one line why)."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return _fail(f"unknown time zone {time_zone!r} (e.g. UTC, Asia/Shanghai)")
    try:
        since_ms = _day_start_ms(date.fromisoformat(since), zone)
        until_ms = (
            _day_start_ms(date.fromisoformat(until) + timedelta(days=1), zone)
            if until
            else int(datetime.now(zone).timestamp() * 1000)
        )
    except ValueError:
        return _fail(f"dates are YYYY-MM-DD: got --since {since!r} --until {until!r}")
    if until_ms <= since_ms:
        return _fail("--until is before --since")
    try:
        report = asyncio.run(_read(database_url, since_ms, until_ms, time_zone))
    except (SQLAlchemyError, OSError) as e:
        first = (str(e).strip().splitlines() or [""])[0]
        return _fail(f"cannot read the database: {type(e).__name__}: {first}")
    print(json.dumps(report.to_json(), indent=2) if as_json else render_table(report))
    return 0


async def _read(url: str, since_ms: int, until_ms: int, time_zone: str) -> KpiReport:
    engine = make_engine(url)
    try:
        rows = await read_alarm_times(engine, since_ms, until_ms)
    finally:
        await engine.dispose()
    return kpi_report(rows, since_ms, until_ms, time_zone)


def _day_start_ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def _fail(message: str) -> int:
    print(f"carehub report kpi: {message}", file=sys.stderr)
    return 2
