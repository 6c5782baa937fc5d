"""Property test: random handler outcomes and worker crashes over generated workloads.

Each example submits a workload to the in-memory store, then runs worker sessions
one after another with a fake clock. A session either runs until nothing more can
happen now (then stops gracefully) or crashes after its k-th handler start: the
worker's source is cut off (it can no longer report anything) and its task is
cancelled, and after the fake clock passes the lease the sweep takes its claims
back. Between sessions the clock moves past every backoff.

Afterwards every item is in the execution log exactly once, the queue is empty,
no item ran twice at once or more often than its budget, each final state follows
from the planned outcome of the attempt that ended it, and every timeline replays
to the stored state.
"""

from __future__ import annotations

from collections import Counter
from uuid import UUID

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_worker_support import Harness, fast_options, memory_harness, until

from workqueue_core.domain.models import ExecutionRecord, LogQuery, WorkQuery, WorkStatus
from workqueue_core.domain.replay import agrees, replay
from workqueue_core.executor.worker import Handlers, Job, PermanentError, RetryableError, Worker

OUTCOMES = ("success", "retryable", "permanent", "hang", "error")
LEASE = 60.0
BETWEEN_SESSIONS = 10_000.0
MAX_SESSIONS = 25


@attrs.frozen
class ItemPlan:
    max_retries: int
    base_delay: float
    outcomes: tuple[str, ...]

    def outcome(self, attempt: int) -> str:
        return self.outcomes[(attempt - 1) % len(self.outcomes)]


@attrs.frozen
class Workload:
    items: tuple[ItemPlan, ...]
    crashes: tuple[int | None, ...]
    concurrency: int
    batch: int


item_plans = st.builds(
    ItemPlan,
    max_retries=st.integers(0, 3),
    base_delay=st.sampled_from([0.0, 30.0]),
    outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=4).map(tuple),
)

workloads = st.builds(
    Workload,
    items=st.lists(item_plans, min_size=1, max_size=10).map(tuple),
    crashes=st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=1, max_size=4).map(tuple),
    concurrency=st.integers(1, 4),
    batch=st.integers(1, 4),
)


@attrs.define
class Observed:
    attempts: dict[UUID, list[int]] = attrs.field(factory=dict)
    active: set[UUID] = attrs.field(factory=set)
    overlaps: list[UUID] = attrs.field(factory=list)
    starts: int = 0
    crash_at: int | None = None
    crash: anyio.Event | None = None


def make_handlers(plans: dict[UUID, ItemPlan], seen: Observed) -> Handlers:
    handlers = Handlers()

    @handlers.handler("plan", timeout=0.03)
    async def run(job: Job) -> str | None:
        if job.id in seen.active:
            seen.overlaps.append(job.id)
        seen.active.add(job.id)
        seen.attempts.setdefault(job.id, []).append(job.attempt)
        seen.starts += 1
        if seen.crash is not None and seen.crash_at is not None and seen.starts >= seen.crash_at:
            seen.crash.set()
        try:
            await anyio.sleep(0)
            outcome = plans[job.id].outcome(job.attempt)
            if outcome == "retryable":
                raise RetryableError("Flaky", f"attempt {job.attempt}")
            if outcome == "permanent":
                raise PermanentError("Broken", f"attempt {job.attempt}")
            if outcome == "hang":
                await anyio.sleep_forever()
            if outcome == "error":
                raise RuntimeError("boom")
            return f"{job.id}:{job.attempt}"
        finally:
            seen.active.discard(job.id)

    return handlers


async def quiescent(harness: Harness, worker: Worker, ids: list[UUID]) -> bool:
    """Nothing can happen now: no attempt in flight and nothing claimable at this time."""
    if worker.running:
        return False
    now = harness.clock.now()
    for item in await harness.service.list_work(WorkQuery(limit=1000)):
        if item.status is WorkStatus.CLAIMED:
            return False
        if item.status is WorkStatus.PENDING and (
            item.not_before is None or item.not_before <= now
        ):
            return False
    return True


async def run_session(
    harness: Harness, handlers: Handlers, workload: Workload, seen: Observed, number: int
) -> bool:
    """One worker session; True when it crashed."""
    crash_after = workload.crashes[number] if number < len(workload.crashes) else None
    seen.crash = anyio.Event()
    seen.crash_at = seen.starts + crash_after if crash_after is not None else None
    source = harness.source()
    worker = Worker(
        source,
        name=f"worker-{number}",
        handlers=handlers,
        options=fast_options(concurrency=workload.concurrency, batch=workload.batch),
    )
    crashed = False
    ids: list[UUID] = []
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            async with anyio.create_task_group() as watch:

                async def on_crash() -> None:
                    nonlocal crashed
                    assert seen.crash is not None
                    await seen.crash.wait()
                    crashed = True
                    watch.cancel_scope.cancel()

                async def on_quiet() -> None:
                    await until(lambda: quiescent(harness, worker, ids))
                    watch.cancel_scope.cancel()

                watch.start_soon(on_crash)
                watch.start_soon(on_quiet)
            if crashed:
                source.sever()  # a dead process reports nothing
                tg.cancel_scope.cancel()
            else:
                worker.stop()
    if crashed:
        harness.clock.advance(LEASE + 1)
        while await harness.service.sweep():
            pass
    harness.clock.advance(BETWEEN_SESSIONS)
    return crashed


async def all_records(harness: Harness) -> list[ExecutionRecord]:
    return await harness.service.list_log(LogQuery(limit=1000))


async def drive(workload: Workload) -> None:
    harness = memory_harness()
    plans: dict[UUID, ItemPlan] = {}
    for n, plan in enumerate(workload.items):
        work_id = await harness.submit(
            "plan",
            str(n),
            max_retries=plan.max_retries,
            base_delay=plan.base_delay,
            claim_timeout=LEASE,
        )
        plans[work_id] = plan
    seen = Observed()
    handlers = make_handlers(plans, seen)
    for number in range(MAX_SESSIONS):
        if await run_session(harness, handlers, workload, seen, number):
            event("a worker crashed")
        if not await harness.service.list_work(WorkQuery(limit=1)):
            break

    records = await all_records(harness)
    assert await harness.service.list_work(WorkQuery(limit=1000)) == []
    logged = Counter(r.id for r in records)
    assert set(logged) == set(plans), "every item ends in the log"
    assert all(n == 1 for n in logged.values()), f"logged more than once: {logged}"
    assert not seen.overlaps, f"ran twice at once: {seen.overlaps}"
    for record in records:
        plan = plans[record.id]
        item = record.item
        assert item.executions <= plan.max_retries + 1
        assert len(seen.attempts.get(record.id, [])) <= plan.max_retries + 1
        assert agrees(replay(await harness.events(record.id)), record)
        event(f"ended {record.status.value}")
        if record.status is WorkStatus.SUCCEEDED:
            assert record.result == f"{record.id}:{item.attempt}"
            assert plan.outcome(item.attempt) == "success"
        else:
            assert record.status is WorkStatus.FAILED, record
            assert item.last_error is not None
            if item.last_error.reason == "Broken":
                assert plan.outcome(item.attempt) == "permanent"
            else:
                assert item.executions == plan.max_retries + 1, record


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(workloads)
def test_outcomes_and_crashes_keep_every_invariant(workload: Workload) -> None:
    anyio.run(drive, workload)


@pytest.mark.slow
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(workloads)
def test_outcomes_and_crashes_keep_every_invariant_long(workload: Workload) -> None:
    anyio.run(drive, workload)
