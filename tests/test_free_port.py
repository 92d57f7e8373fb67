"""`harness.spawned.free_port`: a port for a server the tests start, out of the kernel's
ephemeral range (where any outgoing connection may take it first) and, in a parallel run,
out of each worker's own slice."""

from __future__ import annotations

import socket

import pytest

from harness import spawned
from harness.spawned import PORTS_FROM, free_port


def test_a_port_below_the_ephemeral_range_that_nothing_listens_on() -> None:
    low = spawned._ephemeral_low()
    if low is None:
        pytest.skip("this kernel leaves no room below its ephemeral range")
    port = free_port()
    assert PORTS_FROM <= port < low
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free


def test_parallel_workers_take_from_their_own_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = range(20000, 20300)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(set(spawned._slice(ports)))
    assert [len(s) for s in slices] == [100, 100, 100]
    assert not (slices[0] & slices[1] or slices[1] & slices[2] or slices[0] & slices[2])
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert spawned._slice(ports) == ports


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    if spawned._ephemeral_low() is None:
        pytest.skip("this kernel leaves no room below its ephemeral range")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        offered = [taken, free_port()]
        monkeypatch.setattr(spawned.random, "sample", lambda _ports, _k: offered)
        assert free_port() == offered[1]
