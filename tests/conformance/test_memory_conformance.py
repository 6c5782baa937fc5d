"""The in-memory store against the conformance suite (CI profile: 200 examples × 50 steps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from workqueue_core.ports import Store
from workqueue_core.testing import conformance_test_case
from workqueue_memory import MemoryStore


@asynccontextmanager
async def fresh_memory_store() -> AsyncIterator[Store]:
    yield MemoryStore(random_source=lambda: 0.0)


TestMemoryStoreConformance = conformance_test_case(fresh_memory_store)
TestMemoryStoreConformance = pytest.mark.slow(TestMemoryStoreConformance)
