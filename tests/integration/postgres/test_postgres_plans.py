"""Hot statements keep their plans as the queue's history grows.

A completion must find its rows by primary key. When it could be answered from the
partial lease index instead, the planner took that index, whose dead entries (one
per completed claim until VACUUM) made every completion slower than the last. These
tests look at the plan and the schema, not at timings.

Taking due callbacks must likewise read only the due deliveries: while a receiver
is down every delivery waits in backoff, and a pass of the delivery loop must cost
what it takes, not the backlog.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pg_support import connect, fresh_postgres_store
from workqueue_core.domain.models import Agent, Completion, Targeting, WorkItem
from workqueue_core.testing.clock import EPOCH, SequentialIds
from workqueue_postgres import PostgresStore

# serial: the plans are read after VACUUM, which removes nothing another session's open
# snapshot can still see (a parallel test's transaction would keep the dead entries).
pytestmark = [pytest.mark.anyio, pytest.mark.serial]

HISTORY = 2_000
BATCH = 100
CALLBACK_BACKLOG = 3_000
BACKLOG = 20_000
"""Pending items behind the history: with a few thousand the planner rightly reads the
small queue whole; the plan that matters is the one of a real backlog."""
DUE_NOW = 3


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _items(new_id: SequentialIds, count: int, callback_url: str | None = None) -> list[WorkItem]:
    return [
        WorkItem(
            id=new_id(),
            work_type="noop",
            spec="{}",
            targeting=Targeting.everyone(),
            created_at=EPOCH,
            callback_url=callback_url,
        )
        for _ in range(count)
    ]


async def _history(store: PostgresStore, agent: Agent, new_id: SequentialIds) -> None:
    items = _items(new_id, HISTORY + BATCH)
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
            "agent": None,
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


async def test_deliveries_in_backoff_are_not_read() -> None:
    new_id = SequentialIds(base=7_000_000)
    async with fresh_postgres_store() as store:
        agent = Agent(id=new_id(), name="a", registered_at=EPOCH)
        await store.register_agent(agent)
        items = _items(new_id, CALLBACK_BACKLOG, "http://127.0.0.1:9/hook")
        await store.submit_many(items, "test", EPOCH)
        while claimed := await store.claim_next(agent.id, EPOCH, ["noop"], 1000):
            await store.complete_many([Completion(i.token, agent.id) for i in claimed], EPOCH)
        later = EPOCH + timedelta(hours=1)
        due = sorted(i.id for i in items)[-DUE_NOW:]
        async with await connect() as conn:
            # every delivery in backoff (an hour ahead) but DUE_NOW of them
            await conn.execute(
                f'UPDATE "{store.schema}".work_execution_log SET callback_due_at = %s',
                (later,),
            )
            await conn.execute(
                f'UPDATE "{store.schema}".work_execution_log SET callback_due_at = %s '
                "WHERE id = ANY(%s)",
                (EPOCH, due),
            )
            await conn.commit()
            await conn.set_autocommit(True)  # VACUUM: the setup's own dead entries go
            await conn.execute(f'VACUUM ANALYZE "{store.schema}".work_execution_log')
            await conn.set_autocommit(False)
            params = {"now": EPOCH + timedelta(seconds=1), "limit": 100, "until": None}
            cursor = await conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + store.sql.callbacks_due, params
            )
            row = await cursor.fetchone()
            await conn.rollback()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
        scans = [
            n
            for n in _nodes(plan[0]["Plan"])
            if "Scan" in n["Node Type"] and n.get("Relation Name") == "work_execution_log"
        ]
        finding = [n for n in scans if n.get("Index Name") != "work_execution_log_pkey"]
        assert [n.get("Index Name") for n in finding] == ["work_execution_log_callback_due"]
        [scan] = finding
        assert scan["Actual Rows"] == DUE_NOW
        # a handful of index pages, not the backlog's (several hundred heap pages)
        assert scan["Shared Hit Blocks"] + scan.get("Shared Read Blocks", 0) < 20, scan
        taken = await store.callbacks_due(EPOCH + timedelta(seconds=1), 100)
        assert sorted(r.id for r in taken) == due
        assert all(r.item.callback_url == "http://127.0.0.1:9/hook" for r in taken)


async def _plan_scans(statement: str, params: dict[str, Any]) -> set[tuple[str, str | None, str]]:
    """(node type, index, relation) of every scan in the statement's plan (not run)."""
    async with await connect() as conn:
        cursor = await conn.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        row = await cursor.fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return {
        (n["Node Type"], n.get("Index Name"), n.get("Relation Name"))
        for n in _nodes(plan[0]["Plan"])
        if "Scan" in n["Node Type"]
    }


