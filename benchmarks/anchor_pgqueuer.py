"""The pgqueuer anchor: its own QueueManager over the psycopg driver, a no-op entrypoint.

Settings: the default (durable, logged) tables of ``Queries.install()``; one
QueueManager per claimer, each on its own autocommit connection (pgqueuer's
requirement for psycopg), ``run(batch_size=B, max_concurrent_tasks=2*B)`` (the
smallest cap pgqueuer allows; never slower than uncapped here, faster under load); jobs
enqueued with the list form of ``Queries.enqueue`` (one INSERT per 1,000).

The clock starts at the first dequeue (pgqueuer's start-up checks and LISTEN are
not counted) and stops when the last job's completion has been written to
``pgqueuer_log`` (observed in ``Queries.log_jobs``, the call pgqueuer's completion
buffer makes), not when ``run()`` returns: pgqueuer's shutdown (listener and
buffer timers) takes seconds that are not queue throughput. The count of
``successful`` rows in ``pgqueuer_log`` afterwards is what is reported as completed.

The rate is pgqueuer's steady one: the clock is read again once the first
``WARMUP_SHARE`` of the jobs are logged, and the rate is that of the rest. Its
start-up is not steady: its psycopg driver waits for notifications with
``notifies(timeout=1.0)`` on the same connection as its queries, holding the
connection's lock, so until notifications flow a dequeue can wait a whole second
(here, the third dequeue of both managers did in about half the rounds, which then
took almost twice as long). The longest single dequeue is reported with the round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import psycopg

from benchmarks._db import create_schema, drop_schema, scalar, vacuum_analyze, with_search_path
from benchmarks._result import DrainResult, failed

SCHEMA = "bench_pgqueuer"
ENQUEUE_BATCH = 1000
DEQUEUE_TIMEOUT = timedelta(seconds=0.05)
"""Only waited once the queue is empty: bounds the drain-mode exit delay."""
WARMUP_SHARE = 0.05
"""The share of the jobs whose completion is not timed (pgqueuer's start-up)."""
MAX_TASKS_PER_BATCH: int | None = 2
"""``max_concurrent_tasks = MAX_TASKS_PER_BATCH * batch``; None leaves it uncapped."""


class _Progress:
    """Counts successful completions as pgqueuer logs them; notes when the warm-up
    share and when all are in."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.warmup = max(1, int(target * WARMUP_SHARE))
        self.logged = 0
        self.started_at: float | None = None
        self.steady_at: float | None = None
        self.steady_logged = 0
        self.finished_at: float | None = None
        self.done = asyncio.Event()
        self.longest_dequeue = 0.0

    def seconds(self) -> float:
        """The drain's time at the steady rate: the time after the warm-up, scaled to
        every job (the whole time when the warm-up was not seen)."""
        finished = self.finished_at or time.perf_counter()
        if self.steady_at is None or self.steady_logged >= self.target:
            return finished - (self.started_at or finished)
        return (finished - self.steady_at) * self.target / (self.target - self.steady_logged)

    def start(self) -> None:
        if self.started_at is None:
            self.started_at = time.perf_counter()

    def add(self, count: int) -> None:
        self.logged += count
        if self.steady_at is None and self.logged >= self.warmup:
            self.steady_at = time.perf_counter()
            self.steady_logged = self.logged
        if self.logged >= self.target and self.finished_at is None:
            self.finished_at = time.perf_counter()
            self.done.set()


def _queries_class(progress: _Progress) -> Any:
    from pgqueuer.queries import Queries

    class CountingQueries(Queries):
        """pgqueuer's own Queries, reporting each completion flush to ``progress``."""

        async def dequeue(self, *args: Any, **kwargs: Any) -> Any:
            progress.start()
            started = time.perf_counter()
            try:
                return await super().dequeue(*args, **kwargs)
            finally:
                took = time.perf_counter() - started
                progress.longest_dequeue = max(progress.longest_dequeue, took)

        async def log_jobs(self, job_status: Any) -> None:
            await super().log_jobs(job_status)
            progress.add(sum(1 for _, status, _ in job_status if status == "successful"))

    return CountingQueries


async def drain(dsn: str, n: int, claimers: int, batch: int) -> DrainResult:
    """Enqueue ``n`` no-op jobs, then time ``claimers`` QueueManagers draining them."""
    from pgqueuer import QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    logging.getLogger("pgqueuer").setLevel(logging.WARNING)
    await create_schema(dsn, SCHEMA)
    sdsn = with_search_path(dsn, SCHEMA)
    conns: list[psycopg.AsyncConnection[Any]] = []
    progress = _Progress(n)
    max_tasks = None if MAX_TASKS_PER_BATCH is None else MAX_TASKS_PER_BATCH * batch
    queries_class = _queries_class(progress)
    try:
        setup = await psycopg.AsyncConnection.connect(sdsn, autocommit=True)
        conns.append(setup)
        queries = queries_class.from_psycopg_connection(setup)
        await queries.install()
        started = time.perf_counter()
        for first in range(0, n, ENQUEUE_BATCH):
            size = min(ENQUEUE_BATCH, n - first)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        enqueue_seconds = time.perf_counter() - started
        await vacuum_analyze(dsn)

        managers = []
        for _ in range(claimers):
            conn = await psycopg.AsyncConnection.connect(sdsn, autocommit=True)
            conns.append(conn)
            qm = QueueManager(queries_class.from_psycopg_connection(conn))

            @qm.entrypoint("noop")
            async def noop(job: object) -> None:
                return None

            managers.append(qm)

        async def stop_when_done() -> None:
            await progress.done.wait()
            for qm in managers:
                qm.shutdown.set()

        stopper = asyncio.create_task(stop_when_done())
        runs = asyncio.gather(
            *(
                qm.run(
                    batch_size=batch,
                    mode=QueueExecutionMode.drain,
                    dequeue_timeout=DEQUEUE_TIMEOUT,
                    max_concurrent_tasks=max_tasks,
                )
                for qm in managers
            )
        )
        await runs
        stopper.cancel()
        seconds = progress.seconds()
        done = await scalar(sdsn, "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
        left = await scalar(sdsn, "SELECT count(*) FROM pgqueuer")
        return DrainResult(
            "pgqueuer",
            n,
            done,
            seconds,
            enqueue_seconds,
            settings=(
                f"{claimers} QueueManagers, batch_size={batch}, "
                f"max_concurrent_tasks={max_tasks}, durable tables; steady rate after the "
                f"first {progress.steady_logged:,} jobs; "
                f"longest dequeue {progress.longest_dequeue * 1000:,.0f} ms"
            ),
            error=None if left == 0 else f"{left} jobs left in the queue table",
        )
    except Exception as exc:  # a broken anchor is reported, not fatal
        return failed("pgqueuer", n, exc)
    finally:
        for conn in conns:
            await conn.close()
        await drop_schema(dsn, SCHEMA)
