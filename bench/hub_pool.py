"""Many homes' hubs in one process, for benchmarks: ``python -m bench.hub_pool SPEC``.

A hundred ``carehub hub`` processes would spend the benchmark machine's cores on a hundred
Python interpreters. This runner starts one unmodified `gateway.hub.Hub` per entry of a JSON
spec in one asyncio loop. Each hub keeps everything a separate home has: its own store file,
MQTT client id, base topic, hub token and settings; they only share the loop. A hub that
fails is logged and started again after a second, so one home cannot take the others down.

SPEC is a JSON file ``{"log_level": "INFO", "hubs": [{<HubSettings fields>}, …]}``; it holds
hub tokens, so it is written with mode 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from carehub import logs
from carehub.settings import HubSettings

log = logging.getLogger(__name__)


def write_spec(path: Path, hubs: list[dict[str, Any]], log_level: str = "INFO") -> Path:
    """Write a pool spec (mode 0600: it holds hub tokens)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"log_level": log_level, "hubs": hubs}, f)
    return path


async def _supervise(settings: HubSettings) -> None:
    from gateway.hub import Hub

    while True:
        try:
            await Hub(settings).run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("hub %s failed; starting it again in 1 s", settings.mqtt_client_id)
        await asyncio.sleep(1.0)


async def run_pool(entries: list[dict[str, Any]]) -> None:
    tasks = [
        asyncio.create_task(_supervise(HubSettings(**entry)), name=entry["mqtt_client_id"])
        for entry in entries
    ]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, done.set)
    log.info("hub pool: %d hubs running", len(tasks))
    await done.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m bench.hub_pool SPEC.json")
    spec = json.loads(Path(args[0]).read_text())
    logs.setup(spec.get("log_level", "INFO"), "hub-pool")
    asyncio.run(run_pool(spec["hubs"]))


if __name__ == "__main__":
    main()
