"""Security across the server: every route but health asks for a credential (the responder
pages and Twilio webhooks check their own token or signature), the OpenAPI document and
metrics are for the admin token, and a dispatch leaves no name, phone number or address in
the log. Test alarms: marked in both languages, first step only, outside the KPIs."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from carehub.api_contract import ALARMS_PATH, ENROLL_PATH, HEALTH_PATH
from carehub.settings import ServerSettings
from harness.sms_sandbox import SmsSandbox
from server.app import create_app
from server.escalation import URGENT, Candidates, Exhausted, Notify, self_test_ladder, take_step
from server.main import prepare_database
from server.sms_text import self_test_mark
from tests.conftest import DIRECTORY

TOKEN = "hub-token-for-security-tests-0123"
ADMIN = "admin-token-for-security-tests"
PUBLIC = (
    HEALTH_PATH,
    "/console/login",  # the sign-in form itself
    "/console/alert.wav",  # the queue's alert tone
)
"""Routes anyone may call."""
OWN_CHECK = ("/r/", "/twilio/", ENROLL_PATH)
"""Routes that check their own credential: an accept link's token, Twilio's signature, the
one-time enrollment code (tests/test_enrollment.py)."""


def _routes(routes: list) -> Iterator[object]:
    """Every route, routers included (without prefixes: ours carry theirs on each route)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _routes(inner.routes) if inner is not None else [route]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x-1", path)


def test_every_route_needs_a_credential(tmp_path: Path) -> None:
    settings = ServerSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}",  # type: ignore[arg-type]
        admin_token=ADMIN,  # type: ignore[arg-type]
    )
    app: FastAPI = create_app(settings)
    checked = 0
    with TestClient(app) as client:
        for route in _routes(app.routes):
            if isinstance(route, Mount):
                continue  # the console's static files (CSS, JS)
            assert isinstance(route, APIRoute), route
            path = route.path
            if path in PUBLIC or path.startswith(OWN_CHECK):
                continue
            for method in sorted(route.methods - {"HEAD"}):
                r = client.request(method, _concrete(path), follow_redirects=False)
                assert r.status_code in (401, 403), (method, path, r.status_code, r.text[:200])
                checked += 1
        assert checked >= 30, checked  # hub, admin, installer and console routes
        # what the responder and Twilio routes do without their token or signature
        assert client.get("/r/ABCDEF/not-a-token").status_code == 404
        assert client.post("/twilio/status", data={"MessageSid": "SM1"}).status_code == 403
        for path in ("/docs", "/redoc"):
            assert client.get(path).status_code == 404
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert client.get("/openapi.json", headers=admin).json()["info"]["title"]
        metrics = client.get("/metrics", headers=admin)
        assert metrics.status_code == 200 and "python_info" in metrics.text
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
        )


@pytest.fixture
def sms() -> Iterator[SmsSandbox]:
    with SmsSandbox() as sandbox:
        yield sandbox


def test_a_dispatch_leaves_no_personal_data_in_the_log(
    tmp_path: Path, sms: SmsSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN))
    settings = ServerSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}",  # type: ignore[arg-type]
        admin_token=ADMIN,  # type: ignore[arg-type]
        notifier="twilio",
        twilio_api_base=sms.url,
        twilio_auth_token="test-secret",  # type: ignore[arg-type]
        secret_key="a-secret-key-for-the-links",  # type: ignore[arg-type]
    )
    asyncio.run(prepare_database(settings, directory))
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        now = int(time.time() * 1000)
        for alarm_id, test in (("a-1", False), ("a-2", True)):
            body = {
                "alarm_id": alarm_id,
                "device_id": "btn-1",
                "kind": "button",
                "raised_at_ms": now,
                "test": test,
            }
            assert client.post(ALARMS_PATH, json=body).status_code == 201
        deadline = time.monotonic() + 15
        while len(sms.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sms.messages) == 2, caplog.text
        # the responder opens the real alarm's link and accepts it
        real = next(m for m in sms.messages if not m.body.startswith(self_test_mark("en")))
        link = re.search(r"/r/\w+/[\w-]+", real.body)
        assert link is not None, real.body
        assert client.post(link.group(0) + "/accept").status_code == 200
        test_sms = next(m for m in sms.messages if m is not real)
        assert test_sms.body.startswith(self_test_mark("en")), test_sms.body  # dr-a reads English
        detail = client.get(
            "/api/v1/admin/alarms", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
        assert {a["hub_alarm_id"] for a in detail} == {"a-1", "a-2"}
    log = caplog.text
    assert "alarm" in log and "SMS" in log and "accept by link" in log, log  # it did log
    for personal in ("Zhang", "San", "Doctor A", "Bldg 3-501", "13800000001", "13800000002"):
        assert personal not in log, (personal, log)


def test_a_test_alarm_climbs_the_first_step_only() -> None:
    ladder = self_test_ladder(URGENT)
    team = Candidates(team_on_duty=("dr-a", "dr-b"), backups_on_duty=("dr-x",))
    first = take_step(ladder, 0, team, 0)
    assert isinstance(first, Notify) and first.members == ("dr-a",)
    assert isinstance(take_step(ladder, 1, team, 60_000), Exhausted)  # nobody else, ever
    assert isinstance(take_step(URGENT, 1, team, 60_000), Notify)  # a real alarm climbs on
    for language, mark in (("en", "TEST"), ("zh", "测试")):
        assert mark in self_test_mark(language)