async def test_the_batch_path_reads_the_queue_and_log_by_index_after_a_long_history() -> None:
    """claim_next reads the claim index, complete_many_quiet the primary key (never the
    lease index), and submit (the statement a batch submit pipelines) finds an id in
    the log by its primary key: none of them scans a table whose size is the history."""
    new_id = SequentialIds(base=7_000_000)
    async with fresh_postgres_store() as store:
        agent = Agent(id=new_id(), name="a", registered_at=EPOCH)
        await store.register_agent(agent)
        await _history(store, agent, new_id)
        await store.submit_many(_items(new_id, BACKLOG), "test", EPOCH)  # a backlog waits
        async with await connect() as conn:
            await conn.execute(f'ANALYZE "{store.schema}".work_queue')
            await conn.execute(f'ANALYZE "{store.schema}".work_execution_log')

        claim = await _plan_scans(
            store.sql.claim_next,
            {
                "agent": agent.id,
                "actor": f"agent:{agent.id}",
                "now": EPOCH,
                "types": ["noop"],
                "limit": BATCH,
            },
        )
        on_queue = {(kind, index) for kind, index, rel in claim if rel == "work_queue"}
        # candidates from the claim index, the claimed rows updated by primary key
        assert on_queue == {
            ("Index Scan", "work_queue_claim"),
            ("Index Scan", "work_queue_pkey"),
        }, claim

        claimed = await store.claim_next(agent.id, EPOCH, ["noop"], BATCH)
        quiet = await _plan_scans(
            store.sql.complete_many_quiet,
            {
                "ids": [i.id for i in claimed],
                "attempts": [i.attempt for i in claimed],
                "agents": None,
                "agent": agent.id,
                "results": None,
                "local_retries": None,
                "now": EPOCH,
            },
        )
        assert {index for _, index, rel in quiet if rel == "work_queue"} == {"work_queue_pkey"}, (
            quiet
        )

        (item,) = _items(new_id, 1)
        params = store._submit_params(item, await _target(store, item), "test", EPOCH)
        submit = await _plan_scans(store.sql.submit, params)
        assert not any(kind == "Seq Scan" for kind, _, _ in submit), submit
        assert ("Index Only Scan", "work_execution_log_pkey", "work_execution_log") in submit or (
            "Index Scan",
            "work_execution_log_pkey",
            "work_execution_log",
        ) in submit, submit


SMALL_QUEUE = 3_000
"""Pending items of a small queue: few enough that a join with the claimed ids made the
planner read the whole queue (hash join over a sequential scan) to update a batch."""


async def test_a_claim_updates_its_rows_by_primary_key_in_a_small_queue() -> None:
    """claim_next updates the rows it picked through the primary key at any queue size:
    with a few thousand rows, the claimed ids joined to the queue made a hash join over
    a sequential scan of the queue, a whole-table read per claimed batch."""
    new_id = SequentialIds(base=9_000_000)
    async with fresh_postgres_store() as store:
        agent = Agent(id=new_id(), name="a", registered_at=EPOCH)
        await store.register_agent(agent)
        await store.submit_many(_items(new_id, SMALL_QUEUE), "test", EPOCH)
        async with await connect() as conn:
            await conn.execute(f'ANALYZE "{store.schema}".work_queue')
        claim = await _plan_scans(
            store.sql.claim_next,
            {"agent": agent.id, "now": EPOCH, "types": ["noop"], "limit": BATCH},
        )
        on_queue = {(kind, index) for kind, index, rel in claim if rel == "work_queue"}
        assert on_queue == {
            ("Index Scan", "work_queue_claim"),
            ("Index Scan", "work_queue_pkey"),
        }, claim
        assert len(await store.claim_next(agent.id, EPOCH, ["noop"], BATCH)) == BATCH


async def _target(store: PostgresStore, item: WorkItem) -> int:
    return await store._target_id(item.targeting)


async def test_a_queue_page_reads_the_listing_and_lease_indexes_behind_a_backlog() -> None:
    """query() (migration 5): unclaimed rows in order from ``work_queue_created``, which
    leaves claimed rows out, and the claimed ones from the lease index; no scan of the
    backlog, with or without a status filter."""
    new_id = SequentialIds(base=7_500_000)
    async with fresh_postgres_store() as store:
        agent = Agent(id=new_id(), name="a", registered_at=EPOCH)
        await store.register_agent(agent)
        await store.submit_many(_items(new_id, BACKLOG), "test", EPOCH)
        await store.claim_next(agent.id, EPOCH, ["noop"], BATCH)
        async with await connect() as conn:
            await conn.execute(f'ANALYZE "{store.schema}".work_queue')
        base = {
            "work_type": None,
            "claimed_by": None,
            "after_at": None,
            "after_id": None,
            "limit": 100,
        }
        for status in (None, "PENDING", "CLAIMED"):
            scans = await _plan_scans(store.sql.query, {**base, "status": status})
            on_queue = {(kind, index) for kind, index, rel in scans if rel == "work_queue"}
            assert not any(kind == "Seq Scan" for kind, _ in on_queue), (status, scans)
            indexes = {index for _, index in on_queue}
            assert indexes <= {"work_queue_created", "work_queue_lease"}, (status, scans)
            if status != "CLAIMED":
                assert "work_queue_created" in indexes, (status, scans)
