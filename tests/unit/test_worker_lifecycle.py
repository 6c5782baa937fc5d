"""The in-process worker over a real store (memory and PostgreSQL) with a fake clock.

Each test runs a real ``Worker`` against ``BrokerService`` and checks the item's
final state in the store: results, retries with backoff on the fake clock,
permanent failures, timeouts, the budget, lost leases and cancellation, the
concurrency limit and graceful shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import anyio
import pytest
from test_worker_support import (
    HANG_GUARD,
    GatedSource,
    Harness,
    fast_options,
    harness_for,
    running,
    until,
)

from workqueue_core.domain.errors import InvalidInput, WorkqueueError
from workqueue_core.domain.limits import MAX_MESSAGE_BYTES, MAX_REASON_CHARS, MAX_RESULT_BYTES
from workqueue_core.domain.models import (
    LEASE_EXPIRED,
    ClaimToken,
    Completion,
    ExecutionRecord,
    Failure,
    FailureClass,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.executor.handlers import Success
from workqueue_core.executor.worker import (
    NO_HANDLER,
    SHUTDOWN,
    TIMEOUT,
    Job,
    PermanentError,
    RetryableError,
    Worker,
    WorkerOptions,
)
from workqueue_core.service.broker import BrokerService

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "postgres"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with harness_for(request.param) as made:
        yield made


def make_worker(harness: Harness, name: str = "worker-1", **options: object) -> Worker:
    return Worker(
        harness.source(), name=name, labels={"pool": "test"}, options=fast_options(**options)
    )


def gated(worker: Worker) -> GatedSource:
    assert isinstance(worker.source, GatedSource)
    return worker.source


async def queued(harness: Harness, work_id: UUID) -> WorkItem:
    state = await harness.state(work_id)
    assert isinstance(state, WorkItem), f"{work_id} ended: {state}"
    return state


async def lease_renewed_at(harness: Harness, work_id: UUID, now: datetime) -> bool:
    """True once a heartbeat at ``now`` or later has extended the item's lease."""
    item = await queued(harness, work_id)
    expires = item.lease_expires_at
    return expires is not None and expires >= now + item.claim_timeout


async def assert_released(harness: Harness, work_id: UUID, attempt: int = 1) -> None:
    """The item is PENDING again, uncharged: its budget is as before the claim (events too)."""
    item = await queued(harness, work_id)
    assert item.status is WorkStatus.PENDING
    assert (item.attempt, item.executions, item.claimed_by) == (attempt, attempt - 1, None)
    assert item.last_error is None
    events = await harness.events(work_id)
    claimed, released = events[-2:]
    assert (claimed.to_status, released.to_status) == (WorkStatus.CLAIMED, WorkStatus.PENDING)
    assert released.detail.startswith(f"released: {SHUTDOWN}")
    assert released.executions == claimed.executions - 1
    await harness.check_replay(work_id)


async def claimed_count(harness: Harness) -> int:
    return len(await harness.service.list_work(WorkQuery(status=WorkStatus.CLAIMED)))


async def test_success_records_the_result(harness: Harness) -> None:
    worker = make_worker(harness)
    seen: list[tuple[object, ...]] = []

    @worker.handler("echo")
    async def echo(job: Job) -> str:
        seen.append((job.work_type, job.spec, job.labels, job.attempt, job.correlation_id))
        return f"echo:{job.spec}"

    work_id = await harness.submit("echo", "hello", labels={"k": "v"}, correlation_id="corr-1")
    async with running(worker) as agent_id:
        [record] = await harness.wait_ended(work_id)
        agent = await harness.service.get_agent(agent_id)

    assert record.status is WorkStatus.SUCCEEDED
    assert record.result == "echo:hello"
    assert record.item.claimed_by == agent_id
    assert record.item.executions == 1
    assert seen == [("echo", "hello", {"k": "v"}, 1, "corr-1")]
    assert (agent.name, agent.labels) == ("worker-1", {"pool": "test"})
    assert agent.last_seen_at is not None
    assert worker.stats.succeeded == 1
    await harness.check_replay(work_id)


