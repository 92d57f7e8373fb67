"""Wakes long-polling hubs when any alarm state changes in this process.

Other server processes' changes are seen by the long-poll's periodic re-check, so the
elder's feedback stays within ~1 s even with several workers on PostgreSQL.
"""

from __future__ import annotations

import asyncio


class ChangeSignal:
    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self.version = 0

    async def notify(self) -> None:
        async with self._cond:
            self.version += 1
            self._cond.notify_all()

    async def wait(self, seen_version: int, timeout_s: float) -> int:
        """Return once the version moved past `seen_version`, or after `timeout_s`."""
        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self.version != seen_version), timeout_s
                )
            except TimeoutError:
                pass
            return self.version
