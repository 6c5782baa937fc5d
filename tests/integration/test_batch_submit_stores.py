"""Batch submits on the stores that store a batch in one transaction (SQLite, PostgreSQL).

``BrokerService.submit_many`` hands the accepted requests to the store's
``submit_many`` (one transaction, one commit) and must answer exactly as one
``submit`` per request would: in order, refusals standing alone, idempotency keys
answered by the item that holds them (also one stored earlier in the same batch),
one ``submitted`` event per new item. The store's bulk path is all or nothing: an
id that exists refuses the whole batch, and the service then submits one by one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID

import pytest

from pg_support import fresh_postgres_store
from workqueue_core.domain.errors import InvalidInput
from workqueue_core.domain.models import (
    SubmitRequest,
    SubmitResult,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.ports import BatchSubmitStore, Store
from workqueue_core.service.broker import BrokerService
from workqueue_core.testing import EPOCH, FakeClock, SequentialIds, SequentialTokens
from workqueue_sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    if kind == "sqlite":
        async with await SqliteStore.open(tmp_path / "batch.db") as store:
            yield store
    else:
        async with fresh_postgres_store(random_source=lambda: 0.0) as store:
            yield store


def work(spec: str, **fields: object) -> SubmitRequest:
    values: dict[str, object] = {
        "work_type": "test",
        "spec": spec,
        "targeting": Targeting.everyone(),
    }
    values.update(fields)
    return SubmitRequest(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_batch_answers_as_one_submit_per_entry_would(kind: str, tmp_path: Path) -> None:
    async with _store(kind, tmp_path) as store:
        assert isinstance(store, BatchSubmitStore)
        service = BrokerService(store, FakeClock(), SequentialIds(), SequentialTokens())
        first = (await service.submit(work("earlier", idempotency_key="k-1"))).item
        answers = await service.submit_many(
            [
                work("one"),
                work("bad", work_type=""),  # refused on its own
                work("again", idempotency_key="k-1"),  # the original answers
                work("held", requires_approval=True),
                work("three", idempotency_key="k-2"),
                work("three again", idempotency_key="k-2"),  # taken in this very batch
            ],
            actor="admin",
        )
        assert isinstance(answers[1], InvalidInput)
        results = [a for a in answers if isinstance(a, SubmitResult)]
        assert len(results) == 5
        assert [r.created for r in results] == [True, False, True, True, False]
        assert [r.item.spec for r in results] == ["one", "earlier", "held", "three", "three"]
        assert results[1].item.id == first.id
        assert results[4].item.id == results[3].item.id
        assert results[2].item.status is WorkStatus.HELD
        queued = {i.id: i for i in await store.query(WorkQuery(limit=100))}
        assert sorted(i.spec for i in queued.values()) == ["earlier", "held", "one", "three"]
        for result in results:
            assert queued[result.item.id] == result.item
            events = await store.events(result.item.id)
            assert [(e.from_status, e.to_status, e.detail) for e in events] == [
                (None, result.item.status, "submitted")
            ]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_the_bulk_path_is_all_or_nothing_and_the_service_falls_back(
    kind: str, tmp_path: Path
) -> None:
    async with _store(kind, tmp_path) as store:
        assert isinstance(store, BatchSubmitStore)
        ids = SequentialIds()
        taken = UUID(int=2)  # the id the service will give the batch's second entry
        await store.submit(
            WorkItem(taken, "test", "already here", Targeting.everyone(), EPOCH), "admin", EPOCH
        )
        fresh = WorkItem(UUID(int=99), "test", "fresh", Targeting.everyone(), EPOCH)
        dup = WorkItem(taken, "test", "dup", Targeting.everyone(), EPOCH)
        with pytest.raises(InvalidInput):
            await store.submit_many([fresh, dup], "admin", EPOCH)
        assert await store.get(fresh.id) is None  # nothing of the batch was stored

        service = BrokerService(store, FakeClock(), ids, SequentialTokens())
        answers = await service.submit_many([work("a"), work("b"), work("c")])
        assert isinstance(answers[1], InvalidInput)
        assert [a.item.spec for a in answers if isinstance(a, SubmitResult)] == ["a", "c"]
        stored = await store.get(taken)
        assert stored is not None and stored.spec == "already here"