async def test_retryable_failure_then_success_respects_backoff(harness: Harness) -> None:
    worker = make_worker(harness)
    source = gated(worker)
    attempts: list[int] = []

    @worker.handler("flaky")
    async def flaky(job: Job) -> str:
        attempts.append(job.attempt)
        if job.attempt == 1:
            raise RetryableError("RegistryDown", "503 from the registry")
        return "pushed"

    work_id = await harness.submit("flaky", base_delay=60)
    failed_at = harness.clock.now()
    async with running(worker):
        await until(lambda: worker.stats.retried == 1)
        item = await queued(harness, work_id)
        assert item.status is WorkStatus.PENDING
        assert item.not_before == failed_at + timedelta(seconds=60)
        assert item.last_error == Failure.retryable("RegistryDown", "503 from the registry")

        for step in (0, 59):  # before not_before the worker keeps polling and claims nothing
            harness.clock.advance(step)
            polls = source.claim_calls

            def polled_five_more(before: int = polls) -> bool:
                return source.claim_calls >= before + 5

            await until(polled_five_more)
            assert attempts == [1]

        harness.clock.advance(1)
        [record] = await harness.wait_ended(work_id)

    assert attempts == [1, 2]
    assert record.status is WorkStatus.SUCCEEDED
    assert record.result == "pushed"
    assert record.item.executions == 2
    details = [e.detail for e in await harness.events(work_id)]
    assert any(d.startswith("retryable failure: RegistryDown") for d in details), details
    await harness.check_replay(work_id)


async def test_permanent_failure_goes_straight_to_the_log(harness: Harness) -> None:
    worker = make_worker(harness)
    calls = 0

    @worker.handler("compile")
    async def compile_(job: Job) -> str:
        nonlocal calls
        calls += 1
        raise PermanentError("InvalidSource", "no such repository")

    work_id = await harness.submit("compile", max_retries=3)
    async with running(worker):
        [record] = await harness.wait_ended(work_id)

    assert record.status is WorkStatus.FAILED
    assert record.item.executions == 1
    assert record.item.last_error == Failure.permanent("InvalidSource", "no such repository")
    assert calls == 1
    assert worker.stats.failed == 1


async def test_attempt_timeout_counts_as_retryable(harness: Harness) -> None:
    worker = make_worker(harness)
    cancelled = anyio.Event()

    @worker.handler("slow", timeout=0.05)
    async def slow(job: Job) -> str:
        if job.attempt == 1:
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.set()
        return "second time lucky"

    work_id = await harness.submit("slow", max_retries=1)
    async with running(worker):
        [record] = await harness.wait_ended(work_id)

    assert cancelled.is_set()
    assert record.status is WorkStatus.SUCCEEDED
    assert record.item.executions == 2
    assert worker.stats.timeouts == 1
    details = [e.detail for e in await harness.events(work_id)]
    assert any(d.startswith(f"retryable failure: {TIMEOUT}") for d in details), details


async def test_default_timeout_and_budget_exhaustion_end_failed(harness: Harness) -> None:
    worker = make_worker(harness, default_timeout=0.03)
    attempts: list[int] = []

    @worker.handler("hang")
    async def hang(job: Job) -> None:
        attempts.append(job.attempt)
        await anyio.sleep_forever()

    work_id = await harness.submit("hang", max_retries=2)
    async with running(worker):
        [record] = await harness.wait_ended(work_id)

    assert attempts == [1, 2, 3]
    assert record.status is WorkStatus.FAILED
    assert record.item.executions == 3
    assert record.item.last_error is not None
    assert record.item.last_error.failure_class is FailureClass.RETRYABLE
    assert record.item.last_error.reason == TIMEOUT
    last = (await harness.events(work_id))[-1]
    assert last.detail.startswith("BudgetSpent after 3 runs"), last.detail


async def test_retryable_errors_until_the_budget_is_spent(harness: Harness) -> None:
    worker = make_worker(harness)
    attempts: list[int] = []

    @worker.handler("flaky")
    async def flaky(job: Job) -> str:
        attempts.append(job.attempt)
        raise RetryableError("Unreachable")

    work_id = await harness.submit("flaky", max_retries=2)
    async with running(worker):
        [record] = await harness.wait_ended(work_id)

    assert attempts == [1, 2, 3]
    assert record.status is WorkStatus.FAILED
    assert record.item.executions == 3
    assert worker.stats.retried == 2
    assert worker.stats.failed == 1
    await harness.check_replay(work_id)


