"""A hub set up for calls whose speakerphone is missing (no ALSA device here): its alarms are
raised as ever, and the health board says "speakerphone missing" for it (docs/voice.md)."""

from __future__ import annotations

import re

import httpx
import pytest

from firmware_sim.button import CallButton
from tests.test_console_browser import PASSWORD, add_accounts

pytestmark = pytest.mark.integration


@pytest.fixture
def hub_env() -> dict[str, str]:
    return {"CAREHUB_VOICE_SOURCE": "alsa:carehub-no-such-device"}


@pytest.fixture(autouse=True)
def console_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_CONSOLE_INSECURE_COOKIES", "true")


def signed_in(base_url: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=10)
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post(
        "/console/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)},
    )
    assert r.status_code in (200, 303), r.text
    return client


def test_no_audio_device_means_speakerphone_missing_and_alarms_as_ever(deployment) -> None:  # type: ignore[no-untyped-def]
    hubs = deployment.admin.get("/api/v1/admin/hubs").json()
    assert hubs[0]["health"]["speakerphone"] == "missing"
    add_accounts(deployment.tmp)
    console = signed_in(deployment.base_url, "disp")
    try:
        board = console.get("/console/health").text
    finally:
        console.close()
    section = board.split('id="speakerphone-missing"', 1)[1].split("</section>", 1)[0]
    assert "hub-1" in section and "Bldg 3-501" in section

    with CallButton("btn-1", "127.0.0.1", deployment.broker.port) as button:
        assert button.connected.wait(5)
        seq = button.press("press")
        assert button.acks.wait_for(lambda a: a.seq == seq and a.state == "received", 10)
        assert button.acks.wait_for(lambda a: a.state == "dispatched", 20)
    [alarm] = deployment.alarms()
    assert alarm["kind"] == "button"
    assert "speakerphone missing" in (deployment.tmp / "hub.log").read_text()
    assert deployment.hub.running
