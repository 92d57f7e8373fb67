"""The live streams (Server-Sent Events) each session has open in this process, so that
signing out ends them at once. A session ended in another process (or expired) ends its
streams at their next send, which checks the session first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class SessionStreams:
    def __init__(self) -> None:
        self._open: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def watch(self, session_key: str) -> Iterator[asyncio.Event]:
        """An event set when the session (`accounts.session_key` of its cookie) signs out,
        for as long as the stream is open."""
        ended = asyncio.Event()
        streams = self._open.setdefault(session_key, set())
        streams.add(ended)
        try:
            yield ended
        finally:
            streams.discard(ended)
            if not streams and self._open.get(session_key) is streams:
                del self._open[session_key]

    def end(self, session_key: str) -> None:
        """The session signed out here: end each of its streams."""
        for ended in self._open.pop(session_key, set()):
            ended.set()

    def __len__(self) -> int:
        return sum(len(s) for s in self._open.values())
