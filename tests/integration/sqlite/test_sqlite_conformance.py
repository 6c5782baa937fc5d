"""The SQLite store against the conformance suite (CI profile: 200 examples × 50 steps).

Every example gets a fresh database file in its own temporary directory, opened
with the default settings (WAL, synchronous=FULL), so the suite exercises the
same code path as the broker.
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


@asynccontextmanager
async def fresh_sqlite_store() -> AsyncIterator[Store]:
    with tempfile.TemporaryDirectory(prefix="wq-sqlite-") as directory:
        async with await SqliteStore.open(
            Path(directory) / "conformance.db", random_source=lambda: 0.0
        ) as store:
            yield store


TestSqliteStoreConformance = conformance_test_case(fresh_sqlite_store)
TestSqliteStoreConformance = pytest.mark.slow(TestSqliteStoreConformance)
