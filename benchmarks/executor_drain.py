"""The in-process executor draining no-op work on PostgreSQL: jobs per second.

``drain_with_worker(dsn, schema, n, concurrency, batch)`` prefills ``n`` no-op
items into a fresh schema, then times ``Worker``s running a real (no-op) handler
for each: claims of up to ``batch`` items sized by free slots, a heartbeat task
per claim (armed at a third of the lease), the per-attempt timeout scope, and
completions batched by ``complete_many_quiet``. The shape matches the pgqueuer anchor:
``concurrency`` is the number of claimers (one ``Worker`` each, as pgqueuer runs
one QueueManager per claimer) and each worker runs up to ``2 * batch`` handlers
at once (pgqueuer's ``max_concurrent_tasks=2*batch``).

The clock starts when the workers start and stops when the last completion is
recorded; the schema is dropped afterwards. Each drain prints the client's CPU per
item (``time.process_time`` of the timed phase), which depends less on the machine's
load than the rate; ``--profile N`` prints the drains' top N functions.

``--no-store`` measures the executor alone: one ``Worker`` against an in-process
source that hands out items claimed beforehand and answers every call at once
(after one event-loop turn, as I/O would), so its CPU per item is the executor's
own, without a store's or a driver's.

    python -m benchmarks.executor_drain [--dsn DSN] [-n 20000] [--claimers 2] [--batch 100]
        [--repeat 1] [--profile N] [--no-store]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
import uuid
from datetime import UTC, datetime

import anyio
import anyio.lowlevel

from benchmarks._db import vacuum_analyze
from workqueue_broker.ids import uuid7
from workqueue_core.domain.models import Targeting, WorkItem, WorkStatus
from workqueue_core.executor.worker import Job, Worker, WorkerOptions
from workqueue_core.service.broker import BrokerService

WORK_TYPE = "noop"
SUBMIT_BATCH = 1000
DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"
CPU_SECONDS: list[float] = []
"""Client CPU seconds (``time.process_time``) of each timed drain phase, appended per drain."""
PROFILER: cProfile.Profile | None = None
"""When set, profiles the timed drain phase (``--profile``)."""


class SystemClock:
    """The wall clock (a benchmark is an entrypoint: it may read it)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


async def _prefill(store: object, n: int) -> None:
    from workqueue_postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    clock = SystemClock()
    items = [
        WorkItem(
            id=uuid7(),
            work_type=WORK_TYPE,
            spec="{}",
            targeting=Targeting.everyone(),
            created_at=clock.now(),
        )
        for _ in range(n)
    ]
    submit_many = getattr(store, "submit_many", None)
    for first in range(0, n, SUBMIT_BATCH):
        chunk = items[first : first + SUBMIT_BATCH]
        if submit_many is not None:
            await submit_many(chunk, "bench", clock.now())
        else:
            for item in chunk:
                await store.submit(item, "bench", clock.now())


async def _noop(job: Job) -> None:
    return None


async def drain_with_worker(dsn: str, schema: str, n: int, concurrency: int, batch: int) -> float:
    """Jobs per second for ``concurrency`` workers (claimers) draining ``n`` no-op items."""
    import psycopg
    from psycopg import sql

    from workqueue_postgres import PostgresStore

    store = await PostgresStore.open(
        dsn,
        schema=schema,
        min_size=1,
        max_size=max(4, 2 * concurrency + 2),
        random_source=random.random,
    )
    try:
        await _prefill(store, n)
        await vacuum_analyze(dsn)  # as every other system gets between prefill and drain
        broker = BrokerService(
            store,
            SystemClock(),
            uuid7,
            lambda: uuid.uuid4().hex,
            notifier=store.notifier,
            poll_interval=0.05,
        )
        options = WorkerOptions(concurrency=2 * batch, batch=batch, claim_wait=0.2)
        workers = [
            Worker(broker, name=f"bench-worker-{i}-{uuid.uuid4().hex[:8]}", options=options)
            for i in range(concurrency)
        ]
        for worker in workers:
            worker.register(WORK_TYPE, _noop)
        async with anyio.create_task_group() as tg:
            if PROFILER is not None:
                PROFILER.enable()
            cpu = time.process_time()
            started = time.perf_counter()
            for worker in workers:
                tg.start_soon(worker.run)
            while sum(w.stats.succeeded for w in workers) < n:
                await anyio.sleep(0.002)
            seconds = time.perf_counter() - started
            CPU_SECONDS.append(time.process_time() - cpu)
            if PROFILER is not None:
                PROFILER.disable()
            for worker in workers:
                worker.stop()
        failed = [w.stats for w in workers if w.stats.report_errors or w.stats.lease_lost]
        if failed:
            raise RuntimeError(f"workers reported errors: {failed}")
        logged = await store.stats()
        succeeded = logged.total(WorkStatus.SUCCEEDED)
        if succeeded != n or logged.total() != n:
            raise RuntimeError(
                f"the log holds {succeeded} succeeded of {n} (total {logged.total()})"
            )
        return n / seconds
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


