"""Everything a request handler may touch, built once per server process."""

from __future__ import annotations

from dataclasses import dataclass, field

from carehub.clock import Clock
from carehub.settings import ServerSettings
from server.change_signal import ChangeSignal
from server.dispatch.escalator import Escalator
from server.dispatch.service import DispatchService
from server.dispatch.store import DispatchStore
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
    service: DispatchService = field(init=False)
    """What the routes call to move an alarm (`server.dispatch.service`)."""

    def __post_init__(self) -> None:
        self.service = DispatchService(
            self.store, self.dispatch, self.escalator, self.changes, self.clock
        )