async def test_other_exceptions_go_through_the_classify_hook(harness: Harness) -> None:
    def classify(error: BaseException) -> Failure:
        if isinstance(error, KeyError):
            return Failure.permanent("MissingKey", str(error))
        return Failure.retryable(type(error).__name__, str(error))

    worker = Worker(harness.source(), name="w", classify=classify, options=fast_options())

    @worker.handler("parse")
    async def parse(job: Job) -> str:
        if job.spec == "key":
            raise KeyError("image")
        raise ValueError("bad number")

    key = await harness.submit("parse", "key", max_retries=3)
    value = await harness.submit("parse", "value", max_retries=1)
    async with running(worker):
        key_record, value_record = await harness.wait_ended(key, value)

    assert key_record.item.last_error == Failure.permanent("MissingKey", "'image'")
    assert key_record.item.executions == 1
    assert value_record.item.last_error == Failure.retryable("ValueError", "bad number")
    assert value_record.item.executions == 2


async def test_default_classification_is_retryable_by_type_name(harness: Harness) -> None:
    worker = make_worker(harness)

    @worker.handler("oops")
    async def oops(job: Job) -> str:
        raise ZeroDivisionError("division by zero")

    work_id = await harness.submit("oops", max_retries=0)
    async with running(worker):
        [record] = await harness.wait_ended(work_id)

    assert record.item.last_error == Failure.retryable("ZeroDivisionError", "division by zero")


@pytest.mark.parametrize("result", [42, "nul\x00inside", "x" * (MAX_RESULT_BYTES + 1)])
async def test_a_result_the_broker_cannot_keep_is_a_permanent_failure(
    harness: Harness, result: object
) -> None:
    worker = make_worker(harness)

    @worker.handler("bad")
    async def bad(job: Job) -> str:
        return result  # type: ignore[return-value]

    work_id = await harness.submit("bad", max_retries=3)
    async with running(worker):
        [record] = await harness.wait_ended(work_id)

    assert record.status is WorkStatus.FAILED
    assert record.item.last_error is not None
    assert record.item.last_error.reason == "InvalidResult"
    # permanent: budget left (3 retries) but the one run is the only one
    assert record.item.last_error.failure_class is FailureClass.PERMANENT
    assert (record.item.executions, record.item.attempt) == (1, 1)


class RefusingSource(GatedSource):
    """A broker that refuses results it cannot keep with ``InvalidInput`` for the whole
    call (as the HTTP broker does with a bad entry), though the worker found them fine."""

    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]:
        if any(c.result == "refused by the broker" for c in completions):
            raise InvalidInput("the broker refuses this result")
        return await super().complete_many_quiet(completions)


async def test_a_result_the_broker_refuses_fails_only_its_own_attempt(harness: Harness) -> None:
    worker = Worker(
        RefusingSource(harness.service), name="worker-1", options=fast_options(concurrency=4)
    )
    release = anyio.Event()

    @worker.handler("answer")
    async def answer(job: Job) -> str:
        await release.wait()  # let all four finish together: one batch
        return job.spec

    refused = await harness.submit("answer", spec="refused by the broker", max_retries=3)
    kept = [await harness.submit("answer", spec=f"fine {i}") for i in range(3)]
    async with running(worker):
        await until(lambda: worker.running == 4)
        release.set()
        [bad, *good] = await harness.wait_ended(refused, *kept)

    assert bad.status is WorkStatus.FAILED
    assert bad.item.last_error is not None
    assert bad.item.last_error.reason == "InvalidResult"
    assert bad.item.last_error.failure_class is FailureClass.PERMANENT
    assert (bad.item.executions, bad.item.attempt) == (1, 1)
    assert [r.status for r in good] == [WorkStatus.SUCCEEDED] * 3
    assert [r.result for r in good] == ["fine 0", "fine 1", "fine 2"]
    assert (worker.stats.succeeded, worker.stats.failed) == (3, 1)


class TypeBlindSource(GatedSource):
    """A broker that hands out work of every type, whatever the worker asked for (as a
    broker that ignored the type filter would)."""

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        return await super().claim_next(agent_id, None, limit, wait)


async def test_work_of_a_type_without_handler_fails_permanently_after_one_run(
    harness: Harness,
) -> None:
    worker = Worker(TypeBlindSource(harness.service), name="worker-1", options=fast_options())

    @worker.handler("known")
    async def known(job: Job) -> str:
        return "ran"

    stranger = await harness.submit("unknown", max_retries=3)
    async with running(worker):
        [record] = await harness.wait_ended(stranger)

    assert record.status is WorkStatus.FAILED
    assert record.item.last_error == Failure.permanent(NO_HANDLER, "no handler for 'unknown'")
    assert (record.item.executions, record.item.attempt) == (1, 1)
    assert worker.stats.failed == 1


