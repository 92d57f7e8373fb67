"""`TwilioNotifier` sends with the SDK's asyncio client through one aiohttp session: its
connection to the provider is kept for the next send (no thread, no `requests`), and a
provider that cannot be reached is a `NotifierError` (the dispatcher retries)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import server.app
from carehub.settings import ServerSettings
from harness.sms_sandbox import SmsSandbox
from server.notifier import ConsoleNotifier, NotifierError, TwilioNotifier

SID = "AC" + "0" * 32


def _notifier(api_base: str) -> TwilioNotifier:
    return TwilioNotifier(SID, "sandbox-auth-token", "+15550000000", api_base, timeout_s=5)


async def test_sends_share_one_kept_alive_connection(sms: SmsSandbox) -> None:
    notifier = _notifier(sms.url)
    try:
        refs = [await notifier.send_sms(f"+861380000000{i}", f"text {i}") for i in (1, 2, 3)]
    finally:
        await notifier.aclose()
    assert refs == [m.sid for m in sms.messages]
    assert [(m.to, m.body, m.account_sid) for m in sms.messages] == [
        (f"+861380000000{i}", f"text {i}", SID) for i in (1, 2, 3)
    ]
    assert len({m.client_port for m in sms.messages}) == 1, sms.messages


async def test_an_unreachable_provider_and_a_closed_notifier_give_notifier_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    notifier = _notifier(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(NotifierError):
            await notifier.send_sms("+8613800000001", "lost")
    finally:
        await notifier.aclose()
    with pytest.raises(NotifierError):
        await notifier.send_sms("+8613800000001", "after close")


async def test_a_refusing_provider_gives_notifier_error(sms: SmsSandbox) -> None:
    notifier = TwilioNotifier("not-an-account", "t", "+15550000000", sms.url)
    try:
        with pytest.raises(NotifierError, match="404"):
            await notifier.send_sms("+8613800000001", "refused")
    finally:
        await notifier.aclose()


def test_the_sdks_rest_api_is_imported_when_made_not_at_the_first_alarm() -> None:
    """A fresh interpreter, as the server's: the import costs ~0.4 s of CPU."""
    probe = (
        "import sys; from server.notifier import TwilioNotifier; "
        "api = 'twilio.rest.api.v2010.account.message'; before = api in sys.modules; "
        f"TwilioNotifier({SID!r}, 't', '+15550000000'); print(before, api in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "True"], done.stderr


def test_the_server_closes_the_notifier_it_made_when_it_stops(
    tmp_path: Path, sms: SmsSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[TwilioNotifier | ConsoleNotifier] = []

    def noting(settings: ServerSettings) -> TwilioNotifier | ConsoleNotifier:
        made.append(make(settings))
        return made[-1]

    make = server.app.make_notifier
    monkeypatch.setattr(server.app, "make_notifier", noting)
    settings = ServerSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",  # type: ignore[arg-type]
        notifier="twilio",
        twilio_api_base=sms.url,
        twilio_auth_token="test-secret",  # type: ignore[arg-type]
    )
    with TestClient(server.app.create_app(settings)):
        pass
    [notifier] = made
    with pytest.raises(NotifierError, match="closed"):
        asyncio.run(notifier.send_sms("+8613800000001", "after the server stopped"))
    assert sms.messages == []
