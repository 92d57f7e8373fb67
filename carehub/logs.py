"""Process-wide logging: one line per event, with the component name."""

from __future__ import annotations

import logging
import sys


def setup(level: str = "INFO", component: str = "") -> None:
    prefix = f"{component} " if component else ""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "httpcore", "amqtt", "transitions", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
