"""Process-wide logging: one line per event, with the component name.

Libraries that log every request at INFO (the Twilio SDK logs each API call's method, URL,
headers and response code; httpx each request) are held at WARNING unless the process runs
at DEBUG, so a server's log is its own events.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

NOISY = ("httpx", "httpcore", "amqtt", "transitions", "aiosqlite")
CHATTY_AT_INFO = ("twilio",)
"""Quiet at INFO, shown at DEBUG."""


def setup(level: str = "INFO", component: str = "", file: Path | None = None) -> None:
    """Log to stderr, or to `file` (reopened when logrotate has moved it: no signal and no
    copytruncate needed)."""
    prefix = f"{component} " if component else ""
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler: logging.Handler = (
        logging.handlers.WatchedFileHandler(file, encoding="utf-8")
        if file is not None
        else logging.StreamHandler(sys.stderr)
    )
    logging.basicConfig(
        level=numeric,
        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
        handlers=[handler],
        force=True,
    )
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for chatty in CHATTY_AT_INFO:
        logging.getLogger(chatty).setLevel(
            logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
        )
