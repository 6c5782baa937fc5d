"""The SQLite store against the conformance suite (CI profile: 200 examples × 50 steps).

Every example gets a fresh database file in its own temporary directory, opened
with the default settings (WAL, synchronous=FULL), so the suite exercises the
same code path as the broker.

The directory is on tmpfs (``/dev/shm``) when the machine has one: the same
files, the same SQLite code path and settings, but an ``fsync`` there returns at
once instead of waiting for the disk (a third of this test's time before). The
suite checks what the store returns, which does not depend on the disk; durability
is tested on a real disk (``test_sqlite_durability.py``).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from workqueue_core.ports import Store
from workqueue_core.testing import conformance_test_case
from workqueue_sqlite import SqliteStore

TMPFS = Path("/dev/shm")


def _scratch_root() -> str | None:
    """tmpfs when there is a writable one, else the default temporary directory."""
    try:
        with tempfile.TemporaryDirectory(dir=TMPFS):
            return str(TMPFS)
    except OSError:
        return None


SCRATCH = _scratch_root()


@asynccontextmanager
async def fresh_sqlite_store() -> AsyncIterator[Store]:
    with tempfile.TemporaryDirectory(prefix="wq-sqlite-", dir=SCRATCH) as directory:
        async with await SqliteStore.open(
            Path(directory) / "conformance.db", random_source=lambda: 0.0
        ) as store:
            yield store


TestSqliteStoreConformance = conformance_test_case(fresh_sqlite_store)
TestSqliteStoreConformance = pytest.mark.slow(TestSqliteStoreConformance)
