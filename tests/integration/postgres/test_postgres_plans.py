"""Hot statements keep their plans as the queue's history grows.

A completion must find its rows by primary key. When it could be answered from the
partial lease index instead, the planner took that index, whose dead entries (one
per completed claim until VACUUM) made every completion slower than the last. These
tests look at the plan and the schema, not at timings.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from pg_support import connect, fresh_postgres_store
from workqueue_core.models import Agent, Completion, Targeting, WorkItem
from workqueue_core.testing.clock import EPOCH, SequentialIds
from workqueue_postgres import PostgresStore

pytestmark = pytest.mark.anyio

HISTORY = 2_000
BATCH = 100


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def _history(store: PostgresStore, agent: Agent, new_id: SequentialIds) -> None:
    items = [
        WorkItem(
            id=new_id(),
            work_type="noop",
            spec="{}",
            targeting=Targeting.everyone(),
            created_at=EPOCH,
        )
        for _ in range(HISTORY + BATCH)
    ]
    await store.submit_many(items, "test", EPOCH)
    for _ in range(HISTORY // BATCH):
        claimed = await store.claim_next(agent.id, EPOCH, ["noop"], BATCH)
        done = await store.complete_many(
            [Completion(i.token, agent.id, None, 0) for i in claimed], EPOCH
        )
        assert len(done) == BATCH


async def test_complete_many_finds_rows_by_primary_key_after_a_long_history() -> None:
    new_id = SequentialIds(base=5_000_000)
    async with fresh_postgres_store() as store:
        agent = Agent(id=new_id(), name="a", registered_at=EPOCH)
        await store.register_agent(agent)
        await _history(store, agent, new_id)
        claimed = await store.claim_next(agent.id, EPOCH, ["noop"], BATCH)
        assert len(claimed) == BATCH
        params = {
            "ids": [i.id for i in claimed],
            "attempts": [i.attempt for i in claimed],
            "agents": [agent.id] * BATCH,
            "results": None,
            "local_retries": [0] * BATCH,
            "now": EPOCH,
        }
        async with await connect() as conn:
            cursor = await conn.execute("EXPLAIN (FORMAT JSON) " + store.sql.complete_many, params)
            row = await cursor.fetchone()
            await conn.rollback()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
        scans = {
            (n["Node Type"], n.get("Index Name"), n.get("Relation Name"))
            for n in _nodes(plan[0]["Plan"])
            if "Scan" in n["Node Type"]
        }
        indexes = {index for _, index, _ in scans if index is not None}
        assert "work_queue_lease" not in indexes, scans


async def test_only_claimed_rows_name_a_holder() -> None:
    new_id = SequentialIds(base=6_000_000)
    async with fresh_postgres_store() as store:
        item = WorkItem(
            id=new_id(),
            work_type="noop",
            spec="{}",
            targeting=Targeting.everyone(),
            created_at=EPOCH,
        )
        await store.submit(item, "test", EPOCH)
        async with await connect() as conn:
            with pytest.raises(psycopg.errors.CheckViolation, match="holder_iff_claimed"):
                await conn.execute(
                    f'UPDATE "{store.schema}".work_queue SET claimed_by = %s WHERE id = %s',
                    (new_id(), item.id),
                )