async def test_failure_text_is_cleaned_before_it_is_reported(harness: Harness) -> None:
    worker = make_worker(harness)

    @worker.handler("noisy")
    async def noisy(job: Job) -> str:
        raise RetryableError("Noisy\x00" * 100, "line\x00" * 5000)

    work_id = await harness.submit("noisy", max_retries=0)
    async with running(worker):
        [record] = await harness.wait_ended(work_id)

    error = record.item.last_error
    assert error is not None
    assert error.reason == ("Noisy" * 100)[:MAX_REASON_CHARS]
    assert "\x00" not in error.message
    assert len(error.message.encode("utf-8")) <= MAX_MESSAGE_BYTES
    assert worker.stats.report_errors == 0


async def test_local_retries_are_charged_to_the_budget(harness: Harness) -> None:
    worker = make_worker(harness)

    @worker.handler("retrying")
    async def retrying(job: Job) -> str:
        job.report_local_retries(2)
        return "made it"

    work_id = await harness.submit("retrying", max_retries=3)
    async with running(worker):
        [record] = await harness.wait_ended(work_id)

    assert record.status is WorkStatus.SUCCEEDED
    assert record.item.executions == 3


async def test_heartbeats_extend_the_lease(harness: Harness) -> None:
    worker = make_worker(harness)
    release = anyio.Event()

    @worker.handler("long")
    async def long(job: Job) -> str:
        await release.wait()
        return "done"

    work_id = await harness.submit("long", claim_timeout=30)
    async with running(worker):
        await until(lambda: worker.running == 1)
        now = harness.clock.advance(20)
        await until(lambda: lease_renewed_at(harness, work_id, now))
        release.set()
        [record] = await harness.wait_ended(work_id)
    assert record.status is WorkStatus.SUCCEEDED


class SlowCompletions(GatedSource):
    """A broker whose completion calls wait until the test opens the gate."""

    def __init__(self, inner: BrokerService) -> None:
        super().__init__(inner)
        self.gate = anyio.Event()
        self.waiting = 0

    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]:
        self.waiting += 1
        await self.gate.wait()
        return await super().complete_many_quiet(completions)


async def test_a_claim_is_kept_alive_while_its_completion_is_in_flight(
    harness: Harness,
) -> None:
    source = SlowCompletions(harness.service)
    worker = Worker(source, name="worker-1", options=fast_options())

    @worker.handler("quick")
    async def quick(job: Job) -> str:
        return "done"

    work_id = await harness.submit("quick", claim_timeout=30)
    async with running(worker):
        await until(lambda: source.waiting == 1)  # the handler ended; its report waits
        now = harness.clock.advance(20)
        await until(lambda: lease_renewed_at(harness, work_id, now))
        harness.clock.advance(20)  # past the first lease: only the heartbeat kept it
        assert await harness.service.sweep() == []
        source.gate.set()
        [record] = await harness.wait_ended(work_id)
    assert record.status is WorkStatus.SUCCEEDED
    assert worker.stats.succeeded == 1 and worker.stats.lease_lost == 0


async def test_lease_lost_to_the_sweep_cancels_the_handler(harness: Harness) -> None:
    worker = make_worker(harness)
    source = gated(worker)
    started = anyio.Event()
    cancelled = anyio.Event()

    @worker.handler("slow")
    async def slow(job: Job) -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return "never"  # pragma: no cover

    work_id = await harness.submit("slow", claim_timeout=30, base_delay=600)
    async with running(worker) as agent_id:
        await started.wait()
        source.pause_heartbeats()
        await until(lambda: source.heartbeats_in_flight == 0)
        harness.clock.advance(31)
        swept = await harness.service.sweep()
        assert [s.id for s in swept] == [work_id]
        source.resume_heartbeats()
        await cancelled.wait()
        await until(lambda: worker.running == 0)

    item = await queued(harness, work_id)
    assert item.status is WorkStatus.PENDING
    assert item.last_error is not None
    assert item.last_error.reason == LEASE_EXPIRED
    assert worker.stats.lease_lost == 1
    events = await harness.events(work_id)
    assert events[-1].actor == "sweeper"
    assert not [e for e in events if e.actor == f"agent:{agent_id}" and e.detail != "claimed"]


