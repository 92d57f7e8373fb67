"""Everything a request handler may touch, built once per server process."""

from __future__ import annotations

from dataclasses import dataclass

from carehub.clock import Clock
from carehub.settings import ServerSettings
from server.change_signal import ChangeSignal
from server.dispatcher import Dispatcher
from server.store import ServerStore


@dataclass
class ServerRuntime:
    settings: ServerSettings
    store: ServerStore
    dispatcher: Dispatcher
    changes: ChangeSignal
    clock: Clock
