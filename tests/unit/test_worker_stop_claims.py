"""A claim call still in flight when a worker stops: nothing it brings back runs.

The reported quirk: a stopping worker released the claims it held, its own long-poll
(still open) took a released item straight back, and the worker released it again: one
more attempt and one more claimed/released pair on the item's timeline for nothing, and
an attempt started (a handler run, a Kubernetes ``Work`` created) for work the worker was
abandoning. Now a claim answered after ``stop()`` is released at once without running;
a stopping worker releases what it holds only once its last claim call has returned; and
a source whose ``claim_next`` is cancel-safe has that call cancelled at ``stop()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from uuid import UUID

import anyio
import pytest
from test_worker_support import (
    HANG_GUARD,
    GatedSource,
    Harness,
    fast_options,
    harness_for,
    memory_harness,
    until,
)

from integration.http.support import ADMIN_TOKEN, running_broker, server_errors
from workqueue_core.domain.models import (
    ClaimToken,
    Event,
    SubmitRequest,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.executor.claims import cancel_safe
from workqueue_core.executor.worker import SHUTDOWN, Job, Worker
from workqueue_core.ports.agent import WorkSource
from workqueue_http.client import BrokerClient


def claims_in(events: Sequence[Event]) -> int:
    return sum(1 for e in events if e.to_status is WorkStatus.CLAIMED)


def released_once_unrun(item: WorkItem, events: Sequence[Event]) -> None:
    """Claimed once, then released by the shutdown: PENDING, attempt 1, nothing charged."""
    assert item.status is WorkStatus.PENDING
    assert (item.attempt, item.executions, item.claimed_by) == (1, 0, None)
    assert item.last_error is None
    assert claims_in(events) == 1
    claimed, released = events[-2:]
    assert (claimed.to_status, released.to_status) == (WorkStatus.CLAIMED, WorkStatus.PENDING)
    assert released.detail.startswith(f"released: {SHUTDOWN}")


async def queued(harness: Harness, work_id: UUID) -> WorkItem:
    state = await harness.state(work_id)
    assert isinstance(state, WorkItem), state
    return state


class HeldClaims(GatedSource):
    """Holds the worker's second claim call open until ``let_go``, then claims what is
    PENDING at that moment without waiting: a long-poll answered after the stop."""

    def __init__(self, inner: WorkSource) -> None:
        super().__init__(inner)
        self.held = anyio.Event()
        self.let_go = anyio.Event()
        self.released: list[UUID] = []

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        if self.claim_calls == 1:  # the first call claimed; this one is held
            self.claim_calls += 1
            self.held.set()
            await self.let_go.wait()
            return await self.inner.claim_next(agent_id, work_types, limit, 0.0)
        return await super().claim_next(agent_id, work_types, limit, wait)

    async def release(self, token: ClaimToken, agent_id: UUID, reason: str = "") -> WorkItem:
        item = await super().release(token, agent_id, reason)
        self.released.append(token.work_id)
        return item


def stopping_worker(
    source: WorkSource, agent_id: UUID | None = None, **options: object
) -> tuple[Worker, anyio.Event, list[UUID]]:
    """A worker (3 slots, no grace) with a ``stuck`` handler that waits until cancelled
    (the event is set then) and a ``late`` handler that lists the items it ran."""
    worker = Worker(
        source,
        name="stopping",
        agent_id=agent_id,
        options=fast_options(concurrency=3, batch=3, grace_period=0.0, **options),
    )
    stuck_cancelled = anyio.Event()
    ran: list[UUID] = []

    @worker.handler("stuck")
    async def stuck(job: Job) -> str:
        try:
            await anyio.sleep_forever()
        finally:
            stuck_cancelled.set()
        return "never"  # pragma: no cover

    @worker.handler("late")
    async def late(job: Job) -> str:
        ran.append(job.id)
        return "ran"

    return worker, stuck_cancelled, ran


@pytest.fixture(params=["memory", "postgres"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with harness_for(request.param) as made:
        yield made


@pytest.mark.anyio
async def test_a_claim_answered_after_stop_is_released_once_and_never_run(
    harness: Harness,
) -> None:
    source = HeldClaims(harness.service)
    worker, stuck_cancelled, ran = stopping_worker(source)
    stuck_id = await harness.submit("stuck")
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await source.held.wait()
            assert worker.running == 1
            worker.stop()
            late_id = await harness.submit("late")  # PENDING while the claim is held
            await stuck_cancelled.wait()  # the grace period (0 s) is over
            # every task has gone as far as it can: before the fix the stuck item was
            # released by now, PENDING for the held claim to take again
            await anyio.wait_all_tasks_blocked()
            source.let_go.set()

    # the stuck item was released once, after the held claim answered, so that claim
    # could not take it back (before: attempt 2, a second claimed/released pair)
    released_once_unrun(await queued(harness, stuck_id), await harness.events(stuck_id))
    # the held claim took the late item: released at once, its handler never called
    assert ran == []
    released_once_unrun(await queued(harness, late_id), await harness.events(late_id))
    assert sorted(source.released) == sorted([stuck_id, late_id])  # each exactly once
    for work_id in (stuck_id, late_id):
        await harness.check_replay(work_id)
    assert await harness.service.list_work(WorkQuery(status=WorkStatus.CLAIMED)) == []
    assert (worker.stats.claimed, worker.stats.released, worker.stats.succeeded) == (2, 2, 0)
    assert worker.running == 0


@pytest.mark.anyio
async def test_cancelling_a_stopping_worker_ends_the_held_claim_and_releases() -> None:
    harness = memory_harness()
    source = HeldClaims(harness.service)
    worker, stuck_cancelled, ran = stopping_worker(source)
    stuck_id = await harness.submit("stuck")
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await source.held.wait()
            worker.stop()
            await stuck_cancelled.wait()
            await anyio.wait_all_tasks_blocked()  # the release waits for the held claim
            tg.cancel_scope.cancel()  # a second signal: the claim call is cut, unanswered
    assert not source.let_go.is_set()
    assert ran == []
    assert source.released == [stuck_id]
    released_once_unrun(await queued(harness, stuck_id), await harness.events(stuck_id))
    assert await harness.service.list_work(WorkQuery(status=WorkStatus.CLAIMED)) == []
    assert worker.running == 0


class Watched(GatedSource):
    """Counts the claim calls in flight, and those cancelled (the HTTP client is not
    cancel-safe: its calls are waited for, never cancelled)."""

    def __init__(self, inner: WorkSource) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.cancelled = 0

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        self.in_flight += 1
        try:
            return await super().claim_next(agent_id, work_types, limit, wait)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


class CancelSafe(Watched):
    """A source over a broker in the process whose ``claim_next`` claims nothing when
    cancelled (the memory store claims without suspending); counts the calls cancelled."""

    claim_cancel_safe = True


def test_only_a_source_that_says_so_is_cancel_safe() -> None:
    harness = memory_harness()
    assert cancel_safe(CancelSafe(harness.service))
    assert not cancel_safe(GatedSource(harness.service))
    assert not cancel_safe(harness.service)


@pytest.mark.anyio
async def test_stop_cancels_the_long_poll_of_a_cancel_safe_source() -> None:
    harness = memory_harness()
    source = CancelSafe(harness.service)
    # a 30 s long-poll: run() returns within the hang guard only if stop() cancels it
    worker, stuck_cancelled, ran = stopping_worker(source, claim_wait=30.0)
    stuck_id = await harness.submit("stuck")
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await until(lambda: worker.running == 1 and source.in_flight == 1)
            worker.stop()
            late_id = await harness.submit("late")
    assert stuck_cancelled.is_set()
    assert source.cancelled == 1
    assert ran == []
    # the stuck item was released once and not claimed back; the late one never claimed
    released_once_unrun(await queued(harness, stuck_id), await harness.events(stuck_id))
    late = await queued(harness, late_id)
    assert (late.status, late.attempt) == (WorkStatus.PENDING, 0)
    assert claims_in(await harness.events(late_id)) == 0
    assert (worker.stats.claimed, worker.stats.released) == (1, 1)


class ClaimsThroughCancel(CancelSafe):
    """Says it is cancel-safe, yet its held claim goes through a stop's cancellation and
    answers (as a request cut mid-flight may still claim at the broker)."""

    def __init__(self, inner: WorkSource) -> None:
        super().__init__(inner)
        self.held = anyio.Event()
        self.let_go = anyio.Event()

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        if self.claim_calls == 0:
            return await super().claim_next(agent_id, work_types, limit, wait)
        with anyio.CancelScope(shield=True):
            self.held.set()
            await self.let_go.wait()
            return await super().claim_next(agent_id, work_types, limit, 0.0)
        raise AssertionError("unreachable: a shielded scope absorbs no cancellation")


@pytest.mark.anyio
async def test_a_claim_that_answers_despite_the_cancel_is_released_not_lost() -> None:
    harness = memory_harness()
    source = ClaimsThroughCancel(harness.service)
    worker, _, ran = stopping_worker(source)
    stuck_id = await harness.submit("stuck")
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await source.held.wait()
            worker.stop()  # cancels the held call's scope; the call goes on regardless
            late_id = await harness.submit("late")
            source.let_go.set()
    assert ran == []
    for work_id in (stuck_id, late_id):
        released_once_unrun(await queued(harness, work_id), await harness.events(work_id))
    assert await harness.service.list_work(WorkQuery(status=WorkStatus.CLAIMED)) == []
    assert (worker.stats.claimed, worker.stats.released) == (2, 2)


async def over_http(url: str) -> None:
    async with BrokerClient(url, ADMIN_TOKEN, retries=0) as admin:
        issued = await admin.register_agent("stopping", {"pool": "http"})

        async def submit(work_type: str) -> UUID:
            result = await admin.submit(
                SubmitRequest(
                    work_type=work_type,
                    spec="{}",
                    targeting=Targeting.labels("pool=http"),
                    retry_policy=RetryPolicy(max_retries=2, base_delay=timedelta(0)),
                )
            )
            return result.item.id

        stuck_id = await submit("stuck")
        async with BrokerClient(url, issued.token) as client:
            source = Watched(client)
            assert not cancel_safe(client)
            worker, stuck_cancelled, ran = stopping_worker(
                source, issued.agent.id, claim_wait=10.0, heartbeat_interval=1.0
            )
            with anyio.fail_after(HANG_GUARD):
                async with anyio.create_task_group() as tg:
                    await tg.start(worker.run)
                    await until(lambda: worker.running == 1 and source.in_flight == 1)
                    # the long-poll is open: the stop cannot cut it (the broker could
                    # claim regardless), so what it claims from here on is given back
                    worker.stop()
                    late_id = await submit("late")
            assert stuck_cancelled.is_set()
            for work_id in (stuck_id, late_id):
                item = await admin.get(work_id)
                assert isinstance(item, WorkItem)
                released_once_unrun(item, await admin.events(work_id))
            assert ran == []
            assert (worker.stats.claimed, worker.stats.released) == (2, 2)


def test_over_http_a_long_poll_answered_after_stop_is_released_not_run() -> None:
    with running_broker() as broker:
        anyio.run(over_http, broker.url)
        assert server_errors(broker) == []
