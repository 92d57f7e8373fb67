"""`DeliveryMemory`: a floor of each message's status rank, bounded."""

from __future__ import annotations

from server.dispatch.delivery_memory import DeliveryMemory


def test_a_callback_at_or_below_a_known_rank_changes_nothing() -> None:
    memory = DeliveryMemory()
    memory.note(["a", "b"], 3)
    assert memory.changes_nothing(["a"], 0)
    assert memory.changes_nothing(["a", "b"], 3)
    assert not memory.changes_nothing(["a"], 4)  # delivered: the database decides


def test_an_unknown_message_is_left_to_the_database() -> None:
    memory = DeliveryMemory()
    memory.note(["a"], 5)
    assert not memory.changes_nothing(["a", "z"], 0)
    assert not memory.changes_nothing([], 0)  # a callback naming none: by its provider ref


def test_a_rank_never_falls() -> None:
    memory = DeliveryMemory()
    memory.note(["a"], 4)
    memory.note(["a"], 3)
    assert memory.changes_nothing(["a"], 4)


def test_the_oldest_are_forgotten_beyond_the_bound() -> None:
    memory = DeliveryMemory(kept=2)
    memory.note(["a"], 3)
    memory.note(["b"], 3)
    memory.note(["a"], 3)  # seen again: the newest
    memory.note(["c"], 3)
    assert memory.changes_nothing(["a", "c"], 3)
    assert not memory.changes_nothing(["b"], 3)


def test_all_known_means_every_message_was_seen_here() -> None:
    memory = DeliveryMemory()
    memory.note(["a", "b"], 3)
    assert memory.all_known(["a", "b"])
    assert not memory.all_known(["a", "z"])
    assert not memory.all_known([])
