"""The SQLite store's hot path (``claim_next``, ``complete_many``) computes the claim and
the completion from the rows it reads (``codec.claimed_from`` / ``codec.completed_from``)
instead of running the transition functions: pinned here against those functions on
items with every optional field set, retries already charged, local retries below,
within and beyond the budget, and refusals mixed into one batch."""

from __future__ import annotations

from datetime import timedelta, timezone

import attrs
import pytest

from workqueue_core.domain import transitions
from workqueue_core.domain.errors import LeaseLost, NotClaimOwner, UnknownWork, WorkqueueError
from workqueue_core.domain.models import (
    Agent,
    Completion,
    Event,
    ExecutionRecord,
    Failure,
    Targeting,
    WorkItem,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.testing import EPOCH, SequentialIds
from workqueue_sqlite import SqliteStore, codec

pytestmark = pytest.mark.anyio

CLAIM_AT = EPOCH + timedelta(hours=2)
DONE_AT = CLAIM_AT + timedelta(seconds=3, microseconds=7)


def _unsequenced(events: list[Event]) -> list[Event]:
    return [attrs.evolve(e, seq=0) for e in events]


def _items(ids: SequentialIds, agent: Agent) -> list[WorkItem]:
    east = timezone(timedelta(hours=9))
    policy = RetryPolicy(max_retries=3, base_delay=timedelta(0), max_delay=timedelta(0))
    return [
        WorkItem(
            ids(),
            "job",
            '{"n": 1}',
            Targeting.labels("pool=a"),
            (EPOCH + timedelta(microseconds=3)).astimezone(east),
            retry_policy=policy,
            claim_timeout=timedelta(seconds=90, microseconds=11),
            priority=5,
            not_before=EPOCH + timedelta(minutes=1),
            idempotency_key="key-1",
            correlation_id="corr-1",
            labels={"team": "x", "tier": "1"},
            callback_url="http://127.0.0.1:9/done",
        ),
        WorkItem(ids(), "job", "{}", Targeting.agents(agent.id), EPOCH, retry_policy=policy),
        WorkItem(ids(), "job", "{}", Targeting.everyone(), EPOCH, retry_policy=policy),
    ]


async def _claimed_as_reference(
    store: SqliteStore, agent: Agent, items: list[WorkItem]
) -> list[WorkItem]:
    """Claim every item through ``claim_next``; each claimed item, its row and its new
    event must be what ``transitions.claim`` makes of the item as stored before."""
    before = {i.id: await store.get(i.id) for i in items}
    events_before = {i.id: await store.events(i.id) for i in items}
    claimed = await store.claim_next(agent.id, CLAIM_AT, None, 10)
    assert {i.id for i in claimed} == {i.id for i in items}
    for item in claimed:
        stored = before[item.id]
        assert stored is not None
        expected, event = transitions.claim(stored, agent, CLAIM_AT)
        assert item == expected
        assert await store.get(item.id) == expected
        events = await store.events(item.id)
        assert events[: len(events_before[item.id])] == events_before[item.id]
        assert _unsequenced(events[len(events_before[item.id]) :]) == [event]
    return claimed


async def test_claims_and_completions_agree_with_the_transitions() -> None:
    ids = SequentialIds()
    agent = Agent(ids(), "a", EPOCH, labels={"pool": "a"})
    async with await SqliteStore.open(":memory:") as store:
        await store.register_agent(agent)
        items = _items(ids, agent)
        for item in items:
            await store.submit(item, "test", EPOCH)
        # A first run fails retryably: the second claim carries last_error, attempt 2,
        # two executions and a not_before the failure set.
        first = await _claimed_as_reference(store, agent, items)
        for item in first:
            await store.fail(
                item.token, agent.id, CLAIM_AT, Failure.retryable("flaky", "try again")
            )
        claimed = await _claimed_as_reference(store, agent, items)
        assert all(i.attempt == 2 and i.last_error is not None for i in claimed)

        # Local retries: fewer than a heartbeat already charged, within the budget, too many.
        claimed[0] = await store.heartbeat(claimed[0].token, agent.id, CLAIM_AT, 1)
        assert (claimed[0].executions, claimed[0].local_retries) == (3, 1)
        reports = {claimed[0].id: 0, claimed[1].id: 1, claimed[2].id: 5}
        expected: dict[object, tuple[ExecutionRecord, Event]] = {
            i.id: transitions.complete(i, agent.id, DONE_AT, f"result {n}", reports[i.id])
            for n, i in enumerate(claimed)
        }
        outcomes = await store.complete_many(
            [
                Completion(i.token, agent.id, f"result {n}", reports[i.id])
                for n, i in enumerate(claimed)
            ],
            DONE_AT,
        )
        for item, outcome in zip(claimed, outcomes, strict=True):
            record, event = expected[item.id]
            assert outcome == record
            assert await store.get_record(item.id) == record
            assert await store.get(item.id) is None
            assert _unsequenced((await store.events(item.id))[-1:]) == [event]
        assert [r.item.executions for r in outcomes if isinstance(r, ExecutionRecord)] == [
            3,
            3,
            4,  # clamped to the budget of four runs
        ]
        assert [r.item.local_retries for r in outcomes if isinstance(r, ExecutionRecord)] == [
            1,
            1,
            2,
        ]
        # Only the item with a callback URL is due for delivery, at its finishing time.
        due = await store.callbacks_due(DONE_AT)
        assert [r.id for r in due] == [claimed[0].id]
        assert due[0].finished_at == DONE_AT
        row = await store._db.read(
            lambda tx: tx.one(
                "SELECT finished_at, next_at FROM work_callbacks WHERE work_id = ?",
                (str(claimed[0].id),),
            )
        )
        assert tuple(row) == (codec.to_us(DONE_AT), codec.to_us(DONE_AT))


async def test_a_batch_with_refused_entries_completes_the_rest_and_explains_each() -> None:
    ids = SequentialIds()
    agent = Agent(ids(), "a", EPOCH, labels={"pool": "a"})
    other = Agent(ids(), "b", EPOCH, labels={"pool": "b"})
    async with await SqliteStore.open(":memory:") as store:
        await store.register_agent(agent)
        await store.register_agent(other)
        mine = [WorkItem(ids(), "job", "{}", Targeting.agents(agent.id), EPOCH) for _ in range(3)]
        theirs = WorkItem(ids(), "job", "{}", Targeting.agents(other.id), EPOCH)
        for item in (*mine, theirs):
            await store.submit(item, "test", EPOCH)
        claimed = await store.claim_next(agent.id, CLAIM_AT, None, 10)
        [their_claim] = await store.claim_next(other.id, CLAIM_AT, None, 10)
        stale = attrs.evolve(claimed[1].token, attempt=claimed[1].attempt - 1)
        unknown = attrs.evolve(claimed[0].token, work_id=ids())
        outcomes = await store.complete_many(
            [
                Completion(claimed[0].token, agent.id),
                Completion(stale, agent.id),
                Completion(their_claim.token, agent.id),
                Completion(unknown, agent.id),
                Completion(claimed[2].token, agent.id, "ok"),
            ],
            DONE_AT,
        )
        kinds = [type(o) if isinstance(o, WorkqueueError) else ExecutionRecord for o in outcomes]
        assert kinds == [ExecutionRecord, LeaseLost, NotClaimOwner, UnknownWork, ExecutionRecord]
        assert await store.get(claimed[1].id) == claimed[1]  # refused: untouched
        assert await store.get(their_claim.id) == their_claim
        record = await store.get_record(claimed[2].id)
        assert record is not None and record.result == "ok"
        # Completing again with the same token answers the same record (idempotent).
        again = await store.complete_many([Completion(claimed[2].token, agent.id, "ok")], DONE_AT)
        assert again == [record]
