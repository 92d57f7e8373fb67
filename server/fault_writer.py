"""Hub fault reports, written together: a group commit.

A report is acknowledged only once it is stored (the hub keeps it in its outbox until
then), so unlike heartbeats they cannot be written behind. Instead, while one batch holds
the writer, the reports that arrive meanwhile gather, and the next transaction stores them
all (`ServerStore.record_faults`: four statements however many). A lone report is written
at once, as before; a storm of them — every hub flushing its queued faults when the power
comes back — costs SQLite's one writer a few transactions a second instead of one per
report, so the alarms arriving meanwhile no longer queue behind them.
"""

from __future__ import annotations

import asyncio
import logging

from server.fault_reports import Incoming, Outcome
from server.store import ServerStore

log = logging.getLogger(__name__)

MAX_BATCH = 200
"""Reports per transaction (each names three bound values per lookup: far below SQLite's
limit on variables)."""


class FaultWriter:
    def __init__(self, store: ServerStore, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._waiting: list[tuple[Incoming, asyncio.Future[Outcome]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def record(self, report: Incoming) -> Outcome:
        """The report's outcome once it is stored (or found to change nothing); raises what
        storing its batch raised."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((report, done))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_all(), name="fault-writer")
        return await done

    async def _write_all(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                outcomes = await self._store.record_faults([report for report, _ in batch])
            except Exception as e:  # each request answers 500; the hubs send them again
                log.exception("storing %d fault report(s) failed", len(batch))
                for _, done in batch:
                    if not done.done():
                        done.set_exception(e)
                continue
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if not done.done():  # a request whose client went away was cancelled
                    done.set_result(outcome)
