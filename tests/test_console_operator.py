"""Issue 23, what an alarm-receiving centre's operator has: who the elder is (phones, age,
sex, warnings as badges), who is coming (the accepting member, since when, their ETA) and
the shift handover page. Over HTTP in process on SQLite and PostgreSQL, as
`test_console_shift`."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from carehub.alarm_lifecycle import AlarmKind, AlarmState
from server.catalogue import LANGUAGES
from server.dispatch.eta import EtaKey, judge_eta
from server.elder_facts import ElderWarning, age, warnings_of
from server.schema import alarm_events
from tests.test_console_chinese import english_left, names_on_shift
from tests.test_console_shift import DIRECTORY, Shift, open_shift, text_of

WHO = {
    "phone": "+8613700000001",
    "home_phone": "+861064000001",
    "born": "1941",
    "sex": "female",
    "warnings": ["dementia", "hard_of_hearing"],
}


@pytest.fixture
async def shift(database_url: str) -> AsyncIterator[Shift]:
    directory = copy.deepcopy(DIRECTORY)
    directory["elders"][0].update(WHO)  # type: ignore[index]
    accounts = [
        ("op", "dispatcher", None, "en"),
        ("op-zh", "dispatcher", None, "zh"),
        ("fitter", "installer", None, "en"),
    ]
    async with open_shift(database_url, directory, accounts) as s:
        yield s


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# ------------------------------------------------------------ who


def test_age_counts_whole_years_in_the_centres_time_zone() -> None:
    # 2026-03-07 17:00 UTC is already 03-08 in Shanghai: the birthday has come there
    at = _ms("2026-03-07T17:00:00+00:00")
    assert age("1941-03-08", at, "Asia/Shanghai") == 85
    assert age("1941-03-08", at, "UTC") == 84
    assert age("1941", at, "UTC") == 85  # a year alone: the age reached this year
    assert age(None, at, "UTC") is None and age("41", at, "UTC") is None


def test_warnings_keep_the_fixed_order_and_drop_unknown_values() -> None:
    stored = ["lives_alone", "dementia", "juggler"]
    assert warnings_of(stored) == (ElderWarning.DEMENTIA, ElderWarning.LIVES_ALONE)
    assert warnings_of(None) == ()


async def test_who_the_alarm_page_and_the_card_show_badges_and_call_links(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    await shift.sign_in()
    now = shift.clock.now_ms()
    years = datetime.fromtimestamp(now / 1000, UTC).year - 1941  # the clock is not at New Year
    for path in (f"/console/alarms/{alarm_id}", "/console/elders/elder-1"):
        page = await shift.console(path)
        who = page.split('id="elder-who"', 1)[1].split("</div>", 1)[0]
        assert f"{years} years" in text_of(who) and "Female" in who
        assert 'data-warning="hard_of_hearing"' in who and "Dementia" in who
        assert 'href="tel:+8613700000001"' in who and 'href="tel:+861064000001"' in who
        assert page.index('id="elder-who"') < page.index("<h2")
    shift.http.cookies.clear()
    await shift.sign_in("op-zh")
    page = await shift.console(f"/console/alarms/{alarm_id}")
    who = text_of(page.split('id="elder-who"', 1)[1].split("</div>", 1)[0])
    assert f"{years} 岁" in who and "女" in who and "认知障碍" in who and "听力差" in who
    shift.http.cookies.clear()
    await shift.sign_in("fitter")  # an installer: no medical data, no warnings
    page = await shift.console(f"/console/alarms/{alarm_id}")
    assert 'id="elder-who"' not in page


# ------------------------------------------------------------ who is coming


def test_only_the_accepting_member_gives_an_eta_within_1_to_180_minutes() -> None:
    on = AlarmState.ACCEPTED
    assert judge_eta(15, on, "li", "li", arrived=False) is EtaKey.RECORDED
    assert judge_eta(0, on, "li", "li", arrived=False) is EtaKey.OUT_OF_RANGE
    assert judge_eta(181, on, "li", "li", arrived=False) is EtaKey.OUT_OF_RANGE
    assert judge_eta(None, on, "li", "li", arrived=False) is EtaKey.OUT_OF_RANGE
    assert judge_eta(15, on, "li", "wang", arrived=False) is EtaKey.NOT_YOURS
    assert judge_eta(15, on, "li", "li", arrived=True) is EtaKey.ALREADY_ARRIVED
    assert judge_eta(15, AlarmState.RESOLVED, "li", "li", False) is EtaKey.ALREADY_OVER


async def test_coming_the_alarm_page_shows_who_accepted_since_when_and_their_eta(
    shift: Shift,
) -> None:
    alarm_id = await shift.press()
    await shift.run()
    link = shift.link("li")
    await shift.sign_in()
    page = await shift.console(f"/console/alarms/{alarm_id}")
    assert 'id="coming"' not in page  # nobody accepted yet
    accepted = await shift.http.post(link + "/accept")
    assert 'id="eta-form"' in accepted.text
    shift.clock.advance(240)  # four minutes later li gives an estimate
    for wrong in ("0", "181", "soon"):
        r = await shift.http.post(link + "/eta", data={"minutes": wrong})
        assert r.status_code == 200 and "from 1 to 180" not in r.text  # li reads Chinese
        assert "1 到 180" in r.text
    given = await shift.http.post(link + "/eta", data={"minutes": "15"})
    assert "15 分钟后到达" in given.text
    events = await shift.rows(
        sa.select(alarm_events.c.actor, alarm_events.c.detail).where(
            alarm_events.c.alarm_id == alarm_id, alarm_events.c.kind == "eta"
        )
    )
    assert [(e.actor, e.detail) for e in events] == [("member:li", "15")]  # in li's name
    shift.clock.advance(60)
    page = await shift.console(f"/console/alarms/{alarm_id}")
    coming = text_of(page.split('id="coming"', 1)[1].split("</section>", 1)[0])
    assert "李医生" in coming and "accepted 5 min ago" in coming
    assert "expected in 15 min" in coming
    assert 'id="coming-call" href="tel:+8613800000001"' in page
    timeline = text_of(page.split('id="timeline"', 1)[1].split("</ol>", 1)[0])
    assert "Arrival estimate in 15 min 李医生" in timeline
    shift.http.cookies.clear()
    await shift.sign_in("op-zh")  # badges, who is coming and the estimate, all in Chinese
    page = await shift.console(f"/console/alarms/{alarm_id}")
    assert "预计 15 分钟后到达" in page and "预计到达" in page
    assert english_left(page, names_on_shift() | {LANGUAGES["en"]}) == []


async def test_coming_an_eta_from_a_member_who_did_not_accept_is_refused(shift: Shift) -> None:
    alarm_id = await shift.press()
    await shift.run()
    li = shift.link("li")
    r = await shift.http.post(li + "/eta", data={"minutes": "10"})  # before accepting
    assert "只有接单的成员" in r.text
    await shift.http.post(li + "/accept")
    await shift.http.post(li + "/arrived")
    r = await shift.http.post(li + "/eta", data={"minutes": "10"})
    assert "您的到达已记录" in r.text
    count = await shift.scalar(
        sa.select(sa.func.count()).where(
            alarm_events.c.alarm_id == alarm_id, alarm_events.c.kind == "eta"
        )
    )
    assert count == 0


# ------------------------------------------------------------ the shift handover


async def test_handover_lists_open_alarms_unclaimed_first_with_claims_and_last_notes(
    shift: Shift,
) -> None:
    claimed = await shift.press()
    shift.clock.advance(60)
    unclaimed = await shift.press("band-1", AlarmKind.FALL)
    shift.clock.advance(60)
    closed = await shift.press("band-1", AlarmKind.VITALS)
    token = await shift.sign_in()
    for action, data in [
        ("claim", {}),
        ("note", {"text": "son on his way"}),
        ("note", {"text": "son there, waiting for the doctor"}),
    ]:
        r = await shift.http.post(
            f"/console/alarms/{claimed}/{action}", data={"csrf_token": token, **data}
        )
        assert r.status_code in (200, 303), r.text
    await shift.http.post(
        f"/console/alarms/{closed}/resolve", data={"csrf_token": token, "outcome": "by_phone"}
    )
    page = await shift.console("/console/handover")
    assert 'id="nav-handover"' in page and 'id="print"' in page
    table = page.split('id="handover"', 1)[1].split("</table>", 1)[0]
    order = [m.split('"', 1)[0] for m in table.split('data-alarm-id="')[1:]]
    assert order == [unclaimed, claimed]  # the unclaimed one first; the resolved one gone
    rows = {
        i: text_of(table.split(f'data-alarm-id="{i}"', 1)[1].split("</tr>", 1)[0]) for i in order
    }
    assert "unclaimed" in rows[unclaimed] and "unclaimed" not in rows[claimed]
    assert " op " in rows[claimed] and "son there, waiting for the doctor" in rows[claimed]
    assert "son on his way" not in rows[claimed]  # the last note only
    shift.http.cookies.clear()
    await shift.sign_in("op-zh")
    page = await shift.console("/console/handover")
    assert "交接班" in page and "最近备注" in page
    shift.http.cookies.clear()
    await shift.sign_in("fitter")
    r = await shift.http.get("/console/handover", headers={"Accept": "text/html"})
    assert r.status_code == 403  # an installer sees no medical data
