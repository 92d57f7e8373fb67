"""A local Twilio-compatible HTTP server that records every SMS request.

Tests, the demo and benchmarks aim the real Twilio SDK at it (``CAREHUB_TWILIO_API_BASE``)
so nothing ever leaves the machine. It implements only ``POST
/2010-04-01/Accounts/<sid>/Messages.json`` and answers like Twilio does (201, a message
resource). Run standalone: ``python -m harness.sms_sandbox --port 8099 --record sms.jsonl``.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

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


class SmsSandbox:
    """`with SmsSandbox() as sms: ... sms.messages` — a server in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, record: Path | None = None) -> None:
        self.messages: list[RecordedSms] = []
        self._lock = threading.Lock()
        self._record = record
        self._open = threading.Event()
        self._open.set()
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                m = _MESSAGES.match(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if not m:
                    return self._reply(404, {"code": 20404, "message": "not found"})
                user = _basic_user(self.headers.get("Authorization", ""))
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
                )
                sandbox._add(sms)
                self._reply(201, _resource(sms))

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


def _basic_user(header: str) -> str:
    if not header.startswith("Basic "):
        return ""
    try:
        return base64.b64decode(header[6:]).decode().split(":", 1)[0]
    except (ValueError, UnicodeDecodeError):
        return ""


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
