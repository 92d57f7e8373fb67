"""Which hub a bearer token is, kept in memory so a heartbeat skips the SQL read.

Every hub request is authenticated; at 10 000 hubs that read was most of a heartbeat's
cost. The cache maps a token's SHA-256 to its `HubIdentity` and is trusted only while the
database's `hubs_version` (bumped by triggers on any change of a hub's token, elder or
household, or its deletion: migration 0018) is known to be unchanged:

- a write of this process clears it after its commit (`clear`): at once, here;
- another process's write is seen at the first lookup `ttl_s` after the last check, which
  reads the version again and clears everything when it moved. So a revoked or replaced
  token keeps working on other processes for at most about `ttl_s` (docs/operations.md).

Only hits are kept: an unknown token is read every time (the caller notes a revoked hub
still calling), and never remembered as anything.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from carehub.clock import Clock

MAX_ENTRIES = 50_000
"""Tokens remembered per process (least recently used dropped first): a district's
10 000 hubs with room to spare, a few MB at most."""


@dataclass(frozen=True)
class HubIdentity:
    hub_id: str
    elder_id: str
    household_id: str | None = None


@dataclass(frozen=True)
class Lookup:
    """A lookup that went to the database: started at `generation` and `at` (monotonic s).
    Its result may be kept only if no clear happened meanwhile."""

    generation: int
    at: float


class HubIdentities:
    """Token hash → `HubIdentity`, bounded (LRU), valid while `hubs_version` stands."""

    def __init__(self, clock: Clock, ttl_s: float = 1.0, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[str, HubIdentity] = OrderedDict()
        self._version: int | None = None
        self._checked_at = float("-inf")
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> HubIdentity | None:
        """The cached identity, or None: not cached, or the version is due for a check
        (then the caller reads the hub and the version: `begin` … `learn`)."""
        if self._clock.monotonic() - self._checked_at >= self._ttl_s:  # 0: never trusted
            return None
        hub = self._entries.get(digest)
        if hub is not None:
            self._entries.move_to_end(digest)
        return hub

    def begin(self) -> Lookup:
        """Before reading the database: what `learn` needs to tell whether it is stale."""
        return Lookup(self._generation, self._clock.monotonic())

    def learn(self, lookup: Lookup, version: int, digest: str, hub: HubIdentity | None) -> None:
        """What one read found: `hub` for `digest` (None: unknown, not kept) and the
        `hubs_version` read in the same statement. A version other than the known one
        clears everything; a lookup that overlapped a clear keeps nothing."""
        if lookup.generation != self._generation:
            return  # a write committed meanwhile: this read may predate it
        if version != self._version:
            self.clear()
            self._version = version
        self._checked_at = max(self._checked_at, lookup.at)
        if hub is None:
            return
        self._entries[digest] = hub
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every identity (after a committed change to hubs): the next lookup of
        each token reads the database, and a read in flight is not kept."""
        self._entries.clear()
        self._version = None
        self._checked_at = float("-inf")
        self._generation += 1
