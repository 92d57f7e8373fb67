"""The HTTP connection limits uvicorn lacks: deadlines for a request's head and body, and
bounds on their size.

uvicorn times out only an idle keep-alive connection after a response; a client that
connects and sends a head byte by byte ("slowloris"), or never finishes it, holds its
socket and buffers for ever, and a head or body may be any size. `bounded_protocol` makes
uvicorn's httptools protocol close such connections:

- the head (request line and headers) must be complete within `header_timeout_s` of the
  connection (a new connection) or of its first byte (a kept-alive one), else ``408``;
- the body must be complete within `body_timeout_s` of the head, else the connection
  closes (the route sees the client gone);
- a head over `max_header_bytes` gets ``431``; a body declared over `max_body_bytes` gets
  ``413`` before the route starts, a chunked one that grows over it closes the connection.

Closing is logged at most once a minute, with a count, so a flood writes few lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 1024 * 1024


class _TooLarge(Exception):
    """A head or body over its bound: stops the parser (uvicorn answers a parser error)."""


def _status(code: int, reason: str) -> bytes:
    return f"HTTP/1.1 {code} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()


class _Closings:
    """Counts closed connections by reason; logs the counts at most once a minute."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.counts: dict[str, int] = {}
        self.logged_at = -every_s

    def note(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self.logged_at >= self.every_s:
            self.logged_at = now
            summary = ", ".join(f"{n} {r}" for r, n in sorted(self.counts.items()))
            log.warning("closed HTTP connections: %s (docs/operations.md, limits)", summary)
            self.counts.clear()


_closings = _Closings()


class _BoundedProtocol(HttpToolsProtocol):
    limits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0
        self._body_bytes = 0
        self._refusal: bytes | None = None

    # ---------------------------------------------------------------- deadlines

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head:
            _closings.note("head not complete in time")
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_status(408, "Request Timeout"))
        else:
            _closings.note("body not complete in time")
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ---------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._body_bytes = True, 0, 0
        if self._deadline is None:
            self._arm(self.limits.header_timeout_s)

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = _status(431, "Request Header Fields Too Large")
            _closings.note("head too large")
            raise _TooLarge

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        length = next((v for n, v in self.headers if n == b"content-length"), b"")
        if length.isdigit() and int(length) > self.limits.max_body_bytes:
            self._too_large_body()  # said before the route starts: it never does
        self._arm(self.limits.body_timeout_s)
        super().on_headers_complete()

    def _too_large_body(self) -> None:
        self._refusal = _status(413, "Content Too Large")
        _closings.note("body too large")
        raise _TooLarge

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            self._too_large_body()  # chunked: the route has started, the client is gone
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the route, if running, sees the client gone
            self.cycle.message_event.set()
        else:
            self.transport.write(self._refusal)
        self.transport.close()


def bounded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `limits` (pass as ``uvicorn.Config(http=…)``)."""
    return type("BoundedHttpToolsProtocol", (_BoundedProtocol,), {"limits": limits})
