"""Acceptance from any phone, in process over a real database (SQLite and PostgreSQL): the
link page and Twilio's webhooks, on a simulated clock, with SMS to a recording notifier.

The escalation worker's passes are driven by hand (as in test_escalation_scenarios); the
app's routes are called through httpx's ASGI transport with a hand-built runtime.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from carehub.alarm_lifecycle import AlarmState
from carehub.clock import FakeClock
from carehub.settings import ServerSettings
from harness.sms_sandbox import inbound_params, twilio_signature
from server.accept_link import LINK_TTL_MS
from server.app import link_secret
from server.catalogue import translator
from server.notifier import MAX_CALLBACK_IDS, status_callback_url
from server.routes.twilio_hooks import MAX_FORM_FIELDS
from server.runtime import ServerRuntime
from server.schema import alarms, inbound_messages, link_views, notifications, sms_optouts
from server.store import HubIdentity
from tests.dispatch_world import RecordingNotifier, open_dispatching, press_button, serving

BASE = "http://testserver"
SECRET = "test-secret-key-0123456789"
AUTH_TOKEN = "twilio-auth-token"
HUB = HubIdentity("hub-1", "elder-1")
DIRECTORY = {
    "teams": [
        {"id": "team-a", "name": "A", "base": {"lat": 39.93, "lon": 116.39}},
        {"id": "dispatch", "name": "Dispatch", "kind": "dispatch"},
    ],
    "doctors": [
        {"id": "li", "team": "team-a", "name": "Dr Li", "phone": "+8613800000001"},
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
        },
    ],
    "elders": [
        {
            "id": "elder-1",
            "team": "team-a",
            "name": "王秀英",
            "short_address": "和平里3-2-501",
            "address": "北京市东城区和平里3号楼2单元501",
            "location": {"lat": 39.931, "lon": 116.391},
            "key_safe_code": "4711",
            "contacts": [{"id": "son", "name": "王强", "phone": "+8613900000001"}],
        }
    ],
    "hubs": [{"id": "hub-1", "elder": "elder-1", "token": "t" * 24}],
    "devices": [{"id": "btn-1", "hub": "hub-1", "kind": "button"}],
}
PHONE = {d["id"]: d["phone"] for d in DIRECTORY["doctors"]}  # type: ignore[index]
LINK = re.compile(r"https?://\S+/r/(\w+)/([\w-]+)")


@dataclass
class World:
    clock: FakeClock
    rt: ServerRuntime
    sms: RecordingNotifier
    http: httpx.AsyncClient

    async def press(self) -> str:
        return await press_button(self.rt.store, HUB, self.clock.now_ms())

    async def run(self, seconds: float = 0.0) -> None:
        await self.rt.escalator.pass_once()
        for _ in range(int(seconds)):
            self.clock.advance(1)
            await self.rt.escalator.pass_once()

    async def scalar(self, query: sa.Select) -> object:
        async with self.rt.store.engine.connect() as conn:
            return (await conn.execute(query)).scalar()

    async def rows(self, query: sa.Select) -> list[sa.Row]:
        async with self.rt.store.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def state(self, alarm_id: str) -> AlarmState:
        return AlarmState(
            await self.scalar(sa.select(alarms.c.state).where(alarms.c.id == alarm_id))
        )

    def link(self, member: str, index: int = -1) -> str:
        """The path of the link in the member's alarm text."""
        m = LINK.search([b for b in self.sms.to(member) if "/r/" in b][index])
        assert m is not None
        return f"/r/{m.group(1)}/{m.group(2)}"

    async def views(self) -> list[str]:
        rows = await self.rows(sa.select(link_views.c.action).order_by(link_views.c.id))
        return [r.action for r in rows]

    async def twilio(
        self, path: str, params: dict[str, str], token: str | None = AUTH_TOKEN
    ) -> httpx.Response:
        headers = (
            {"X-Twilio-Signature": twilio_signature(BASE + path, params, token)} if token else {}
        )
        return await self.http.post(path, data=params, headers=headers)

    async def reply(self, member: str, body: str, sid: str | None = None) -> httpx.Response:
        return await self.twilio(
            "/twilio/sms", inbound_params(PHONE[member], "+15550000000", body, sid)
        )


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    settings = ServerSettings(
        database_url=database_url,
        secret_key=SecretStr(SECRET),
        public_base_url=BASE,
        twilio_auth_token=SecretStr(AUTH_TOKEN),
    )
    async with (
        open_dispatching(
            database_url,
            DIRECTORY,
            PHONE,
            sealer_key=SECRET,
            link_key=link_secret(settings),
            base_url=BASE,
        ) as d,
        serving(settings, d) as (rt, http),
    ):
        yield World(d.clock, rt, d.sms, http)


