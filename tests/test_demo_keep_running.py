"""`carehub demo --keep-running`: prints the console's URL and a dispatcher's sign-in, the
console accepts that sign-in over HTTP and shows the simulated home's alarms, and Ctrl-C
(SIGINT) stops everything it started."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid

import httpx
import pytest

from tests.test_cli import CAREHUB, processes_tagged

pytestmark = pytest.mark.integration


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def _next_match(
    lines: queue.Queue[str], pattern: str, deadline: float, seen: list[str]
) -> re.Match[str]:
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no line matching {pattern!r} in:\n{''.join(seen)}"
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found


def test_keep_running_prints_a_console_sign_in_that_works_and_stops_on_sigint() -> None:
    tag = uuid.uuid4().hex
    demo = subprocess.Popen(
        [str(CAREHUB), "demo", "--keep-running", "--alarm-every", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CAREHUB_TEST_TAG": tag},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(demo.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        url = _next_match(lines, r"console: (http://\S+/console/)", deadline, seen).group(1)
        login = _next_match(lines, r"login: (\S+) / (\S+)", deadline, seen)
        _next_match(lines, r"btn-1 pressed", deadline, seen)  # a new alarm now and then
        with httpx.Client(base_url=url.removesuffix("/console/"), timeout=10) as web:
            form = web.get("/console/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert token is not None
            signed_in = web.post(
                "/console/login",
                data={"username": login[1], "password": login[2], "csrf_token": token[1]},
            )
            assert signed_in.status_code == 303, signed_in.text
            assert signed_in.headers["location"] == "/console/"
            rows = web.get("/console/")
            assert rows.status_code == 200 and "和平里3-2-501" in rows.text
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    assert code == 0, "".join(seen)
    deadline = time.monotonic() + 10
    while processes_tagged(tag):
        assert time.monotonic() < deadline, "the demo left processes running"
        time.sleep(0.1)
