"""A real `carehub server` closes connections whose request does not arrive in time or is too
large (`server/http_limits.py`): a slowloris client holds nothing for long."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from harness.broker import free_port
from harness.processes import Child, wait_http_ok
from tests.conftest import DIRECTORY
from tests.test_server_process import TOKEN

HEAD_TIMEOUT_S = 1


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("http-limits")
    (tmp / "directory.toml").write_text(DIRECTORY.format(token=TOKEN))
    port = free_port()
    server = Child(
        "server",
        ["server", "--directory", str(tmp / "directory.toml")],
        {
            "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'server.db'}",
            "CAREHUB_PORT": str(port),
            "CAREHUB_HTTP_HEADER_TIMEOUT_S": str(HEAD_TIMEOUT_S),
            "CAREHUB_HTTP_BODY_TIMEOUT_S": "1",
            "CAREHUB_HTTP_KEEP_ALIVE_S": "30",
        },
        tmp / "server.log",
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, server)
        yield port
    finally:
        server.stop()
    log = (tmp / "server.log").read_text()
    assert "closed HTTP connections: " in log and "Traceback" not in log, log


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(0.5)
    return sock


def answer_until_closed(sock: socket.socket, deadline_s: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection; fails if it has not
    closed it by the (generous) deadline."""
    got = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
    pytest.fail(f"the server kept the connection open for {deadline_s} s; it sent {got!r}")


@pytest.mark.integration
def test_a_head_that_never_completes_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert answer_until_closed(sock).startswith(b"HTTP/1.1 408 ")


@pytest.mark.integration
def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    with connect(port) as sock:
        assert answer_until_closed(sock).startswith(b"HTTP/1.1 408 ")


@pytest.mark.integration
def test_a_head_trickled_byte_by_byte_is_closed(port: int) -> None:
    """Each byte comes well within the deadline; the head as a whole does not."""
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                sock.sendall(b"X")
            except OSError:
                break  # closed
            try:
                if sock.recv(65536) == b"":
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
        else:
            pytest.fail("a trickled head kept its connection for 30 s")


@pytest.mark.integration
def test_a_kept_alive_connection_whose_next_head_stalls_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'"ok"' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert answer_until_closed(sock).startswith(b"HTTP/1.1 408 ")


@pytest.mark.integration
def test_a_body_that_never_completes_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(
            b"POST /api/v1/alarms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
        )
        answer_until_closed(sock)


@pytest.mark.integration
def test_too_large_heads_and_bodies_are_refused(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        assert answer_until_closed(sock).startswith(b"HTTP/1.1 431 ")
    with connect(port) as sock:
        size = 2 * 1024 * 1024
        sock.sendall(
            b"POST /api/v1/hub/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
        )
        assert answer_until_closed(sock).startswith(b"HTTP/1.1 413 ")
    with connect(port) as sock:
        sock.sendall(
            b"POST /api/v1/hub/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"  # 1 MiB each
        try:
            for _ in range(3):
                sock.sendall(chunk)
        except OSError:
            pass  # closed while sending: refused
        answer_until_closed(sock)