# ---------------------------------------------------------------- the link page


async def test_the_page_opens_the_door_details_only_after_accept(world: World) -> None:
    alarm = await world.press()
    await world.run()
    link = world.link("li")
    page = await world.http.get(link)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-robots-tag"] == "noindex"
    assert "王老人按下了呼叫按钮" in page.text and "和平里3-2-501" in page.text  # zh member
    assert "秀英" not in page.text  # the family name only
    assert (
        "4711" not in page.text and "东城区" not in page.text and "+8613900000001" not in page.text
    )
    assert f'action="{link}/accept"' in page.text and f'action="{link}/decline"' in page.text
    assert await world.views() == ["view"]

    accepted = await world.http.post(link + "/accept")
    assert accepted.status_code == 200
    assert await world.state(alarm) is AlarmState.ACCEPTED
    assert "已接受" in accepted.text
    assert "4711" in accepted.text and "北京市东城区和平里3号楼2单元501" in accepted.text
    assert "tel:+8613900000001" in accepted.text and "uri.amap.com" in accepted.text
    assert f'action="{link}/arrived"' in accepted.text
    assert await world.views() == ["view", "accept", "key_safe"]

    again = await world.http.get(link)
    assert "4711" in again.text
    assert await world.views() == ["view", "accept", "key_safe", "view", "key_safe"]

    arrived = await world.http.post(link + "/arrived")
    assert "已记录到达" in arrived.text
    assert await world.scalar(sa.select(alarms.c.arrived_at_ms).where(alarms.c.id == alarm))


async def test_the_hub_hears_who_accepted(world: World) -> None:
    await world.press()
    await world.run()
    cursor = await world.rt.store.latest_cursor("hub-1")
    await world.http.post(world.link("li") + "/accept")
    updates = await world.rt.store.updates_for_hub("hub-1", cursor)
    assert [(u.state, u.responder) for u in updates] == [(AlarmState.ACCEPTED, "Dr Li")]


async def test_another_members_page_says_who_accepted(world: World) -> None:
    alarm = await world.press()
    await world.run(60)  # li did not answer: wang is asked too
    assert world.sms.to("wang")
    await world.http.post(world.link("li") + "/accept")
    page = await world.http.get(world.link("wang"))
    assert "Already accepted by Dr Li" in page.text and "4711" not in page.text
    late = await world.http.post(world.link("wang") + "/accept")
    assert "already accepted by Dr Li" in late.text and "4711" not in late.text
    assert await world.scalar(sa.select(alarms.c.accepted_by).where(alarms.c.id == alarm)) == "li"
    assert (await world.views()).count("key_safe") == 1  # li's, on accepting; none of wang's


async def test_decline_calls_the_next_member_at_once(world: World) -> None:
    await world.press()
    await world.run()
    assert not world.sms.to("wang")
    page = await world.http.post(world.link("li") + "/decline")
    assert "已拒绝" in page.text
    await world.run()  # no time passes
    assert len(world.sms.to("wang")) == 1
    assert "Decline" in (await world.http.get(world.link("wang"))).text  # en member


