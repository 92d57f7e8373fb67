"""A local Twilio-compatible HTTP server that records every SMS request.

Tests, the demo and benchmarks aim the real Twilio SDK at it (``CAREHUB_TWILIO_API_BASE``)
so nothing ever leaves the machine. It implements only ``POST
/2010-04-01/Accounts/<sid>/Messages.json`` and answers like Twilio does (201, a message
resource). Run standalone: ``python -m harness.sms_sandbox --port 8099 --record sms.jsonl``.

Like Twilio, a message created with ``StatusCallback`` has its statuses POSTed there
(``queued``, ``sent``, then ``delivered``, or ``undelivered`` for numbers in
`undeliverable`), form-encoded and signed with the account's auth token exactly as Twilio
signs (``X-Twilio-Signature``). `post_inbound` plays a member's reply to the server's
``/twilio/sms`` webhook, signed the same way.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages\.json$")


@dataclass
class RecordedSms:
    account_sid: str
    to: str
    from_: str
    body: str
    auth_user: str
    received_ms: int
    user_agent: str
    sid: str = field(default_factory=lambda: "SM" + uuid.uuid4().hex)
    status_callback: str = ""
    client_port: int = 0
    """The sender's TCP port: the same for messages sent through one kept-alive connection."""


@dataclass(frozen=True)
class Callback:
    """One status callback the sandbox POSTed, and the HTTP status it got back."""

    sid: str
    url: str
    status: str
    http_status: int


class SmsSandbox:
    """`with SmsSandbox() as sms: ... sms.messages` — a server in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        record: Path | None = None,
        undeliverable: Iterable[str] = (),
        callback_delay_s: float = 0.2,
    ) -> None:
        self.messages: list[RecordedSms] = []
        self.callbacks: list[Callback] = []
        self.undeliverable = set(undeliverable)
        """Numbers whose messages end ``undelivered`` (a switched-off or wrong number)."""
        self.callback_delay_s = callback_delay_s
        """Like the carrier's latency: the first callback comes after the send's answer."""
        self._lock = threading.Lock()
        self._record = record
        self._open = threading.Event()
        self._open.set()
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Twilio's API

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                m = _MESSAGES.match(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if not m:
                    return self._reply(404, {"code": 20404, "message": "not found"})
                user, auth_token = _basic_auth(self.headers.get("Authorization", ""))
                if not user:
                    return self._reply(401, {"code": 20003, "message": "Authenticate"})
                if "To" not in form or "Body" not in form:
                    return self._reply(400, {"code": 21604, "message": "'To' and 'Body' needed"})
                sandbox._open.wait(120)  # paused: as a provider that is slow to answer
                sms = RecordedSms(
                    account_sid=m["sid"],
                    to=form["To"][0],
                    from_=form.get("From", [""])[0],
                    body=form["Body"][0],
                    auth_user=user,
                    received_ms=time.time_ns() // 1_000_000,
                    user_agent=self.headers.get("User-Agent", ""),
                    status_callback=form.get("StatusCallback", [""])[0],
                    client_port=self.client_address[1],
                )
                sandbox._add(sms)
                self._reply(201, _resource(sms))
                if sms.status_callback:
                    threading.Thread(
                        target=sandbox._report, args=(sms, auth_token), daemon=True
                    ).start()

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def pause(self) -> None:
        """Hold every request until `resume` (the provider hangs)."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _add(self, sms: RecordedSms) -> None:
        with self._lock:
            self.messages.append(sms)
            if self._record:
                with self._record.open("a") as f:
                    f.write(json.dumps(sms.__dict__) + "\n")

    def _report(self, sms: RecordedSms, auth_token: str) -> None:
        """POST the message's statuses to its StatusCallback, in order, signed."""
        time.sleep(self.callback_delay_s)  # the carrier's latency, not a synchronisation
        final = "undelivered" if sms.to in self.undeliverable else "delivered"
        for status in ("queued", "sent", final):
            params = {
                "MessageSid": sms.sid,
                "SmsSid": sms.sid,
                "AccountSid": sms.account_sid,
                "From": sms.from_,
                "To": sms.to,
                "MessageStatus": status,
                "SmsStatus": status,
                "ApiVersion": "2010-04-01",
            }
            if status == "undelivered":
                params["ErrorCode"] = "30003"  # Twilio's "unreachable destination handset"
            code = post_signed(sms.status_callback, params, auth_token)
            with self._lock:
                self.callbacks.append(Callback(sms.sid, sms.status_callback, status, code))

    def start(self) -> SmsSandbox:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SmsSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _basic_auth(header: str) -> tuple[str, str]:
    """(account sid, auth token) from HTTP basic auth; empty when absent."""
    if not header.startswith("Basic "):
        return "", ""
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return user, password


def twilio_signature(url: str, params: dict[str, str], auth_token: str) -> str:
    """``X-Twilio-Signature`` for a form POST to `url`, as Twilio computes it (the SDK's
    own code; imported here because the demo's hub-side command imports this module)."""
    from twilio.request_validator import RequestValidator

    return str(RequestValidator(auth_token).compute_signature(url, params))


def post_signed(url: str, params: dict[str, str], auth_token: str, timeout_s: float = 10) -> int:
    """POST `params` form-encoded to `url`, signed like Twilio; returns the HTTP status
    (0 when the server could not be reached)."""
    request = urllib.request.Request(
        url,
        data=urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(url, params, auth_token),
            "User-Agent": "TwilioProxy/1.1 (carehub sandbox)",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def inbound_params(
    from_: str, to: str, body: str, sid: str | None = None, account_sid: str = "AC" + "0" * 32
) -> dict[str, str]:
    """The form Twilio POSTs to the inbound-SMS webhook."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }


def post_inbound(
    url: str, auth_token: str, from_: str, to: str, body: str, sid: str | None = None
) -> int:
    """A member's SMS reaching the server's ``/twilio/sms`` (`url`), signed like Twilio."""
    return post_signed(url, inbound_params(from_, to, body, sid), auth_token)


def _resource(sms: RecordedSms) -> dict[str, Any]:
    return {
        "sid": sms.sid,
        "account_sid": sms.account_sid,
        "to": sms.to,
        "from": sms.from_,
        "body": sms.body,
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": "1",
        "uri": f"/2010-04-01/Accounts/{sms.account_sid}/Messages/{sms.sid}.json",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--record", type=Path, help="append each SMS as a JSON line here")
    args = parser.parse_args()
    sandbox = SmsSandbox(args.host, args.port, args.record)
    print(f"SMS sandbox on {sandbox.url}", flush=True)
    try:
        sandbox._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
