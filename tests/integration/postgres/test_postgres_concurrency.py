"""Eight claimers on separate connections drain 20,000 items: each is claimed and logged once."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

import anyio
import pytest
from psycopg import sql

from pg_support import PG_DSN, connect, temporary_schema
from workqueue_core.domain.models import Agent, Completion, Targeting, WorkItem, WorkStatus
from workqueue_core.testing.clock import EPOCH, SequentialIds
from workqueue_postgres import PostgresStore

pytestmark = pytest.mark.anyio

ITEMS = 20_000
CLAIMERS = 8
BATCH = 50


async def test_eight_claimers_drain_twenty_thousand_items_exactly_once() -> None:
    new_id = SequentialIds(base=1_000_000)
    async with temporary_schema() as schema:
        stores = [
            await PostgresStore.open(PG_DSN, schema=schema, min_size=1, max_size=1)
            for _ in range(CLAIMERS)
        ]
        try:
            agents = [
                Agent(id=new_id(), name=f"claimer-{n}", registered_at=EPOCH, labels={"pool": "a"})
                for n in range(CLAIMERS)
            ]
            for agent in agents:
                await stores[0].register_agent(agent)
            items = [
                WorkItem(
                    id=new_id(),
                    work_type="drain",
                    spec="{}",
                    targeting=Targeting.labels("pool=a"),
                    created_at=EPOCH,
                )
                for _ in range(ITEMS)
            ]
            for start in range(0, ITEMS, 1000):
                await stores[0].submit_many(items[start : start + 1000], "test", EPOCH)

            claimed: dict[UUID, list[UUID]] = defaultdict(list)
            errors: list[object] = []

            async def claimer(store: PostgresStore, agent: Agent) -> None:
                while got := await store.claim_next(agent.id, EPOCH, ["drain"], BATCH):
                    for item in got:
                        claimed[item.id].append(agent.id)
                    outcomes = await store.complete_many(
                        [Completion(i.token, agent.id, "done") for i in got], EPOCH
                    )
                    errors.extend(o for o in outcomes if not hasattr(o, "finished_at"))

            async with anyio.create_task_group() as tg:
                for store, agent in zip(stores, agents, strict=True):
                    tg.start_soon(claimer, store, agent)
        finally:
            for store in stores:
                await store.close()

        assert not errors, errors[:5]
        assert len(claimed) == ITEMS
        assert all(len(holders) == 1 for holders in claimed.values())
        assert len({a for holders in claimed.values() for a in holders}) > 1

        async with await connect() as conn:
            s = sql.Identifier(schema)
            cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}.work_queue").format(s))
            assert (await cur.fetchone()) == (0,)
            cur = await conn.execute(
                sql.SQL(
                    "SELECT count(*), count(DISTINCT id), "
                    "count(*) FILTER (WHERE status = 'SUCCEEDED') FROM {}.work_execution_log"
                ).format(s)
            )
            assert (await cur.fetchone()) == (ITEMS, ITEMS, ITEMS)
            cur = await conn.execute(
                sql.SQL(
                    "SELECT work_id, from_status, to_status, attempt FROM {}.work_events "
                    "ORDER BY work_id, seq"
                ).format(s)
            )
            timelines: dict[UUID, list[tuple[str | None, str, int]]] = defaultdict(list)
            for work_id, from_status, to_status, attempt in await cur.fetchall():
                timelines[work_id].append((from_status, to_status, attempt))

    assert len(timelines) == ITEMS
    for work_id, timeline in timelines.items():
        claim_attempts = [a for _, to, a in timeline if to == WorkStatus.CLAIMED.value]
        assert len(claim_attempts) == len(set(claim_attempts)), (work_id, timeline)
        open_claims = 0
        for from_status, to_status, _ in timeline:
            if to_status == "CLAIMED":
                assert from_status == "PENDING" and open_claims == 0, (work_id, timeline)
                open_claims += 1
            elif from_status == "CLAIMED":
                open_claims -= 1
        assert open_claims == 0, (work_id, timeline)
        assert [to for _, to, _ in timeline] == ["PENDING", "CLAIMED", "SUCCEEDED"], timeline