async def test_guessed_expired_and_other_alarm_tokens_are_refused(world: World) -> None:
    first = await world.press()
    await world.run()
    second = await world.press()
    await world.run()
    link_first, link_second = world.link("li", 0), world.link("li", 1)
    ref_second, token_first = link_second.split("/")[2], link_first.split("/")[3]
    guessed = await world.http.get(f"/r/{ref_second}/{'A' * 22}")
    crossed = await world.http.get(f"/r/{ref_second}/{token_first}")
    assert guessed.status_code == crossed.status_code == 404
    assert guessed.text == crossed.text  # no oracle
    assert guessed.headers["cache-control"] == "no-store"
    refused = await world.http.post(f"/r/{ref_second}/{token_first}/accept")
    assert refused.status_code == 404
    assert await world.state(first) is await world.state(second) is AlarmState.DISPATCHED
    assert await world.views() == []

    world.clock.advance(LINK_TTL_MS / 1000)
    expired = await world.http.get(link_first)
    assert expired.status_code == 410 and "expired" in expired.text
    assert (await world.http.post(link_first + "/accept")).status_code == 410
    assert await world.state(first) is AlarmState.DISPATCHED


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    token=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        min_size=1,
        max_size=40,
    )
)
async def test_any_made_up_token_gets_the_same_404(world: World, token: str) -> None:
    page = await world.http.get(f"/r/ABCDEF/{token}")
    assert page.status_code == 404 and "not valid" in page.text


# ---------------------------------------------------------------- Twilio webhooks


async def test_a_signed_reply_code_accepts_once(world: World) -> None:
    alarm = await world.press()
    await world.run()
    first = await world.reply("li", "1a", sid="SMreply1")
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/xml")
    assert "<Message>" in first.text and "已接受" in first.text
    assert await world.state(alarm) is AlarmState.ACCEPTED
    retried = await world.reply("li", "1a", sid="SMreply1")  # Twilio retried the webhook
    assert "<Message>" not in retried.text
    assert await world.scalar(sa.select(sa.func.count()).select_from(inbound_messages)) == 1


async def test_unsigned_or_wrongly_signed_webhooks_change_nothing(world: World) -> None:
    alarm = await world.press()
    await world.run()
    params = inbound_params(PHONE["li"], "+15550000000", "1a")
    assert (await world.twilio("/twilio/sms", params, token=None)).status_code == 403
    assert (await world.twilio("/twilio/sms", params, token="not-the-token")).status_code == 403
    stop = inbound_params(PHONE["li"], "+15550000000", "STOP")
    assert (await world.twilio("/twilio/sms", stop, token="not-the-token")).status_code == 403
    status = {"MessageSid": world.sms.ref_to("li"), "MessageStatus": "undelivered"}
    assert (await world.twilio("/twilio/status", status, token=None)).status_code == 403
    assert (await world.twilio("/twilio/status", status, token="nope")).status_code == 403
    assert await world.state(alarm) is AlarmState.DISPATCHED
    assert await world.scalar(sa.select(sa.func.count()).select_from(inbound_messages)) == 0
    assert await world.scalar(sa.select(sa.func.count()).select_from(sms_optouts)) == 0
    n = (await world.rows(sa.select(notifications).where(notifications.c.doctor_id == "li")))[0]
    assert n.provider_status is None and n.status == "sent"
    await world.run()
    assert not world.sms.to("wang")  # the forged "undelivered" did not move the ladder


