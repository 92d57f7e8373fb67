"""The SMS sandbox signs its status callbacks exactly as Twilio does (checked with the
SDK's own validator), in order, and ends undeliverable numbers `undelivered`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator

from harness.sms_sandbox import SmsSandbox
from server.notifier import TwilioNotifier
from tests.mqtt_tools import wait_for

TOKEN = "sandbox-auth-token"


class Receiver:
    """A webhook that records (status, signature valid) for every callback."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                form = dict(
                    parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode())
                )
                url = receiver.url + self.path
                ok = RequestValidator(TOKEN).validate(
                    url, form, self.headers.get("X-Twilio-Signature", "")
                )
                receiver.seen.append((form["To"], form["MessageStatus"], ok))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


async def test_callbacks_are_signed_in_order_and_undeliverable_numbers_fail(
    receiver: Receiver,
) -> None:
    with SmsSandbox(undeliverable={"+8613800000002"}) as sandbox:
        notifier = TwilioNotifier(
            "AC" + "0" * 32,
            TOKEN,
            "+15550000000",
            sandbox.url,
            status_callback=receiver.url + "/cb",
        )
        try:
            await notifier.send_sms("+8613800000001", "one")
            await notifier.send_sms("+8613800000002", "two")
        finally:
            await notifier.aclose()
        assert wait_for(lambda: len(receiver.seen) == 6, 10), receiver.seen
        # the sandbox notes a callback once its answer is back, just after the receiver saw it
        assert wait_for(lambda: len(sandbox.callbacks) == 6, 10), sandbox.callbacks
        assert [c.http_status for c in sandbox.callbacks] == [204] * 6
    by_number = {
        to: [(status, ok) for t, status, ok in receiver.seen if t == to]
        for to in ("+8613800000001", "+8613800000002")
    }
    assert by_number["+8613800000001"] == [("queued", True), ("sent", True), ("delivered", True)]
    assert by_number["+8613800000002"] == [("queued", True), ("sent", True), ("undelivered", True)]
