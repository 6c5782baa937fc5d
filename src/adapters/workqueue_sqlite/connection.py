"""Opening the SQLite database: the connection's pragmas, and migrations.

A store's connection runs in WAL mode with the chosen ``synchronous`` level,
foreign keys on, a busy timeout and a rarer WAL checkpoint than SQLite's default.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Final, Literal

import anyio
import anyio.to_thread

from workqueue_core.domain.errors import StoreUnavailable
from workqueue_sqlite.errors import unavailable
from workqueue_sqlite.schema import apply_migrations, check_version

Synchronous = Literal["NORMAL", "FULL"]

DEFAULT_BUSY_TIMEOUT: Final = 5.0
"""Seconds a statement waits for another connection's lock before giving up."""

WAL_AUTOCHECKPOINT_PAGES: Final = 10_000
"""WAL pages (about 40 MB) after which a commit copies the WAL back into the database.

SQLite's default, 1,000, checkpointed every few batches of claims and completions;
a tenth as often, the HTTP benchmark's SQLite rounds ran 14-24 % faster."""


def connect(path: str, synchronous: Synchronous, busy_timeout: float) -> sqlite3.Connection:
    """A connection to ``path`` with the store's pragmas (blocking)."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if path != ":memory:" and str(mode).lower() != "wal":
            raise StoreUnavailable(f"the SQLite database {path} cannot use WAL mode ({mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    except BaseException:
        conn.close()
        raise
    return conn


def open_database(
    path: str, synchronous: Synchronous, busy_timeout: float, migrate: bool
) -> sqlite3.Connection:
    """``connect``, then migrate the schema or check its version (blocking); failures
    as the core's errors."""
    try:
        conn = connect(path, synchronous, busy_timeout)
    except sqlite3.Error as error:
        raise unavailable(error, path) from error
    try:
        if migrate:
            apply_migrations(conn)
        else:
            check_version(conn)
    except sqlite3.Error as error:
        conn.close()
        raise unavailable(error, path) from error
    except BaseException:
        conn.close()
        raise
    return conn


async def migrate(
    path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> int:
    """Create or upgrade the schema of the database at ``path``; returns its version.

    Idempotent; refuses (``SchemaMismatch``) a file written by a newer workqueue.
    """
    target = os.fspath(path)

    def run() -> int:
        try:
            conn = connect(target, "FULL", busy_timeout)
        except sqlite3.Error as error:
            raise unavailable(error, target) from error
        try:
            return apply_migrations(conn)
        except sqlite3.Error as error:
            raise unavailable(error, target) from error
        finally:
            conn.close()

    return await anyio.to_thread.run_sync(run)