async def test_a_late_reply_code_reaches_its_own_closed_alarm_not_a_newer_one(
    world: World,
) -> None:
    first = await world.press()
    await world.run()
    assert "已接受" in (await world.reply("li", "1a")).text  # li takes the first alarm
    second = await world.press()
    await world.run()
    assert "回复2a" in world.sms.to("li")[-1]
    hub_alarm_id = await world.scalar(sa.select(alarms.c.hub_alarm_id).where(alarms.c.id == second))
    await world.rt.store.report_state(
        HUB, str(hub_alarm_id), AlarmState.CANCELLED, world.clock.now_ms(), "r1", "hub", "cancel"
    )
    world.clock.advance(1)
    third = await world.press()
    await world.run()
    assert "回复3a" in world.sms.to("li")[-1]  # 2 may still be answered for the second alarm
    late = await world.reply("li", "2a")  # meant for the second alarm, read late
    assert "此警报已取消" in late.text
    assert await world.state(third) is AlarmState.DISPATCHED
    assert "已接受" in (await world.reply("li", "3a")).text
    world.clock.advance(12 * 3600 + 1)  # the hold (CAREHUB_REPLY_CODE_HOLD_H) has passed
    before = len(world.sms.to("li"))
    fourth = await world.press()
    await world.run()
    # the fourth alarm's SMS (a closing notice of an earlier alarm may be sent in this run too)
    assert any("回复2a" in m for m in world.sms.to("li")[before:]), world.sms.to("li")[before:]
    assert "已接受" in (await world.reply("li", "2a")).text
    assert await world.state(fourth) is AlarmState.ACCEPTED
    assert await world.state(first) is AlarmState.ACCEPTED


async def test_a_reply_code_declines(world: World) -> None:
    await world.press()
    await world.run()
    answer = await world.reply("li", "１Ｄ")  # full-width, from a Chinese keyboard
    assert "已拒绝" in answer.text
    await world.run()
    assert len(world.sms.to("wang")) == 1


async def test_unknown_texts_get_one_help_text_an_hour(world: World) -> None:
    first = await world.reply("wang", "what is this?")
    assert translator("en")("reply.help").split(":")[0] in first.text and "1a" in first.text
    second = await world.reply("wang", "hello??")
    assert "<Message>" not in second.text
    zh = await world.reply("li", "你好")
    assert "回复如 1a" in zh.text  # another number, its own language and limit
    world.clock.advance(3600)
    assert "<Message>" in (await world.reply("wang", "hello?")).text
    results = await world.rows(
        sa.select(inbound_messages.c.result).order_by(inbound_messages.c.received_at_ms)
    )
    assert sorted(r.result for r in results) == ["help", "help", "help", "help-limited"]


async def test_stop_makes_a_member_undeliverable_until_start(world: World) -> None:
    assert "<Message>" not in (await world.reply("wang", "STOP")).text
    assert await world.scalar(
        sa.select(sms_optouts.c.opted_out).where(sms_optouts.c.phone == PHONE["wang"])
    )
    await world.press()
    await world.run(60 + 10)  # li did not answer; wang's step comes, and its retries
    assert not world.sms.to("wang")
    n = (await world.rows(sa.select(notifications).where(notifications.c.doctor_id == "wang")))[0]
    assert n.status == "failed" and "opted out" in (n.provider_ref or "")
    await world.reply("wang", "START")
    assert not await world.scalar(
        sa.select(sms_optouts.c.opted_out).where(sms_optouts.c.phone == PHONE["wang"])
    )
    second = await world.press()
    await world.run(60)
    assert any(second[-6:].upper() in text for text in world.sms.to("wang"))


async def test_status_callbacks_record_delivery_in_order(world: World) -> None:
    await world.press()
    await world.run()
    ref = world.sms.ref_to("li")

    async def status_of() -> tuple[str, str]:
        n = (await world.rows(sa.select(notifications).where(notifications.c.provider_ref == ref)))[
            0
        ]
        return n.status, n.provider_status

    for state in ("queued", "sent", "delivered"):
        r = await world.twilio("/twilio/status", {"MessageSid": ref, "MessageStatus": state})
        assert r.status_code == 204
    assert await status_of() == ("delivered", "delivered")
    await world.twilio("/twilio/status", {"MessageSid": ref, "MessageStatus": "sent"})  # late
    assert await status_of() == ("delivered", "delivered")


def status_path(ids: tuple[str, ...]) -> str:
    """The status callback path as `TwilioNotifier` gives it to Twilio for these ids."""
    return status_callback_url("/twilio/status", ids)


