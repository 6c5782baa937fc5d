"""Claims on the SQLite store: concurrent drains, large queues, wake-ups, exact times."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import attrs
import pytest

from workqueue_core.domain.errors import InvalidInput
from workqueue_core.domain.models import Agent, AgentStatus, Targeting, WorkItem, WorkStatus
from workqueue_core.testing import EPOCH, SequentialIds, assert_clean_drain, drain_concurrently
from workqueue_sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_eight_claimers_drain_every_item_exactly_once(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "drain.db") as store:
        report = await drain_concurrently(store, items=1000, claimers=8, batch=10)
        assert_clean_drain(report, 1000)
        assert sum(report.claims_per_claimer.values()) == 1000
        assert len(report.claims_per_claimer) > 1  # the claimers really interleaved


async def test_claim_next_finds_eligible_work_behind_many_ineligible_items() -> None:
    ids = SequentialIds()
    gpu = Agent(ids(), "gpu", EPOCH, labels={"gpu": "true"})
    cpu = Agent(ids(), "cpu", EPOCH, labels={"gpu": "false"})
    async with await SqliteStore.open(":memory:") as store:
        await store.register_agent(gpu)
        await store.register_agent(cpu)
        ineligible = 777  # work only the gpu agent may claim, ahead in claim order
        for n in range(ineligible):
            item = WorkItem(ids(), "job", "{}", Targeting.labels("gpu=true"), EPOCH, priority=1)
            await store.submit(item, "test", EPOCH + timedelta(microseconds=n))
        wanted = [
            WorkItem(ids(), "job", "{}", Targeting.agents(cpu.id), EPOCH + timedelta(seconds=s))
            for s in (2, 1)
        ]
        for item in wanted:
            await store.submit(item, "test", EPOCH)

        assert [i.id for i in await store.pending_for(cpu.id, EPOCH, None, 10)] == [
            wanted[1].id,
            wanted[0].id,
        ]
        claimed = await store.claim_next(cpu.id, EPOCH, ["job"], 5)
        assert [i.id for i in claimed] == [wanted[1].id, wanted[0].id]  # older first
        assert all(i.status is WorkStatus.CLAIMED and i.claimed_by == cpu.id for i in claimed)
        assert await store.claim_next(cpu.id, EPOCH, ["job"], 5) == []
        assert await store.claim_next(gpu.id, EPOCH, ["other"], 5) == []
        # Relabelling takes effect at once; a draining agent claims nothing.
        await store.update_agent(cpu.id, labels={"gpu": "true"})
        assert len(await store.claim_next(cpu.id, EPOCH, None, 3)) == 3
        await store.update_agent(gpu.id, status=AgentStatus.DRAINING)
        assert await store.claim_next(gpu.id, EPOCH, None, 3) == []


async def test_commits_that_make_work_pending_wake_claimers() -> None:
    ids = SequentialIds()
    async with await SqliteStore.open(":memory:") as store:
        mark = store.notifier.mark()
        held = WorkItem(ids(), "job", "{}", Targeting.everyone(), EPOCH, status=WorkStatus.HELD)
        await store.submit(held, "test", EPOCH)
        assert not await store.notifier.wait(0, since=mark)  # HELD work wakes nobody
        await store.approve(held.id, "admin", EPOCH)
        assert await store.notifier.wait(0, since=mark)
        mark = store.notifier.mark()
        agent = Agent(ids(), "a", EPOCH)
        await store.register_agent(agent)
        assert await store.notifier.wait(0, since=mark)
        mark = store.notifier.mark()
        await store.claim_next(agent.id, EPOCH)
        assert not await store.notifier.wait(0, since=mark)  # a claim makes nothing pending


async def test_times_round_trip_to_the_microsecond() -> None:
    ids = SequentialIds()
    plus_five = timezone(timedelta(hours=5, minutes=30))
    created = (EPOCH + timedelta(microseconds=987_654)).astimezone(plus_five)
    item = WorkItem(
        ids(),
        "job",
        "{}",
        Targeting.everyone(),
        created,
        claim_timeout=timedelta(seconds=1, microseconds=1),
        not_before=created - timedelta(microseconds=1),
    )
    agent = Agent(ids(), "a", created)
    async with await SqliteStore.open(":memory:") as store:
        await store.register_agent(agent)
        await store.submit(item, "test", created)
        stored = await store.get(item.id)
        assert stored == item
        assert stored is not None and stored.created_at.utcoffset() == timedelta(0)
        (claimed,) = await store.claim_next(agent.id, created)
        assert claimed.lease_expires_at == created + timedelta(seconds=1, microseconds=1)
        assert await store.sweep(created + timedelta(seconds=1)) == []
        assert len(await store.sweep(created + timedelta(seconds=1, microseconds=1))) == 1
        assert (await store.get_agent(agent.id)) == agent


async def test_a_number_sqlite_cannot_store_is_invalid_input_and_writes_nothing() -> None:
    ids = SequentialIds()
    item = WorkItem(ids(), "job", "{}", Targeting.everyone(), EPOCH, priority=2**63)
    async with await SqliteStore.open(":memory:") as store:
        with pytest.raises(InvalidInput, match="range"):
            await store.submit(item, "test", EPOCH)
        assert await store.get(item.id) is None
        assert await store.events(item.id) == []
        assert (await store.stats()).total() == 0


async def test_a_record_whose_item_is_not_queued_is_written_whole() -> None:
    """The log copies a record's submission columns from its queue row; without one (no
    current operation does this) the record is written whole instead of being lost."""
    ids = SequentialIds()
    agent = Agent(ids(), "a", EPOCH)
    item = WorkItem(ids(), "job", '{"x": 1}', Targeting.agents(agent.id), EPOCH, labels={"k": "v"})
    async with await SqliteStore.open(":memory:") as store:
        await store.register_agent(agent)
        await store.submit(item, "test", EPOCH)
        [claimed] = await store.claim_next(agent.id, EPOCH, None, 1)
        done = await store.complete(claimed.token, agent.id, EPOCH, "ok")
        assert await store.get_record(item.id) == done  # copied from the queue row
        other = attrs.evolve(done, item=attrs.evolve(done.item, id=ids()))
        await store._db.run(lambda tx: tx.apply_records([(other, None)]))
        assert await store.get_record(other.id) == other
        assert await store.get(other.id) is None
