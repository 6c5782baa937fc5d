"""The PostgreSQL store's caches of decoded targetings are bounded: with more distinct
targetings than they hold, items still read back whole and claims still route."""

from __future__ import annotations

import anyio
import pytest

from pg_support import connect, fresh_postgres_store
from workqueue_core._stored import BoundedCache
from workqueue_core.domain.models import Agent, Targeting, WorkItem, WorkQuery
from workqueue_core.testing.clock import EPOCH, SequentialIds
from workqueue_postgres import PostgresStore, codec
from workqueue_postgres.store import TARGET_CACHE_SIZE

pytestmark = pytest.mark.anyio


def shrink_caches(store: PostgresStore, size: int) -> None:
    store._targets = BoundedCache(size)
    store._target_ids = BoundedCache(size)


async def test_more_targetings_than_the_cache_holds_read_back_whole() -> None:
    new_id = SequentialIds()
    targetings = [Targeting.labels(f"zone=z{n}") for n in range(6)] + [Targeting.everyone()]
    with anyio.fail_after(60):
        async with fresh_postgres_store() as store:
            shrink_caches(store, 2)
            agent = Agent(id=new_id(), name="z3", registered_at=EPOCH, labels={"zone": "z3"})
            await store.register_agent(agent)
            items = [
                WorkItem(id=new_id(), work_type="t", spec=str(n), targeting=t, created_at=EPOCH)
                for n, t in enumerate(targetings)
            ]
            for item in items:
                await store.submit(item, "admin", EPOCH)
            listed = await store.query(WorkQuery(limit=100))
            assert {(i.spec, i.targeting) for i in listed} == {(i.spec, i.targeting) for i in items}
            assert len(store._targets) <= 2 and len(store._target_ids) <= 2
            claimed = await store.claim_next(agent.id, EPOCH, ["t"], 10)
            assert sorted(i.spec for i in claimed) == ["3", "6"]
            # an old targeting, gone from the cache, finds its row instead of adding one
            again = WorkItem(
                id=new_id(), work_type="t", spec="again", targeting=targetings[0], created_at=EPOCH
            )
            await store.submit(again, "admin", EPOCH)
            async with await connect() as conn:
                cursor = await conn.execute(f"SELECT count(*) FROM {store.schema}.work_targets")
                assert await cursor.fetchone() == (len(targetings),)
            [stored] = [i for i in await store.query(WorkQuery(limit=100)) if i.spec == "again"]
            assert stored.targeting == targetings[0]


def test_the_caches_have_a_bound() -> None:
    assert TARGET_CACHE_SIZE == 4096
    assert codec._POLICIES.size == 4096
