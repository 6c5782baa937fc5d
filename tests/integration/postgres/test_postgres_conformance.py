"""The PostgreSQL store against the conformance suite, each example in a fresh schema.

Same profile as the in-memory store (200 examples × 50 steps), on a real server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from pg_support import fresh_postgres_store
from workqueue_core.ports import Store
from workqueue_core.testing import conformance_test_case


@asynccontextmanager
async def fresh_store() -> AsyncIterator[Store]:
    async with fresh_postgres_store(random_source=lambda: 0.0, max_size=4) as store:
        yield store


TestPostgresStoreConformance = conformance_test_case(fresh_store)
TestPostgresStoreConformance = pytest.mark.slow(TestPostgresStoreConformance)
