"""One real server process on SQLite with a console account, for the console tests that
need a real HTTP server (a live stream that must end, a browser posting from elsewhere)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from harness.broker import free_port
from harness.processes import Child, wait_http_ok
from server.console.console_store import add_account_to
from tests.conftest import DIRECTORY

PASSWORD = "correct horse battery"


@contextmanager
def console_server(
    tmp_path: Path, username: str = "disp", hub_token: str | None = None
) -> Iterator[str]:
    """The base URL of a server process whose console has `username` (a dispatcher);
    `hub_token`: hub-1's, for a test that speaks the hub's API too."""
    token = hub_token or secrets.token_urlsafe(24)
    (tmp_path / "directory.toml").write_text(DIRECTORY.format(token=token))
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    port = free_port()
    child = Child(
        "server",
        ["server", "--directory", str(tmp_path / "directory.toml")],
        {
            "CAREHUB_DATABASE_URL": url,
            "CAREHUB_PORT": str(port),
            "CAREHUB_CONSOLE_INSECURE_COOKIES": "true",
        },
        tmp_path / "server.log",
    ).start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/healthz", 60, child)
        add = add_account_to(url, username, PASSWORD, "dispatcher", None, "en", 0)
        with ThreadPoolExecutor(1) as worker:  # a caller's event loop may own this thread
            worker.submit(asyncio.run, add).result()
        yield base
    finally:
        child.stop()