async def test_cancelled_work_cancels_the_handler(harness: Harness) -> None:
    worker = make_worker(harness)
    started = anyio.Event()
    cancelled = anyio.Event()

    @worker.handler("slow")
    async def slow(job: Job) -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return "never"  # pragma: no cover

    work_id = await harness.submit("slow")
    async with running(worker):
        await started.wait()
        await harness.service.cancel(work_id, "admin", "no longer needed")
        await cancelled.wait()
        await until(lambda: worker.running == 0)

    record = await harness.record(work_id)
    assert record.status is WorkStatus.CANCELED
    assert record.finished_by == "admin"
    assert worker.stats.lease_lost == 1
    assert (await harness.events(work_id))[-1].to_status is WorkStatus.CANCELED
    await harness.check_replay(work_id)


async def test_one_claim_of_handlers_that_suspend_and_handlers_that_do_not(
    harness: Harness,
) -> None:
    # One claim: handlers that end without suspending share a task (HandlerTasks.start_many);
    # a timeout, a lost claim and a slow success among them each end only their own attempt.
    worker = make_worker(harness, concurrency=8, batch=8)
    source = gated(worker)
    started = anyio.Event()
    go_on = anyio.Event()
    waiting_tasks: set[object] = set()
    outcome: dict[str, str] = {}
    claimed_before_running: list[int] = []

    @worker.handler("quick")
    async def quick(job: Job) -> str:
        claimed_before_running.append(worker.stats.claimed)
        return f"quick {job.spec}"

    @worker.handler("timed", timeout=0.05)
    async def timed(job: Job) -> str:
        try:
            await anyio.sleep_forever()
        finally:
            outcome["timed"] = "cancelled"
        return "never"  # pragma: no cover

    @worker.handler("lost")
    async def lost(job: Job) -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            outcome["lost"] = "cancelled"
        return "never"  # pragma: no cover

    @worker.handler("waits")
    async def waits(job: Job) -> str:
        task = asyncio.current_task()
        waiting_tasks.add(task)
        await go_on.wait()
        assert asyncio.current_task() is task
        return "waited"

    kinds = ["quick", "timed", "quick", "lost", "waits", "quick", "waits", "quick"]
    ids = [
        await harness.submit(kind, str(n), max_retries=0, base_delay=600)
        for n, kind in enumerate(kinds)
    ]
    lost_id = ids[kinds.index("lost")]
    async with running(worker):
        await started.wait()
        await until(lambda: "timed" in outcome)
        await harness.service.cancel(lost_id, "admin", "no longer needed")
        await until(lambda: "lost" in outcome)
        go_on.set()
        records = await harness.wait_ended(*ids)
        await until(lambda: worker.running == 0)

    assert claimed_before_running == [8] * 4  # the eight came in one claim
    assert source.claim_calls >= 1
    by_kind = {
        kind: [r for k, r in zip(kinds, records, strict=True) if k == kind] for kind in kinds
    }
    assert [r.result for r in by_kind["quick"]] == ["quick 0", "quick 2", "quick 5", "quick 7"]
    assert all(r.status is WorkStatus.SUCCEEDED for r in by_kind["quick"] + by_kind["waits"])
    [timed_record] = by_kind["timed"]
    assert timed_record.status is WorkStatus.FAILED
    assert timed_record.item.last_error is not None
    assert timed_record.item.last_error.reason == TIMEOUT
    [lost_record] = by_kind["lost"]
    assert lost_record.status is WorkStatus.CANCELED
    assert outcome == {"timed": "cancelled", "lost": "cancelled"}
    assert len(waiting_tasks) == 2  # each handler that waited had a task of its own
    assert (worker.stats.succeeded, worker.stats.timeouts, worker.stats.lease_lost) == (6, 1, 1)
    for work_id in ids:
        await harness.check_replay(work_id)


async def test_concurrency_limit_is_never_exceeded(harness: Harness) -> None:
    worker = make_worker(harness, concurrency=3, batch=10)
    active = 0
    peak = 0
    release = anyio.Event()

    @worker.handler("count")
    async def count(job: Job) -> str:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await release.wait()
            await anyio.sleep(0)
        finally:
            active -= 1
        return "counted"

    ids = [await harness.submit("count") for _ in range(12)]
    async with running(worker):
        await until(lambda: active == 3)
        assert await claimed_count(harness) == 3  # no claims beyond the free slots
        release.set()
        records = await harness.wait_ended(*ids)

    assert peak == 3
    assert all(r.status is WorkStatus.SUCCEEDED for r in records)


