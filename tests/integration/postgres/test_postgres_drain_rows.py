"""Migration 5's leaner drain rows: what they leave out is still what the store answers.

Claim and completion events are written without actor and detail (the row's holder
and the transition's word), the listing index leaves claimed rows out, and events
lost their ``seq`` primary key. These tests pin what must not change: each event as
the in-memory store (the reference) gives it (detail included, which the conformance kit does not
compare), queue pages across claimed and unclaimed rows, and a schema at version 4
with rows in it upgraded in place.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest
from psycopg.types.json import Jsonb

from pg_support import PG_DSN, connect, fresh_postgres_store, temporary_schema
from workqueue_core.domain import transitions
from workqueue_core.domain.models import (
    Agent,
    Completion,
    Cursor,
    Event,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.testing.clock import EPOCH, SequentialIds
from workqueue_memory import MemoryStore
from workqueue_postgres import LATEST_VERSION, PostgresStore, codec, migrate
from workqueue_postgres.sql import statements

pytestmark = pytest.mark.anyio


def _item(new_id: SequentialIds, seconds: int) -> WorkItem:
    return WorkItem(
        id=new_id(),
        work_type="job",
        spec="{}",
        targeting=Targeting.everyone(),
        created_at=EPOCH + timedelta(seconds=seconds),
    )


def _unnumbered(events: list[Event]) -> list[Event]:
    return [attrs.evolve(e, seq=0) for e in events]


async def test_claim_and_completion_events_read_back_as_the_reference_writes_them() -> None:
    new_id = SequentialIds(base=8_000_000)
    agent = Agent(id=new_id(), name="a", registered_at=EPOCH)
    items = [_item(new_id, s) for s in range(3)]
    later = EPOCH + timedelta(seconds=5)
    reference = MemoryStore(lambda: 0.0)
    async with fresh_postgres_store() as store:
        for s in (reference, store):
            await s.register_agent(agent)
            for item in items:
                await s.submit(item, "producer", EPOCH)
            claimed = await s.claim_next(agent.id, later, ["job"], 2)
            assert [i.id for i in claimed] == [items[0].id, items[1].id]
            await s.complete_many(
                [
                    Completion(claimed[0].token, agent.id, "ok"),
                    Completion(claimed[1].token, agent.id),
                ],
                later,
            )
        for item in items:
            expected = _unnumbered(await reference.events(item.id))
            got = await store.events(item.id)
            assert _unnumbered(got) == expected
            assert [e.seq for e in got] == sorted({e.seq for e in got})
        first = await store.events(items[0].id)
        assert [(e.actor, e.detail) for e in first] == [
            ("producer", "submitted"),
            (f"agent:{agent.id}", "claimed"),
            (f"agent:{agent.id}", "succeeded"),
        ]


async def test_queue_pages_merge_claimed_and_unclaimed_rows_in_creation_order() -> None:
    new_id = SequentialIds(base=8_100_000)
    agent = Agent(id=new_id(), name="a", registered_at=EPOCH)
    held = attrs.evolve(_item(new_id, 2), status=WorkStatus.HELD)
    items = [_item(new_id, s) for s in (0, 1, 3, 4, 5)]
    async with fresh_postgres_store() as store:
        await store.register_agent(agent)
        for item in [*items, held]:
            await store.submit(item, "test", EPOCH)
        claimed = await store.claim_next(agent.id, EPOCH + timedelta(seconds=9), None, 1)
        await store.claim(items[3].id, agent.id, EPOCH + timedelta(seconds=9))
        holder = {claimed[0].id, items[3].id}
        by_time = [items[0], items[1], held, items[2], items[3], items[4]]

        pages: list[WorkItem] = []
        after: Cursor | None = None
        while page := await store.query(WorkQuery(limit=2, after=after)):
            pages.extend(page)
            after = Cursor(page[-1].created_at, page[-1].id)
        assert [i.id for i in pages] == [i.id for i in by_time]
        assert {i.id for i in pages if i.status is WorkStatus.CLAIMED} == holder

        mine = await store.query(WorkQuery(claimed_by=agent.id))
        assert [i.id for i in mine] == [i.id for i in by_time if i.id in holder]
        only_claimed = await store.query(WorkQuery(status=WorkStatus.CLAIMED, limit=1))
        assert [i.id for i in only_claimed] == [items[0].id]
        pending = await store.query(WorkQuery(status=WorkStatus.PENDING))
        assert [i.id for i in pending] == [items[1].id, items[2].id, items[4].id]
        assert [i.id for i in await store.query(WorkQuery(status=WorkStatus.HELD))] == [held.id]


async def _write_v4_rows(schema: str, new_id: SequentialIds) -> dict[str, Any]:
    """Rows as a version-4 store writes them: a pending, a claimed and a finished item,
    each with its events (actor and detail spelled out), through the statements whose
    shape migration 5 does not change."""
    st = statements(schema)
    agent = Agent(id=new_id(), name="old", registered_at=EPOCH)
    pending, claimed, finished = (_item(new_id, s) for s in range(3))
    later = EPOCH + timedelta(seconds=5)
    everyone = Targeting.everyone()
    async with await connect() as conn:
        cur = await conn.execute(
            st.insert_target,
            (codec.targeting_key(everyone), [], Jsonb(codec.selector_json(everyone.selector))),
        )
        row = await cur.fetchone()
        assert row is not None
        target_id = row[0]
        await conn.execute(st.insert_agent, codec.agent_params(agent))
        await conn.execute(st.insert_target_agents, ([agent.id], [target_id]))
        events: list[Event] = []
        for item in (pending, claimed, finished):
            await conn.execute(st.upsert_item, codec.item_params(item, target_id))
            events.append(transitions.submitted(item, "producer", EPOCH))
        for item in (claimed, finished):
            after, event = transitions.claim(item, agent, later)
            await conn.execute(st.upsert_item, codec.item_params(after, target_id))
            events.append(event)
        record, event = transitions.complete(after, agent.id, later, "done", 0)
        await conn.execute(st.delete_item, (finished.id,))
        await conn.execute(st.insert_record, (*codec.record_params(record, target_id), None))
        events.append(event)
        for event in events:
            await conn.execute(st.insert_event, codec.event_params(event))
    return {"agent": agent, "pending": pending, "claimed": claimed, "finished": finished}


async def test_a_version_4_schema_with_rows_upgrades_in_place() -> None:
    new_id = SequentialIds(base=8_200_000)
    async with temporary_schema() as schema:
        assert await migrate(PG_DSN, schema, version=4) == 4
        rows = await _write_v4_rows(schema, new_id)
        agent: Agent = rows["agent"]
        assert await migrate(PG_DSN, schema) == LATEST_VERSION == 5
        store = await PostgresStore.open(PG_DSN, schema=schema, migrate=False)
        try:
            before = {
                key: await store.events(rows[key].id) for key in ("pending", "claimed", "finished")
            }
            assert [e.detail for e in before["finished"]] == ["submitted", "claimed", "succeeded"]
            assert before["claimed"][-1].actor == f"agent:{agent.id}"

            listed = await store.query(WorkQuery())
            assert [(i.id, i.status) for i in listed] == [
                (rows["pending"].id, WorkStatus.PENDING),
                (rows["claimed"].id, WorkStatus.CLAIMED),
            ]
            record = await store.get_record(rows["finished"].id)
            assert record is not None and record.result == "done"

            # the upgraded rows go on through the hot statements
            later = EPOCH + timedelta(seconds=6)
            (held,) = await store.query(WorkQuery(status=WorkStatus.CLAIMED))
            (done,) = await store.complete_many([Completion(held.token, agent.id)], later)
            assert not isinstance(done, Exception) and done.status is WorkStatus.SUCCEEDED
            (next_item,) = await store.claim_next(agent.id, later, None, 5)
            assert next_item.id == rows["pending"].id
            timeline = await store.events(rows["claimed"].id)
            assert timeline[: len(before["claimed"])] == before["claimed"]
            assert [(e.actor, e.detail) for e in timeline[len(before["claimed"]) :]] == [
                (f"agent:{agent.id}", "succeeded")
            ]
        finally:
            await store.close()
        async with await connect() as conn:
            cur = await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                (schema, "work_queue_created"),
            )
            (indexdef,) = await cur.fetchone() or (None,)
            assert indexdef is not None and "WHERE (status <> 'CLAIMED'::text)" in indexdef
            cur = await conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE conname = 'work_events_pkey' "
                "AND connamespace = %s::regnamespace",
                (schema,),
            )
            assert await cur.fetchone() == (0,)