async def test_callbacks_that_come_before_the_send_is_recorded_are_kept(world: World) -> None:
    """Twilio's callbacks can beat the send's own answer: the URL names the notification."""

    async def deliver(ref: str, ids: tuple[str, ...]) -> None:
        for state in ("queued", "sent", "delivered"):
            r = await world.twilio(status_path(ids), {"MessageSid": ref, "MessageStatus": state})
            assert r.status_code == 204, r.text

    world.sms.while_sending = deliver
    await world.press()
    await world.run()
    ref = world.sms.ref_to("li")
    assert world.sms.carried[ref]
    n = (await world.rows(sa.select(notifications).where(notifications.c.provider_ref == ref)))[0]
    assert (n.status, n.provider_status) == ("delivered", "delivered")


async def test_an_undelivered_callback_before_the_send_is_recorded_moves_the_ladder_on(
    world: World,
) -> None:
    async def bounce(ref: str, ids: tuple[str, ...]) -> None:
        if world.sms.sent[-1][0] == PHONE["li"]:
            params = {"MessageSid": ref, "MessageStatus": "undelivered"}
            assert (await world.twilio(status_path(ids), params)).status_code == 204

    world.sms.while_sending = bounce
    await world.press()
    await world.run()
    li = (await world.rows(sa.select(notifications).where(notifications.c.doctor_id == "li")))[0]
    assert li.status == "undelivered"
    await world.run()  # no time passes
    assert len(world.sms.to("wang")) == 1


async def test_a_callback_form_with_too_many_fields_is_refused(world: World) -> None:
    """The URL-encoded form is read with the standard library's parser, at most as many
    fields as `Request.form` takes: beyond that a 400, before the signature is checked."""
    params = {"MessageSid": "SM1", "MessageStatus": "sent"}
    params |= {f"x{i}": "" for i in range(MAX_FORM_FIELDS)}
    r = await world.twilio("/twilio/status", params)
    assert r.status_code == 400 and "form fields" in r.json()["detail"]


async def test_a_callback_form_keeps_blank_fields_in_the_signed_parameters(world: World) -> None:
    """Twilio signs every posted field, blank ones too: dropping one would refuse it."""
    await world.press()
    await world.run()
    params = {"MessageSid": world.sms.ref_to("li"), "MessageStatus": "delivered", "ErrorCode": ""}
    assert (await world.twilio("/twilio/status", params)).status_code == 204


async def test_a_status_callback_naming_too_many_notifications_is_refused(world: World) -> None:
    await world.press()
    await world.run()
    ids = tuple(f"n{i}" for i in range(MAX_CALLBACK_IDS + 1))
    params = {"MessageSid": world.sms.ref_to("li"), "MessageStatus": "delivered"}
    r = await world.twilio(status_path(ids), params)
    assert r.status_code == 400 and "at most" in r.json()["detail"]


async def test_an_undelivered_callback_moves_the_ladder_on(world: World) -> None:
    await world.press()
    await world.run()
    r = await world.twilio(
        "/twilio/status", {"MessageSid": world.sms.ref_to("li"), "MessageStatus": "undelivered"}
    )
    assert r.status_code == 204
    await world.run()  # no time passes
    assert len(world.sms.to("wang")) == 1


async def test_a_callback_that_changes_nothing_does_not_take_the_writer(world: World) -> None:
    """`queued` and `sent` arrive after the send was recorded: answered from a read, so
    they do not queue for SQLite's one writer behind the alarms' steps."""
    await world.press()
    await world.run()
    ref = world.sms.ref_to("li")
    writes = 0
    real = world.rt.store._write

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[Any]:
        nonlocal writes
        writes += 1
        async with real() as conn:
            yield conn

    world.rt.store._write = counted  # type: ignore[method-assign]
    for state in ("queued", "sent", "sent", "delivered", "delivered"):
        r = await world.twilio("/twilio/status", {"MessageSid": ref, "MessageStatus": state})
        assert r.status_code == 204
    assert writes == 1  # the delivered one
