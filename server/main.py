"""Running the server process: migrate, load the directory, serve HTTP with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from carehub.settings import ServerSettings
from server.app import create_app
from server.db import make_engine, migrate
from server.directory import load_directory, read_directory

log = logging.getLogger(__name__)


async def prepare_database(settings: ServerSettings, directory: Path | None) -> None:
    engine = make_engine(settings.database_url, settings.sqlite_synchronous)
    try:
        await migrate(engine)
        if directory is not None:
            await load_directory(engine, read_directory(directory))
            log.info("directory %s loaded", directory)
    finally:
        await engine.dispose()


async def serve(settings: ServerSettings, directory: Path | None = None) -> None:
    await prepare_database(settings, directory)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    await uvicorn.Server(config).serve()
