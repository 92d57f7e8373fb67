"""Wakes a hub's long-poll when one of its alarms changes state in this process.

Keyed by hub: a change wakes only the long-poll of the hub it concerns, which then reads the
database. (Waking every long-poll on every change cost one query per connected hub for each
change; with 100 hubs that starved the dispatcher, see docs/benchmarks.md.) Other server
processes' changes are seen by the long-poll's periodic re-check, so the elder's feedback
stays within ~1 s even with several workers on PostgreSQL.
"""

from __future__ import annotations

import asyncio


class ChangeSignal:
    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._conds: dict[str, asyncio.Condition] = {}

    def version(self, hub_id: str) -> int:
        """How many changes of this hub's alarms were signalled so far."""
        return self._versions.get(hub_id, 0)

    async def notify(self, hub_id: str) -> None:
        self._versions[hub_id] = self.version(hub_id) + 1
        cond = self._conds.get(hub_id)
        if cond is not None:
            async with cond:
                cond.notify_all()

    async def wait(self, hub_id: str, seen_version: int, timeout_s: float) -> int:
        """Return once this hub's version moved past `seen_version`, or after `timeout_s`."""
        cond = self._conds.setdefault(hub_id, asyncio.Condition())
        async with cond:
            try:
                await asyncio.wait_for(
                    cond.wait_for(lambda: self.version(hub_id) != seen_version), timeout_s
                )
            except TimeoutError:
                pass
            return self.version(hub_id)