class _AnsweringSource:
    """A ``WorkSource`` that hands out items claimed beforehand and accepts every report."""

    def __init__(self, claimed: list[WorkItem]) -> None:
        self._claimed = claimed

    async def claim_next(
        self, agent_id: uuid.UUID, work_types: object, limit: int, wait: float
    ) -> list[WorkItem]:
        await anyio.lowlevel.checkpoint()
        items = self._claimed[:limit]
        del self._claimed[:limit]
        return items

    async def complete_many_quiet(self, completions: list[object]) -> list[None]:
        await anyio.lowlevel.checkpoint()
        return [None] * len(completions)

    async def heartbeat(self, *args: object) -> None:
        await anyio.lowlevel.checkpoint()

    async def agent_heartbeat(self, *args: object) -> None:
        await anyio.lowlevel.checkpoint()


async def executor_cpu_per_item(n: int, batch: int, repeat: int) -> list[float]:
    """Client CPU µs per item of one ``Worker`` (``2 * batch`` slots) running ``n`` no-op
    items from ``_AnsweringSource``, once per ``repeat``."""
    from workqueue_core.domain.models import Agent
    from workqueue_memory import MemoryStore

    store = MemoryStore()
    clock = SystemClock()
    agent = Agent(id=uuid.uuid4(), name="bench", registered_at=clock.now())
    await store.register_agent(agent)
    for first in range(0, n, SUBMIT_BATCH):
        for _ in range(min(SUBMIT_BATCH, n - first)):
            item = WorkItem(
                id=uuid7(),
                work_type=WORK_TYPE,
                spec="{}",
                targeting=Targeting.everyone(),
                created_at=clock.now(),
            )
            await store.submit(item, "bench", clock.now())
    claimed: list[WorkItem] = []
    while batch_ := await store.claim_next(agent.id, clock.now(), [WORK_TYPE], SUBMIT_BATCH):
        claimed += batch_
    per_item = []
    options = WorkerOptions(concurrency=2 * batch, batch=batch, claim_wait=0.2)
    for _ in range(repeat):
        worker = Worker(
            _AnsweringSource(list(claimed)),  # type: ignore[arg-type]
            name="bench",
            agent_id=agent.id,
            options=options,
        )
        worker.register(WORK_TYPE, _noop)
        if PROFILER is not None:
            PROFILER.enable()
        cpu = time.process_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            while worker.stats.succeeded < n:
                await anyio.sleep(0.002)
            worker.stop()
        per_item.append((time.process_time() - cpu) / n * 1e6)
        if PROFILER is not None:
            PROFILER.disable()
    return per_item


def main() -> None:
    parser = argparse.ArgumentParser(description="in-process executor drain on PostgreSQL")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--schema", default=f"bench_executor_{uuid.uuid4().hex[:8]}")
    parser.add_argument("-n", "--jobs", type=int, default=20_000)
    parser.add_argument("--claimers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="drains, each in a fresh schema")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="profile the drains; print top N"
    )
    parser.add_argument(
        "--no-store", action="store_true", help="the executor alone, on an answering source"
    )
    args = parser.parse_args()
    global PROFILER
    if args.profile:
        PROFILER = cProfile.Profile(time.process_time)
    if args.no_store:
        per_item = anyio.run(executor_cpu_per_item, args.jobs, args.batch, args.repeat)
        print(
            f"executor alone: {args.jobs} no-op jobs, 1 worker x {2 * args.batch} slots, "
            f"batch {args.batch}: client CPU per item, us: "
            + " / ".join(f"{us:.1f}" for us in per_item)
        )
        args.repeat = 0
    for round_ in range(args.repeat):
        schema = args.schema if round_ == 0 else f"{args.schema}_{round_}"
        rate = anyio.run(drain_with_worker, args.dsn, schema, args.jobs, args.claimers, args.batch)
        print(
            f"executor: {args.jobs} no-op jobs, {args.claimers} workers x {2 * args.batch} "
            f"slots, batch {args.batch}: {rate:,.0f} jobs/s, "
            f"client CPU {CPU_SECONDS[-1] / args.jobs * 1e6:.1f} us per item"
        )
    if PROFILER is not None:
        pstats.Stats(PROFILER).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
