"""Running the hub process until SIGTERM/SIGINT, telling systemd about it when started by it."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import prometheus_client

from carehub.settings import HubSettings
from gateway.hub import Hub
from gateway.sd_notify import Notifier
from gateway.watchdog import report_to_systemd


async def run_hub(settings: HubSettings) -> None:
    if settings.metrics_port is not None:
        prometheus_client.start_http_server(settings.metrics_port, addr="127.0.0.1")
    hub = Hub(settings)
    notifier = Notifier()
    task = asyncio.create_task(hub.run())
    reporter = asyncio.create_task(report_to_systemd(hub, notifier))

    def stop() -> None:
        notifier.notify("STOPPING=1", "STATUS=stopping")
        reporter.cancel()
        task.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
