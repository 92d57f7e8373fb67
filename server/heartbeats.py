"""Hub heartbeats, written behind: many hubs' beats in one transaction.

10 000 hubs beating every minute are 170 requests a second, each of which used to be its
own commit: the bulk of a city server's writes, for a value nobody reads before the next
beat. A heartbeat is not an alarm (a lost one is replaced by the next, and the offline
watch allows minutes), so the request is answered at once and the latest beat of each hub
is stored with the others every `flush_s`; a hub that came back online is logged and put
on the health board then.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.change_signal import HEALTH_KEY, ChangeSignal
from server.store import ServerStore

log = logging.getLogger(__name__)


class HeartbeatWriter:
    def __init__(self, store: ServerStore, changes: ChangeSignal, flush_s: float = 0.5) -> None:
        self._store = store
        self._changes = changes
        self._flush_s = flush_s
        self._pending: dict[str, tuple[int, dict[str, Any]]] = {}
        self._due = asyncio.Event()

    def note(self, hub_id: str, now_ms: int, health: dict[str, Any]) -> None:
        """Keep the hub's latest beat for the next flush (an earlier one is replaced)."""
        self._pending[hub_id] = (now_ms, health)
        self._due.set()

    async def flush(self) -> list[str]:
        """Store the beats noted so far; the hubs that came back online."""
        beats, self._pending = self._pending, {}
        if not beats:
            return []
        try:
            back = await self._store.record_heartbeats(beats)
        except Exception:
            for hub_id, beat in beats.items():  # kept for the next try, unless newer came
                self._pending.setdefault(hub_id, beat)
            raise
        for hub_id in back:
            log.info("hub %s online", hub_id)
        if back:
            await self._changes.notify(HEALTH_KEY)
        return back

    async def run(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            await asyncio.sleep(self._flush_s)  # let the beats of this interval gather
            try:
                await self.flush()
            except Exception:
                log.exception("storing heartbeats failed; retrying")
                self._due.set()
