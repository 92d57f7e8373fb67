"""Everything a request handler may touch, built once per server process."""

from __future__ import annotations

from dataclasses import dataclass

from carehub.clock import Clock
from carehub.settings import ServerSettings
from server.change_signal import ChangeSignal
from server.dispatch_store import DispatchStore
from server.escalator import Escalator
from server.fault_writer import FaultWriter
from server.heartbeats import HeartbeatWriter
from server.store import ServerStore


@dataclass
class ServerRuntime:
    settings: ServerSettings
    store: ServerStore
    dispatch: DispatchStore
    escalator: Escalator
    changes: ChangeSignal
    clock: Clock
    heartbeats: HeartbeatWriter
    faults: FaultWriter
