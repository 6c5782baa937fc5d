"""The life of work items over real HTTP, driven with BrokerClient (DESIGN §2, §3, §7)."""

from __future__ import annotations

from datetime import timedelta

import anyio
import httpx
import pytest

from integration.http.support import BUILD_WORK, Broker, admin_headers
from workqueue_core.domain.errors import LeaseLost, NotClaimable, WorkCancelled
from workqueue_core.domain.models import (
    AgentStatus,
    ClaimToken,
    Completion,
    ExecutionRecord,
    Failure,
    LogQuery,
    SubmitRequest,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_http.client import BrokerClient

pytestmark = pytest.mark.anyio


def work(targeting: Targeting, **fields: object) -> SubmitRequest:
    values: dict[str, object] = {
        "work_type": "test",
        "spec": "run the tests",
        "targeting": targeting,
    }
    values.update(fields)
    return SubmitRequest(**values)  # type: ignore[arg-type]


async def test_targeted_work_is_claimed_retried_completed_and_logged(
    broker: Broker, admin: BrokerClient
) -> None:
    a = await admin.register_agent("agent-a", {"zone": "a", "gpu": "true"})
    b = await admin.register_agent("agent-b", {"zone": "b"})
    for_a = (await admin.submit(work(Targeting.labels("zone=a")))).item
    for_b = (await admin.submit(work(Targeting.agents(b.agent.id), priority=5))).item
    for_all = (await admin.submit(work(Targeting.everyone()))).item
    assert isinstance(for_a, WorkItem)
    assert isinstance(for_b, WorkItem)
    assert isinstance(for_all, WorkItem)

    async with (
        BrokerClient(broker.url, a.token) as agent_a,
        BrokerClient(broker.url, b.token) as agent_b,
    ):
        a_id, b_id = a.agent.id, b.agent.id
        assert {i.id for i in await agent_a.pending(a_id)} == {for_a.id, for_all.id}
        assert [i.id for i in await agent_b.pending(b_id)] == [for_b.id, for_all.id]

        # A claims by id, heartbeats, completes; completing again returns the same record.
        claimed = await agent_a.claim(for_a.id, a_id)
        assert (claimed.status, claimed.claimed_by, claimed.attempt) == (
            WorkStatus.CLAIMED,
            a_id,
            1,
        )
        broker.clock.advance(60)
        beat = await agent_a.heartbeat(claimed.token, a_id)
        assert claimed.lease_expires_at is not None
        assert beat.lease_expires_at == claimed.lease_expires_at + timedelta(seconds=60)
        done = await agent_a.complete(claimed.token, a_id, result="ok")
        assert (done.status, done.result, done.finished_by) == (
            WorkStatus.SUCCEEDED,
            "ok",
            f"agent:{a_id}",
        )
        assert await agent_a.complete(claimed.token, a_id, result="ok") == done

        # B claims its next two items in claim order (priority first).
        batch = await agent_b.claim_next(b_id, limit=5)
        assert [i.id for i in batch] == [for_b.id, for_all.id]

        # A retryable failure sends the item back after the backoff, with a new attempt.
        first = batch[0]
        retried = await agent_b.fail(first.token, b_id, Failure.retryable("Timeout", "slow"))
        assert isinstance(retried, WorkItem)
        assert retried.status is WorkStatus.PENDING
        assert retried.not_before == broker.clock.now() + timedelta(seconds=60)
        assert await agent_b.pending(b_id) == []
        with pytest.raises(NotClaimable):
            await agent_b.claim(first.id, b_id)
        broker.clock.advance(60)
        again = await agent_b.claim(first.id, b_id)
        assert again.attempt == 2
        with pytest.raises(LeaseLost):
            await agent_b.heartbeat(first.token, b_id)  # the first claim's token is stale
        record = await agent_b.complete(again.token, b_id)
        assert record.status is WorkStatus.SUCCEEDED

        # A permanent failure is a dead letter; requeue gives a fresh budget; cancel ends it.
        second = batch[1]
        dead = await agent_b.fail(second.token, b_id, Failure.permanent("BadSpec"))
        assert isinstance(dead, ExecutionRecord)
        assert dead.status is WorkStatus.FAILED
        requeued = await admin.requeue(second.id)
        assert (requeued.status, requeued.executions) == (WorkStatus.PENDING, 0)
        reclaimed = await agent_a.claim(second.id, a_id)
        cancelled = await admin.cancel(second.id, reason="no longer needed")
        assert cancelled.status is WorkStatus.CANCELED
        with pytest.raises(WorkCancelled):
            await agent_a.heartbeat(reclaimed.token, a_id)

    # The log and the timelines show it all.
    log = await admin.list_log(LogQuery())
    assert {(r.id, r.status) for r in log} == {
        (for_a.id, WorkStatus.SUCCEEDED),
        (for_b.id, WorkStatus.SUCCEEDED),
        (for_all.id, WorkStatus.CANCELED),
    }
    assert await admin.list_work(WorkQuery()) == []
    steps = [(e.from_status, e.to_status) for e in await admin.events(for_b.id)]
    assert steps == [
        (None, WorkStatus.PENDING),
        (WorkStatus.PENDING, WorkStatus.CLAIMED),
        (WorkStatus.CLAIMED, WorkStatus.PENDING),
        (WorkStatus.PENDING, WorkStatus.CLAIMED),
        (WorkStatus.CLAIMED, WorkStatus.SUCCEEDED),
    ]
    timeline = [e.to_status for e in await admin.events(for_all.id)]
    assert timeline[-4:] == [
        WorkStatus.FAILED,
        WorkStatus.PENDING,
        WorkStatus.CLAIMED,
        WorkStatus.CANCELED,
    ]
    stats = await admin.stats()
    assert stats.total(WorkStatus.SUCCEEDED) == 2
    assert stats.total(WorkStatus.CANCELED) == 1

    async with httpx.AsyncClient(base_url=broker.url) as http:
        metrics = (await http.get("/metrics")).text
    for line in (
        'workqueue_claims_total{work_type="test"} 5.0',
        'workqueue_retries_total{work_type="test"} 1.0',
        'workqueue_dead_letters_total{work_type="test"} 1.0',
        'workqueue_log_records{status="SUCCEEDED",work_type="test"} 2.0',
        'workqueue_log_records{status="CANCELED",work_type="test"} 1.0',
    ):
        assert line in metrics.splitlines(), line
    assert "workqueue_queue_depth{" not in metrics  # the queue is empty


async def test_a_released_claim_is_pending_at_once_uncharged_and_its_token_stale(
    broker: Broker, admin: BrokerClient
) -> None:
    issued = await admin.register_agent("releaser")
    agent_id = issued.agent.id
    item = (await admin.submit(work(Targeting.everyone()))).item
    async with BrokerClient(broker.url, issued.token) as agent:
        (claimed,) = await agent.claim_next(agent_id)
        released = await agent.release(claimed.token, agent_id, "shutdown")
        assert (released.status, released.attempt, released.executions) == (
            WorkStatus.PENDING,
            1,
            0,
        )
        assert released.claimed_by is None
        with pytest.raises(LeaseLost):
            await agent.release(claimed.token, agent_id)
        with pytest.raises(LeaseLost):
            await agent.complete(claimed.token, agent_id)
        (again,) = await agent.claim_next(agent_id)
        assert (again.id, again.attempt, again.executions) == (item.id, 2, 1)
        with pytest.raises(LeaseLost):
            await agent.heartbeat(claimed.token, agent_id)
    events = await admin.events(item.id)
    assert [(e.from_status, e.to_status, e.detail) for e in events[1:3]] == [
        (WorkStatus.PENDING, WorkStatus.CLAIMED, "claimed"),
        (WorkStatus.CLAIMED, WorkStatus.PENDING, "released: shutdown"),
    ]
    assert events[2].actor == f"agent:{agent_id}"


async def test_held_work_waits_for_approval(admin: BrokerClient, broker: Broker) -> None:
    agent = await admin.register_agent("agent", {"zone": "a"})
    held = (await admin.submit(work(Targeting.everyone(), requires_approval=True))).item
    assert held.status is WorkStatus.HELD
    async with httpx.AsyncClient(base_url=broker.url) as http:
        metrics = (await http.get("/metrics")).text.splitlines()
    assert 'workqueue_queue_depth{status="HELD",work_type="test"} 1.0' in metrics
    async with BrokerClient(broker.url, agent.token) as client:
        assert await client.pending(agent.agent.id) == []
        approved = await admin.approve(held.id)
        assert approved.status is WorkStatus.PENDING
        assert [i.id for i in await client.pending(agent.agent.id)] == [held.id]


async def test_long_poll_claim_is_woken_by_a_submit(admin: BrokerClient, broker: Broker) -> None:
    agent = await admin.register_agent("waiter", {"zone": "a"})
    claimed: list[WorkItem] = []
    async with BrokerClient(broker.url, agent.token) as client:

        async def wait_for_work() -> None:
            claimed.extend(await client.claim_next(agent.agent.id, limit=1, wait=20))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_for_work)
            await anyio.sleep(0.3)  # let the claim start waiting (not a timing assertion)
            submitted = (await admin.submit(work(Targeting.labels("zone=a")))).item
    assert [i.id for i in claimed] == [submitted.id]
    assert claimed[0].claimed_by == agent.agent.id


