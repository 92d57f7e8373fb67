"""The cache of hub identities by token hash (`server.hub_identities`), on a fake clock:
trusted for `ttl_s` after a version check, cleared when the version moves or a write of
this process commits, bounded, and never remembering an unknown token."""

from __future__ import annotations

from carehub.clock import FakeClock
from server.hub_identities import HubIdentities, HubIdentity

HUB = HubIdentity("hub-1", "elder-1", "home-1")


def _cache(clock: FakeClock, max_entries: int = 10) -> HubIdentities:
    return HubIdentities(clock, ttl_s=1.0, max_entries=max_entries)


def test_a_hub_read_once_is_served_from_memory_until_the_ttl() -> None:
    clock = FakeClock()
    cache = _cache(clock)
    assert cache.get("h1") is None  # never read
    cache.learn(cache.begin(), 7, "h1", HUB)
    assert cache.get("h1") == HUB
    clock.advance(0.9)
    assert cache.get("h1") == HUB
    clock.advance(0.2)
    assert cache.get("h1") is None  # due for a version check: the caller reads again


def test_the_same_version_keeps_the_entries_and_another_clears_them() -> None:
    clock = FakeClock()
    cache = _cache(clock)
    cache.learn(cache.begin(), 7, "h1", HUB)
    other = HubIdentity("hub-2", "elder-2", "home-2")
    clock.advance(1.5)
    cache.learn(cache.begin(), 7, "h2", other)  # a check: nothing changed
    assert (cache.get("h1"), cache.get("h2")) == (HUB, other)
    clock.advance(1.5)
    cache.learn(cache.begin(), 8, "h2", other)  # another process changed a hub
    assert cache.get("h1") is None  # e.g. revoked: must be read again
    assert cache.get("h2") == other  # read with the new version: kept


def test_an_unknown_token_is_never_kept() -> None:
    clock = FakeClock()
    cache = _cache(clock)
    cache.learn(cache.begin(), 7, "nope", None)
    assert cache.get("nope") is None and len(cache) == 0


def test_a_clear_takes_effect_at_once_and_drops_reads_in_flight() -> None:
    clock = FakeClock()
    cache = _cache(clock)
    cache.learn(cache.begin(), 7, "h1", HUB)
    before = cache.begin()  # a read that started before this process's write committed
    cache.clear()  # the write committed (same version as far as that read knows)
    assert cache.get("h1") is None
    cache.learn(before, 7, "h1", HUB)
    assert cache.get("h1") is None  # not kept: it may predate the write
    cache.learn(cache.begin(), 8, "h1", HUB)  # read after the write: kept
    assert cache.get("h1") == HUB


def test_the_least_recently_used_entries_go_first() -> None:
    clock = FakeClock()
    cache = _cache(clock, max_entries=2)
    hubs = {f"h{i}": HubIdentity(f"hub-{i}", "elder-1") for i in range(3)}
    cache.learn(cache.begin(), 7, "h0", hubs["h0"])
    cache.learn(cache.begin(), 7, "h1", hubs["h1"])
    assert cache.get("h0") == hubs["h0"]  # used: h1 is now the oldest
    cache.learn(cache.begin(), 7, "h2", hubs["h2"])
    assert len(cache) == 2
    assert cache.get("h1") is None
    assert (cache.get("h0"), cache.get("h2")) == (hubs["h0"], hubs["h2"])


def test_a_zero_ttl_reads_every_time() -> None:
    clock = FakeClock()
    cache = HubIdentities(clock, ttl_s=0)
    cache.learn(cache.begin(), 7, "h1", HUB)
    assert cache.get("h1") is None
