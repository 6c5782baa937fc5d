"""The concurrent-claims scenario on the in-memory store: 8 claimers drain 2,000 items."""

from __future__ import annotations

import pytest

from workqueue_core.testing import assert_clean_drain, drain_concurrently
from workqueue_memory import MemoryStore

pytestmark = pytest.mark.anyio


async def test_eight_claimers_drain_every_item_exactly_once() -> None:
    report = await drain_concurrently(MemoryStore(), items=2000, claimers=8, batch=10)
    assert_clean_drain(report, 2000)
    assert sum(report.claims_per_claimer.values()) == 2000