async def test_claims_are_batched_by_free_slots(harness: Harness) -> None:
    worker = make_worker(harness, concurrency=5, batch=5)
    source = gated(worker)
    release = anyio.Event()

    @worker.handler("batch")
    async def batch(job: Job) -> str:
        await release.wait()
        return "ok"

    ids = [await harness.submit("batch") for _ in range(5)]
    async with running(worker):
        await until(lambda: worker.running == 5)
        assert source.claim_calls == 1
        release.set()
        await harness.wait_ended(*ids)


async def test_graceful_stop_finishes_within_grace_and_releases_the_rest(
    harness: Harness,
) -> None:
    worker = make_worker(harness, concurrency=2, grace_period=1.0)
    proceed = anyio.Event()
    stuck_cancelled = anyio.Event()

    @worker.handler("quick")
    async def quick(job: Job) -> str:
        await proceed.wait()
        return "finished in grace"

    @worker.handler("stuck")
    async def stuck(job: Job) -> str:
        try:
            await anyio.sleep_forever()
        finally:
            stuck_cancelled.set()
        return "never"  # pragma: no cover

    quick_id = await harness.submit("quick")
    stuck_id = await harness.submit("stuck", max_retries=3)
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await until(lambda: worker.running == 2)
            worker.stop()
            proceed.set()
    # run() has returned: nothing of this worker is claimed any more
    assert stuck_cancelled.is_set()
    assert await claimed_count(harness) == 0
    quick_record = await harness.record(quick_id)
    assert quick_record.result == "finished in grace"
    await assert_released(harness, stuck_id)
    assert worker.stats.released == 1

    second = make_worker(harness, name="worker-2")

    @second.handler("stuck")
    async def unstuck(job: Job) -> str:
        return f"done on attempt {job.attempt}"

    async with running(second):
        [record] = await harness.wait_ended(stuck_id)
    assert record.result == "done on attempt 2"
    assert record.item.executions == 1  # the released run was not charged
    await harness.check_replay(stuck_id)


def hanging_worker(harness: Harness) -> tuple[Worker, list[UUID]]:
    """A worker (3 slots) whose ``hang`` handler never returns; it lists the items it ran."""
    worker = make_worker(harness, concurrency=3)
    started: list[UUID] = []

    @worker.handler("hang")
    async def hang(job: Job) -> str:
        started.append(job.id)
        await anyio.sleep_forever()
        return "never"  # pragma: no cover

    return worker, started


async def test_cancelling_the_worker_releases_its_claims(harness: Harness) -> None:
    worker, started = hanging_worker(harness)
    ids = [await harness.submit("hang") for _ in range(3)]
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await until(lambda: len(started) == 3)
            tg.cancel_scope.cancel()

    assert await claimed_count(harness) == 0
    for work_id in ids:
        await assert_released(harness, work_id)
    assert worker.stats.released == 3


class SlowFailures(GatedSource):
    """A broker whose failure reports take a while (and count as they land)."""

    def __init__(self, inner: BrokerService) -> None:
        super().__init__(inner)
        self.fails_started = 0
        self.fails_landed = 0

    async def fail(
        self, token: ClaimToken, agent_id: UUID, failure: Failure, local_retries: int = 0
    ) -> WorkItem | ExecutionRecord:
        self.fails_started += 1
        await anyio.sleep(0.2)
        state = await super().fail(token, agent_id, failure, local_retries)
        self.fails_landed += 1
        return state


async def test_cancelling_the_worker_lets_a_report_in_flight_land(harness: Harness) -> None:
    source = SlowFailures(harness.service)
    worker = Worker(source, name="worker-1", options=fast_options())

    @worker.handler("boom")
    async def boom(job: Job) -> str:
        raise RetryableError("Boom", "went wrong")

    work_id = await harness.submit("boom")
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await until(lambda: source.fails_started == 1)
            tg.cancel_scope.cancel()  # while the report is in flight

    assert source.fails_landed == 1
    assert await claimed_count(harness) == 0
    item = await queued(harness, work_id)
    assert item.last_error is not None and item.last_error.reason == "Boom"
    assert worker.running == 0


class Abort(BaseException):
    """Not an Exception (as ``pytest.fail``'s is not): no handler outcome, a crash."""


