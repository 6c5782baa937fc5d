"""A claim never waits behind a row another transaction holds locked: it takes the next one.

One connection locks the first PENDING item in claim order inside an open
transaction (as a concurrent claimer or an admin update would); ``claim_next`` on
the store's own connections must return the next eligible item at once. A claim
that locked without ``SKIP LOCKED`` would wait for that transaction, so every wait
here is bounded and the test fails instead of hanging.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from psycopg import sql

from pg_support import connect, fresh_postgres_store
from workqueue_core.domain.models import Agent, Targeting, WorkItem, WorkStatus
from workqueue_core.testing import EPOCH, SequentialIds

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("limit", [1, 2])
async def test_claim_next_passes_a_row_locked_by_another_transaction(limit: int) -> None:
    ids = SequentialIds()
    agent = Agent(ids(), "a", EPOCH, labels={"pool": "p"})
    first, second = (
        WorkItem(ids(), "job", "{}", Targeting.labels("pool=p"), EPOCH + timedelta(seconds=s))
        for s in (0, 1)
    )
    async with fresh_postgres_store() as store:
        await store.register_agent(agent)
        for item in (first, second):
            await store.submit(item, "test", EPOCH)
        locker = await connect()
        try:
            async with locker.transaction():
                await locker.execute(
                    sql.SQL("SELECT 1 FROM {}.work_queue WHERE id = %s FOR UPDATE").format(
                        sql.Identifier(store.schema)
                    ),
                    (first.id,),
                )
                with anyio.fail_after(10):
                    claimed = await store.claim_next(agent.id, EPOCH, None, limit)
                assert [i.id for i in claimed] == [second.id]
                assert claimed[0].status is WorkStatus.CLAIMED
        finally:
            await locker.close()
        # Once the lock is gone the first item is claimable as usual.
        with anyio.fail_after(10):
            (after,) = await store.claim_next(agent.id, EPOCH, None, limit)
        assert after.id == first.id
