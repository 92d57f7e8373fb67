"""Publishing Home Assistant discovery and device states (`gateway.ha_discovery` decides
what). The hub notes changes without waiting; one loop publishes them, so nothing on the
alarm path ever waits for Home Assistant, and a broker that is away costs only a
republication of everything when it returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from gateway.ha_discovery import HaDiscovery, Publication

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
"""Publications kept while the broker is away; beyond, the oldest go (all is republished
after the reconnection anyway)."""


class Publisher(Protocol):
    connected: asyncio.Event
    connections: int

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> bool: ...


class HaBridge:
    def __init__(self, discovery: HaDiscovery, link: Publisher) -> None:
        self.discovery = discovery
        self.link = link
        self._pending: list[Publication] = []
        self._wake = asyncio.Event()
        self._connection_seen = -1
        self.published = 0

    def note(self, publications: list[Publication]) -> None:
        """Queue what `HaDiscovery` returned (never blocks)."""
        if publications:
            self._pending += publications
            del self._pending[:-MAX_PENDING]
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self.link.connected.wait()
            if self.link.connections != self._connection_seen:
                self._connection_seen = self.link.connections
                removals = [p for p in self._pending if not p.payload]  # not in everything()
                self._pending = removals + self.discovery.everything()
                log.info(
                    "home assistant discovery: %d devices under %s/",
                    len(self.discovery.devices),
                    self.discovery.prefix,
                )
            self._wake.clear()
            while self._pending:
                publication = self._pending[0]
                sent = await self.link.publish(
                    publication.topic, publication.payload, publication.qos, publication.retain
                )
                if not sent:  # the broker went away: everything again on return
                    break
                self._pending.pop(0)
                self.published += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 5.0)
