"""The work lifecycle of DESIGN §2 over a real broker process, for SQLite and PostgreSQL.

Each backend gets one broker process (uvicorn on a free loopback port) for the
module; every test uses its own work type and agents, so tests do not see each
other's work.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from broker_support import BrokerProcess, broker_on

from workqueue_core.domain.errors import (
    InvalidTransition,
    LeaseLost,
    NotEligible,
    UnknownWork,
    WorkCancelled,
    WorkqueueError,
)
from workqueue_core.domain.models import (
    Agent,
    ExecutionRecord,
    Failure,
    IssuedAgent,
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

NOW_RETRY = RetryPolicy(max_retries=1, base_delay=timedelta(0))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    workdir: Path = tmp_path_factory.mktemp(f"lifecycle-{request.param}")
    with broker_on(request.param, workdir, {"WORKQUEUE_SWEEP_INTERVAL": "200ms"}) as process:
        yield process


@pytest.fixture
async def admin(broker: BrokerProcess) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url, broker.admin_token) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def two_agents(admin: BrokerClient) -> tuple[IssuedAgent, IssuedAgent]:
    """Agent A (gpu, zone a) and agent B (no gpu, zone b)."""
    a = await admin.register_agent(unique("agent-a"), labels={"gpu": "true", "zone": "a"})
    b = await admin.register_agent(unique("agent-b"), labels={"gpu": "false", "zone": "b"})
    return a, b


async def submit(
    admin: BrokerClient, work_type: str, targeting: Targeting, **kwargs: object
) -> WorkItem:
    result = await admin.submit(
        SubmitRequest(work_type=work_type, spec="echo hello", targeting=targeting, **kwargs)  # type: ignore[arg-type]
    )
    assert result.created
    assert isinstance(result.item, WorkItem)
    return result.item


async def statuses(admin: BrokerClient, work_id: uuid.UUID) -> list[tuple[str, str]]:
    return [
        (e.from_status.value if e.from_status else "-", e.to_status.value)
        for e in await admin.events(work_id)
    ]


async def test_pending_lists_follow_targeting(admin: BrokerClient, broker: BrokerProcess) -> None:
    work_type = unique("e2e")
    a, b = await two_agents(admin)
    gpu = await submit(admin, work_type, Targeting.labels("gpu=true"))
    only_b = await submit(admin, work_type, Targeting.agents(b.agent.id))
    zones = await submit(admin, work_type, Targeting.labels("zone in (a,b)"))
    everyone = await submit(admin, work_type, Targeting.everyone())

    pending_a = {w.id for w in await admin.pending(a.agent.id, [work_type])}
    pending_b = {w.id for w in await admin.pending(b.agent.id, [work_type])}
    assert pending_a == {gpu.id, zones.id, everyone.id}
    assert pending_b == {only_b.id, zones.id, everyone.id}

    # An agent's own token sees its own pending list, and the same items.
    async with BrokerClient(broker.url, a.token) as as_a:
        assert {w.id for w in await as_a.pending(a.agent.id, [work_type])} == pending_a

    with pytest.raises(NotEligible):
        await admin.claim(only_b.id, a.agent.id)

    # Relabelling B gives it the gpu work at once.
    await admin.update_agent(b.agent.id, labels={"gpu": "true", "zone": "b"})
    assert gpu.id in {w.id for w in await admin.pending(b.agent.id, [work_type])}


async def test_claim_heartbeat_complete_is_logged(
    admin: BrokerClient, broker: BrokerProcess
) -> None:
    work_type = unique("e2e")
    a, _ = await two_agents(admin)
    item = await submit(admin, work_type, Targeting.labels("gpu=true"), priority=5)
    async with BrokerClient(broker.url, a.token) as agent:
        [claimed] = await agent.claim_next(a.agent.id, [work_type], limit=5)
        assert claimed.id == item.id
        assert claimed.status is WorkStatus.CLAIMED
        assert claimed.attempt == 1
        assert claimed.claimed_by == a.agent.id
        assert await agent.claim_next(a.agent.id, [work_type], limit=5) == []

        beat = await agent.heartbeat(claimed.token, a.agent.id)
        assert beat.status is WorkStatus.CLAIMED
        assert beat.lease_expires_at is not None and claimed.lease_expires_at is not None
        assert beat.lease_expires_at >= claimed.lease_expires_at

        record = await agent.complete(claimed.token, a.agent.id, result="sha256:abc")
        again = await agent.complete(claimed.token, a.agent.id, result="sha256:abc")
    assert record.status is WorkStatus.SUCCEEDED
    assert record.result == "sha256:abc"
    assert again == record  # completion is idempotent per token

    fetched = await admin.get(item.id)
    assert isinstance(fetched, ExecutionRecord)
    assert fetched.status is WorkStatus.SUCCEEDED
    logged = await admin.list_log(LogQuery(work_type=work_type))
    assert [r.id for r in logged] == [item.id]
    assert await admin.list_work(WorkQuery(work_type=work_type)) == []
    assert await statuses(admin, item.id) == [  # a plain heartbeat adds no event
        ("-", "PENDING"),
        ("PENDING", "CLAIMED"),
        ("CLAIMED", "SUCCEEDED"),
    ]


async def test_fail_retries_within_the_budget_then_requeue(admin: BrokerClient) -> None:
    work_type = unique("e2e")
    a, _ = await two_agents(admin)
    item = await submit(admin, work_type, Targeting.everyone(), retry_policy=NOW_RETRY)

    [first] = await admin.claim_next(a.agent.id, [work_type])
    retried = await admin.fail(first.token, a.agent.id, Failure.retryable("RegistryUnreachable"))
    assert isinstance(retried, WorkItem)
    assert retried.status is WorkStatus.PENDING
    assert retried.last_error == Failure.retryable("RegistryUnreachable")

    [second] = await admin.claim_next(a.agent.id, [work_type])
    assert second.attempt == 2
    with pytest.raises(LeaseLost):  # the first claim's token is stale now
        await admin.complete(first.token, a.agent.id)
    dead = await admin.fail(second.token, a.agent.id, Failure.retryable("RegistryUnreachable"))
    assert isinstance(dead, ExecutionRecord)
    assert dead.status is WorkStatus.FAILED  # budget spent: a dead letter
    dead_letters = await admin.list_log(LogQuery(status=WorkStatus.FAILED, work_type=work_type))
    assert [r.id for r in dead_letters] == [item.id]

    requeued = await admin.requeue(item.id)
    assert requeued.status is WorkStatus.PENDING
    [third] = await admin.claim_next(a.agent.id, [work_type])
    done = await admin.complete(third.token, a.agent.id)
    assert done.status is WorkStatus.SUCCEEDED
    assert await statuses(admin, item.id) == [
        ("-", "PENDING"),
        ("PENDING", "CLAIMED"),
        ("CLAIMED", "PENDING"),
        ("PENDING", "CLAIMED"),
        ("CLAIMED", "FAILED"),
        ("FAILED", "PENDING"),
        ("PENDING", "CLAIMED"),
        ("CLAIMED", "SUCCEEDED"),
    ]


async def test_retry_waits_for_its_backoff_and_permanent_failures_are_not_retried(
    admin: BrokerClient,
) -> None:
    work_type = unique("e2e")
    a, _ = await two_agents(admin)
    slow = await submit(
        admin,
        work_type,
        Targeting.everyone(),
        retry_policy=RetryPolicy(base_delay=timedelta(hours=1)),
    )
    [claimed] = await admin.claim_next(a.agent.id, [work_type])
    before = datetime.now(UTC)
    retried = await admin.fail(claimed.token, a.agent.id, Failure.retryable("Timeout"))
    assert isinstance(retried, WorkItem)
    assert retried.not_before is not None
    assert retried.not_before >= before + timedelta(minutes=59)
    assert await admin.pending(a.agent.id, [work_type]) == []
    assert await admin.claim_next(a.agent.id, [work_type]) == []
    assert (await admin.get(slow.id)).status is WorkStatus.PENDING

    permanent = await submit(admin, work_type, Targeting.everyone())
    # The slow item is not claimable, so the next claim is the new one.
    [claimed] = await admin.claim_next(a.agent.id, [work_type])
    assert claimed.id == permanent.id
    record = await admin.fail(claimed.token, a.agent.id, Failure.permanent("InvalidInput"))
    assert isinstance(record, ExecutionRecord)
    assert record.status is WorkStatus.FAILED
    assert record.item.executions == 1


async def test_hold_approve_and_cancel(admin: BrokerClient) -> None:
    work_type = unique("e2e")
    a, _ = await two_agents(admin)
    held = await submit(admin, work_type, Targeting.everyone(), requires_approval=True)
    assert held.status is WorkStatus.HELD
    assert await admin.pending(a.agent.id, [work_type]) == []
    approved = await admin.approve(held.id)
    assert approved.status is WorkStatus.PENDING
    assert [w.id for w in await admin.pending(a.agent.id, [work_type])] == [held.id]
    with pytest.raises(InvalidTransition):
        await admin.approve(held.id)

    # Cancelling a claimed item tells its agent to stop at the next heartbeat.
    [claimed] = await admin.claim_next(a.agent.id, [work_type])
    cancelled = await admin.cancel(held.id, reason="not needed")
    assert cancelled.status is WorkStatus.CANCELED
    with pytest.raises(WorkCancelled):
        await admin.heartbeat(claimed.token, a.agent.id)
    with pytest.raises(WorkqueueError):
        await admin.cancel(held.id)
    assert await statuses(admin, held.id) == [
        ("-", "HELD"),
        ("HELD", "PENDING"),
        ("PENDING", "CLAIMED"),
        ("CLAIMED", "CANCELED"),
    ]
    with pytest.raises(UnknownWork):
        await admin.get(uuid.uuid4())


async def test_expired_lease_is_swept_by_the_maintenance_loop(admin: BrokerClient) -> None:
    work_type = unique("e2e")
    a, _ = await two_agents(admin)
    item = await submit(
        admin,
        work_type,
        Targeting.everyone(),
        retry_policy=NOW_RETRY,
        claim_timeout=timedelta(seconds=1),
    )
    [claimed] = await admin.claim_next(a.agent.id, [work_type])
    current: WorkItem | ExecutionRecord = claimed
    with anyio.fail_after(30):
        while current.status is WorkStatus.CLAIMED:
            await anyio.sleep(0.2)
            current = await admin.get(item.id)
    assert current.status is WorkStatus.PENDING
    assert isinstance(current, WorkItem)
    assert current.last_error is not None and current.last_error.reason == "LeaseExpired"
    with pytest.raises(LeaseLost):
        await admin.heartbeat(claimed.token, a.agent.id)


async def test_drained_agent_claims_nothing_new(admin: BrokerClient) -> None:
    work_type = unique("e2e")
    a, _ = await two_agents(admin)
    await submit(admin, work_type, Targeting.everyone())
    drained: Agent = await admin.drain_agent(a.agent.id)
    assert drained.status.value == "DRAINING"
    assert await admin.claim_next(a.agent.id, [work_type]) == []
    listed = {agent.id: agent for agent in await admin.list_agents()}
    assert listed[a.agent.id].status.value == "DRAINING"
