"""Running the hub process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import prometheus_client

from carehub.settings import HubSettings
from gateway.hub import Hub


async def run_hub(settings: HubSettings) -> None:
    if settings.metrics_port is not None:
        prometheus_client.start_http_server(settings.metrics_port, addr="127.0.0.1")
    hub = Hub(settings)
    task = asyncio.create_task(hub.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
