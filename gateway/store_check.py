"""Is the hub's store file sound, and where does a damaged one go: the decisions behind
`gateway.store.HubStore`'s check at start. Pure but for reading a file's size and header.

"First start" and "store emptied" look alike to SQLite (no file, or an empty one, is a new
database), so the hub keeps a small marker beside its store (``hub.db.marker``), written once
the store has opened sound: a marker without its store, or with an empty one, means a store
that held alarms is gone, which is reported like a damaged one. A store and no marker is a
store of an older CareHub, adopted as is (the marker is written then).

A damaged store is never deleted: it and its ``-wal``/``-shm`` files are renamed with the
time and the reason, for an installer to look at or recover from.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")
"""SQLite's companions of a database file; moved aside with it."""


class StoreProblem(enum.StrEnum):
    """Why a store was set aside (the key in the log line and the fault's detail)."""

    MISSING = "missing"  # the marker says a store existed; the file is gone
    EMPTY = "empty"  # the file is there, zero bytes long
    NOT_SQLITE = "not_sqlite"  # no SQLite header: random bytes, another file, a bad header
    MALFORMED = "malformed"  # SQLite says so: quick_check failed or a read raised


def marker_path(store: Path) -> Path:
    return store.with_name(store.name + ".marker")


def file_problem(store: Path) -> StoreProblem | None:
    """What the file alone shows to be wrong, before SQLite opens it (which would take an
    empty file for a new database, and fail later and less clearly on a bad header)."""
    expected = marker_path(store).exists()
    if not store.exists():
        return StoreProblem.MISSING if expected else None
    size = store.stat().st_size if store.is_file() else -1
    if size == 0:
        return StoreProblem.EMPTY if expected else None
    if size < 0:
        return StoreProblem.NOT_SQLITE  # a directory or device where the store should be
    with store.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    return None if header == SQLITE_HEADER else StoreProblem.NOT_SQLITE


def aside_name(path: Path, problem: StoreProblem, now: datetime) -> Path:
    """``hub.db`` → ``hub.db.damaged-20261206T142700Z-malformed`` (and the same suffix on
    ``hub.db-wal``), so a store set aside twice in one second keeps both copies apart by
    the caller's collision check."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return path.with_name(f"{path.name}.damaged-{stamp}-{problem}")


def files_to_move(store: Path) -> list[Path]:
    """The store and its companions that exist (never the marker: it stays to say a store
    is expected here)."""
    candidates = [store, *(store.with_name(store.name + s) for s in SIDE_FILES)]
    return [p for p in candidates if p.exists() or p.is_symlink()]