async def test_submit_is_idempotent_on_the_idempotency_key_header(
    admin: BrokerClient, http: httpx.AsyncClient
) -> None:
    body = {"work_type": "test", "spec": "x", "targeting": {"selector": {}}}
    headers = {**admin_headers(), "Idempotency-Key": "deploy-42"}
    first = await http.post("/api/v1/work", json=body, headers=headers)
    second = await http.post("/api/v1/work", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["created"] is True
    assert second.json()["created"] is False
    assert second.json()["work"]["item"]["id"] == first.json()["work"]["item"]["id"]
    assert second.json()["work"]["item"]["idempotency_key"] == "deploy-42"
    again = await admin.submit(work(Targeting.everyone(), idempotency_key="deploy-42"))
    assert not again.created
    assert str(again.item.id) == first.json()["work"]["item"]["id"]
    assert (await admin.stats()).total() == 1


async def test_batch_completion_reports_each_entry(admin: BrokerClient, broker: Broker) -> None:
    agent = await admin.register_agent("batcher")
    for _ in range(3):
        await admin.submit(work(Targeting.everyone()))
    async with BrokerClient(broker.url, agent.token) as client:
        items = await client.claim_next(agent.agent.id, limit=3)
        assert len(items) == 3
        stale = Completion(ClaimToken(items[2].id, 99), agent.agent.id)
        outcomes = await client.complete_many(
            [Completion(i.token, agent.agent.id, result=f"r{n}") for n, i in enumerate(items[:2])]
            + [stale]
        )
    assert [o.status for o in outcomes[:2] if isinstance(o, ExecutionRecord)] == [
        WorkStatus.SUCCEEDED,
        WorkStatus.SUCCEEDED,
    ]
    assert isinstance(outcomes[2], LeaseLost)
    assert outcomes[2].work_id == items[2].id


async def test_agent_registry_over_http(admin: BrokerClient, broker: Broker) -> None:
    issued = await admin.register_agent("builder", {"arch": "arm64"}, {"owner": "ci"})
    assert issued.token.startswith("wq_")
    agent = issued.agent
    assert await admin.get_agent(agent.id) == agent
    relabelled = await admin.update_agent(agent.id, labels={"arch": "amd64"})
    assert relabelled.labels == {"arch": "amd64"}
    async with BrokerClient(broker.url, issued.token) as own:
        seen = await own.agent_heartbeat(agent.id)
        assert seen.last_seen_at == broker.clock.now()
        drained = await own.drain_agent(agent.id)
        assert drained.status is AgentStatus.DRAINING
    assert [a.id for a in await admin.list_agents(AgentStatus.DRAINING)] == [agent.id]
    assert await admin.list_agents(AgentStatus.ACTIVE) == []


async def test_build_work_with_a_valid_work_resource_is_accepted(admin: BrokerClient) -> None:
    result = await admin.submit(
        SubmitRequest(
            work_type="build",
            spec=BUILD_WORK,
            targeting=Targeting.labels(
                {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
            ),
            retry_policy=RetryPolicy(max_retries=1, base_delay=timedelta(seconds=5)),
        )
    )
    assert result.created
    fetched = await admin.get(result.item.id)
    assert fetched == result.item


async def test_listing_pages_with_a_cursor(admin: BrokerClient, broker: Broker) -> None:
    ids = []
    for _ in range(5):
        broker.clock.advance(1)
        ids.append((await admin.submit(work(Targeting.everyone()))).item.id)
    first = await admin.list_work(WorkQuery(limit=2))
    assert [i.id for i in first] == ids[:2]
    from workqueue_core.domain.models import Cursor

    rest = await admin.list_work(
        WorkQuery(limit=10, after=Cursor(first[-1].created_at, first[-1].id))
    )
    assert [i.id for i in rest] == ids[2:]


async def test_callback_urls_leave_the_api_without_their_secrets(
    broker: Broker, admin: BrokerClient
) -> None:
    """Agents and admins see the callback URL's host and path, never its credentials
    or query; the broker keeps the full URL for posting."""
    url = "https://hook-user:hook-pass@hooks.example.com:8443/done/x?token=t0ps3cret"
    redacted = "https://hooks.example.com:8443/done/x"
    a = await admin.register_agent("agent-hook")
    submitted = (await admin.submit(work(Targeting.everyone(), callback_url=url))).item
    assert submitted.callback_url == redacted
    async with BrokerClient(broker.url, a.token) as agent:
        [pending] = await agent.pending(a.agent.id)
        [claimed] = await agent.claim_next(a.agent.id)
        seen = await admin.get(claimed.id)
        assert isinstance(seen, WorkItem)
        assert {pending.callback_url, claimed.callback_url, seen.callback_url} == {redacted}
        record = await agent.complete(claimed.token, a.agent.id)
    assert record.item.callback_url == redacted
    stored = await broker.service.store.get_record(claimed.id)
    assert stored is not None and stored.item.callback_url == url
