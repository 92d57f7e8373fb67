"""A private PostgreSQL for tests and benchmarks: `initdb` and `postgres` from the machine's
installation (Debian's /usr/lib/postgresql/<version>/bin), a cluster in a temporary
directory, listening on 127.0.0.1 at a free port with trust authentication, stopped and
deleted afterwards. Nothing touches a PostgreSQL the machine already runs.

PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres`` system
user (which Debian's package creates) and its processes run as that user."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.spawned import SpawnedServer

ENV_URL = "CAREHUB_TEST_PG"
"""A developer's own server (libpq URL of a database to connect to for CREATE DATABASE);
when set, tests and benchmarks use it instead of starting their own."""

MISSING = (
    "PostgreSQL is not installed: run `make test` (it installs it) or apt-get install postgresql"
)

NOT_DURABLE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
"""Settings of a test cluster: it is deleted afterwards, so a crash may lose it."""


def bindir() -> Path | None:
    """The directory of `initdb` and `postgres`: the newest Debian version, else PATH."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def tool(name: str) -> str:
    """A PostgreSQL client program (psql, pg_dump, ...) of the same installation."""
    found = bindir()
    if found is not None and (found / name).exists():
        return str(found / name)
    return shutil.which(name) or name


def _run_as() -> dict[str, Any]:
    """Popen arguments that drop root to the ``postgres`` user; nothing otherwise."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as"
            " (apt-get install postgresql creates it)"
        ) from None
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class Postgres(SpawnedServer):
    """A private PostgreSQL cluster; `admin_url` is its maintenance database (libpq URL).

    `durable` False (tests) turns fsync and synchronous commit off; benchmarks keep them on
    so their figures are those of a real server."""

    stop_signal = signal.SIGINT  # a fast shutdown: clients are disconnected
    stop_grace_s = 30.0

    def __init__(self, port: int | None = None, durable: bool = False) -> None:
        found = bindir()
        if found is None:
            raise FileNotFoundError(MISSING)
        super().__init__("carehub-postgres-", port)
        self.bindir = found
        self.durable = durable
        self.data = self.workdir / "data"
        self.log = self.workdir / "postgres.log"
        self._as = _run_as()
        if self._as:
            os.chown(self.workdir, self._as["user"], self._as["group"])

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _initdb(self) -> None:
        out = subprocess.run(
            [
                str(self.bindir / "initdb"),
                *("-D", str(self.data), "-U", "postgres", "--auth=trust"),
                *("-E", "UTF8", "--no-locale", "--no-sync"),
            ],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            timeout=120,
            **self._as,
        )
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stdout}{out.stderr}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        settings = [
            "listen_addresses=127.0.0.1",
            f"port={self.port}",
            f"unix_socket_directories={self.workdir}",
            *(() if self.durable else NOT_DURABLE),
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data)]
                + [arg for s in settings for arg in ("-c", s)],
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                **self._as,
            )
        self._wait_ready()
        return self.process

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until postmaster.pid says ``ready`` (what ``pg_ctl start -w`` waits for)."""
        deadline = time.monotonic() + timeout_s
        pidfile = self.data / "postmaster.pid"
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_tail()}")
            try:
                if re.search(r"^ready\s*$", pidfile.read_text(), re.MULTILINE):
                    return
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"postgres not ready after {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def psql(url: str, sql: str, check: bool = True) -> list[list[str]]:
    """Rows of `sql` (columns split at ``|``) through psql; `url` may name asyncpg."""
    url = url.replace("postgresql+asyncpg://", "postgresql://")
    out = subprocess.run(
        [tool("psql"), url, "-X", "-qtAF|", "-c", sql], capture_output=True, text=True, timeout=60
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return [line.split("|") for line in out.stdout.splitlines() if line]


def reachable(admin_url: str) -> bool:
    try:
        return bool(psql(admin_url, "select 1"))
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return False


def database_url(admin_url: str, name: str) -> str:
    """The SQLAlchemy (asyncpg) URL of database `name` on `admin_url`'s server."""
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


@contextmanager
def fresh_database(admin_url: str, prefix: str = "carehub_t_") -> Iterator[str]:
    """A new empty database on `admin_url`'s server (its asyncpg URL), dropped afterwards."""
    name = f"{prefix}{secrets.token_hex(5)}"
    psql(admin_url, f"CREATE DATABASE {name}")
    try:
        yield database_url(admin_url, name)
    finally:
        psql(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)


@contextmanager
def server(durable: bool = False) -> Iterator[str]:
    """The admin URL of a PostgreSQL to use: `CAREHUB_TEST_PG` when set, else a private
    one started here and stopped afterwards."""
    given = os.environ.get(ENV_URL)
    if given:
        if not reachable(given):
            raise RuntimeError(f"PostgreSQL not reachable at {ENV_URL}={given}")
        yield given
        return
    with Postgres(durable=durable) as pg:
        yield pg.admin_url


def available() -> bool:
    """Whether `server` can provide a PostgreSQL here."""
    given = os.environ.get(ENV_URL)
    return reachable(given) if given else bindir() is not None