async def test_a_handler_raising_a_base_exception_ends_the_worker(harness: Harness) -> None:
    worker, hanging = hanging_worker(harness)

    @worker.handler("abort")
    async def abort(job: Job) -> str:
        await until(lambda: len(hanging) == 2)
        raise Abort("from a handler")

    hang_ids = [await harness.submit("hang") for _ in range(2)]
    await harness.submit("abort")
    with anyio.fail_after(HANG_GUARD), pytest.raises(BaseExceptionGroup) as raised:
        await worker.run()
    assert [type(e) for e in raised.value.exceptions] == [Abort]
    for work_id in hang_ids:  # the others were cancelled and released, as on a cancel
        await assert_released(harness, work_id)
    assert worker.running == 0


async def test_shared_handlers_serve_several_workers(harness: Harness) -> None:
    first = make_worker(harness, name="a")

    @first.handler("shared")
    async def shared(job: Job) -> str:
        await anyio.sleep(0.01)
        return "ok"

    second = Worker(harness.source(), name="b", handlers=first.handlers, options=fast_options())
    ids = [await harness.submit("shared") for _ in range(16)]
    async with running(first) as a, running(second) as b:
        records = await harness.wait_ended(*ids)
    by = {r.item.claimed_by for r in records}
    assert by <= {a, b}
    assert first.stats.succeeded + second.stats.succeeded == 16


async def test_an_existing_agent_id_is_used_as_is(harness: Harness) -> None:
    issued = await harness.service.register_agent("pre-registered", {"pool": "x"})
    worker = Worker(
        harness.source(), name="ignored", agent_id=issued.agent.id, options=fast_options()
    )
    worker.register("echo", _echo)
    work_id = await harness.submit("echo", "x")
    async with running(worker) as agent_id:
        [record] = await harness.wait_ended(work_id)
    assert agent_id == issued.agent.id
    assert record.item.claimed_by == issued.agent.id
    assert [a.name for a in await harness.service.list_agents()] == ["pre-registered"]


async def _echo(job: Job) -> str:
    return job.spec


async def test_without_long_polls_an_empty_queue_is_not_polled_in_a_tight_loop(
    harness: Harness,
) -> None:
    worker = make_worker(harness, claim_wait=0)

    @worker.handler("later")
    async def later(job: Job) -> str:
        return "done"

    async with running(worker):
        await anyio.sleep(1.0)  # an empty queue for a second
        polls = gated(worker).claim_calls
        work_id = await harness.submit("later")
        [record] = await harness.wait_ended(work_id)  # still found without a long-poll
    # one poll per EMPTY_CLAIM_PAUSE (0.2 s), not thousands
    assert 2 <= polls <= 10, polls
    assert record.status is WorkStatus.SUCCEEDED


async def test_stop_before_run_claims_nothing(harness: Harness) -> None:
    worker = Worker(harness.source(), name="idle", options=WorkerOptions(claim_wait=0.0))
    worker.register("echo", _echo)
    work_id = await harness.submit("echo")
    worker.stop()
    with anyio.fail_after(HANG_GUARD):
        await worker.run()
    assert isinstance(await harness.state(work_id), WorkItem)
    assert not isinstance(await harness.state(work_id), ExecutionRecord)


class EchoRunner:
    """A runner of its own: the spec, reversed, is the result; ``boom`` fails for good."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    @property
    def work_types(self) -> list[str]:
        return ["echo-runner"]

    async def run(self, job: Job) -> Success | Failure:
        self.seen.append((job.spec, job.attempt))
        if job.spec == "boom":
            return Failure.permanent("Boom", "as asked")
        return Success(job.spec[::-1])


async def test_a_worker_runs_attempts_with_the_runner_it_is_given(harness: Harness) -> None:
    runner = EchoRunner()
    worker = Worker(harness.source(), name="runner-worker", runner=runner, options=fast_options())
    ok_id = await harness.submit("echo-runner", "abc")
    boom_id = await harness.submit("echo-runner", "boom")
    async with running(worker):
        ok_record, boom_record = await harness.wait_ended(ok_id, boom_id)
    assert (ok_record.status, ok_record.result) == (WorkStatus.SUCCEEDED, "cba")
    assert boom_record.status is WorkStatus.FAILED
    assert sorted(runner.seen) == [("abc", 1), ("boom", 1)]
    assert worker.handlers.work_types == []  # the handlers were never consulted
