"""Running the server process: migrate, load the directory, serve HTTP with uvicorn."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from carehub.settings import ServerSettings, proxy_list
from server.app import create_app
from server.db import make_engine, migrate
from server.directory import DirectoryError, load_directory, read_directory
from server.http_limits import HttpLimits, bounded_protocol
from server.sealed import Sealer

log = logging.getLogger(__name__)


async def prepare_database(settings: ServerSettings, directory: Path | None) -> None:
    engine = make_engine(
        settings.database_url,
        settings.sqlite_synchronous,
        settings.pg_pool_size,
        settings.pg_max_overflow,
    )
    try:
        await migrate(engine)
        if directory is not None:
            sealer = _sealer(settings)
            await load_directory(engine, read_directory(directory), sealer)
            log.info("directory %s loaded", directory)
    finally:
        await engine.dispose()


def _sealer(settings: ServerSettings) -> Sealer | None:
    if settings.secret_key is None:
        return None
    try:
        return Sealer(settings.secret_key.get_secret_value())
    except ValueError as e:
        raise DirectoryError(str(e)) from None


class _Server(uvicorn.Server):
    """uvicorn, saying where it listens, and ending quietly on SIGTERM/SIGINT: the signal
    means "stop", already done once `serve` returns, so it is not raised again."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    log.info("listening on http://%s:%d", host, port)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", [])
            if captured:
                log.info("stopped (signal %d)", int(captured[-1]))
                captured.clear()


def http_limits(settings: ServerSettings) -> HttpLimits:
    return HttpLimits(
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
        max_header_bytes=settings.http_max_header_bytes,
        max_body_bytes=settings.http_max_body_bytes,
    )


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
        http=bounded_protocol(http_limits(settings)),
        # X-Forwarded-For only from the configured proxies (uvicorn's default trusts any
        # local peer): the client address is what enrollment and login limits count
        proxy_headers=bool(proxy_list(settings.trusted_proxies)),
        forwarded_allow_ips=proxy_list(settings.trusted_proxies) or None,
        timeout_keep_alive=settings.http_keep_alive_s,  # type: ignore[arg-type]  # a float works
    )
    await _Server(config).serve()
