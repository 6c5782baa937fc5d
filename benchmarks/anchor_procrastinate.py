"""The procrastinate anchor: its worker (concurrency = claimers) over the psycopg connector.

Settings: schema from ``schema_manager.apply_schema_async()``; jobs deferred with
``Task.batch_defer_async`` (one statement per batch); ``run_worker_async(
concurrency=claimers, wait=False)`` drains until the queue is empty. procrastinate
fetches one job per claim (it has no batch fetch); finished jobs stay in
``procrastinate_jobs`` with status ``succeeded`` (its default ``delete_jobs=never``).
"""

from __future__ import annotations

import logging
import time

from benchmarks._db import create_schema, drop_schema, scalar, vacuum_analyze, with_search_path
from benchmarks._result import DrainResult, failed

SCHEMA = "bench_procrastinate"
DEFER_BATCH = 1000


async def drain(dsn: str, n: int, claimers: int, batch: int) -> DrainResult:
    """Defer ``n`` no-op jobs, then time one worker with ``concurrency=claimers`` draining them."""
    import procrastinate

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    await create_schema(dsn, SCHEMA)
    sdsn = with_search_path(dsn, SCHEMA)
    try:
        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=sdsn, min_size=1, max_size=claimers + 2
            )
        )

        @app.task(name="noop")
        async def noop() -> None:
            return None

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            started = time.perf_counter()
            for first in range(0, n, DEFER_BATCH):
                size = min(DEFER_BATCH, n - first)
                await noop.batch_defer_async(*({} for _ in range(size)))
            enqueue_seconds = time.perf_counter() - started
            await vacuum_analyze(dsn)
            started = time.perf_counter()
            await app.run_worker_async(
                concurrency=claimers, wait=False, install_signal_handlers=False
            )
            seconds = time.perf_counter() - started
        done = await scalar(
            sdsn, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
        return DrainResult(
            "procrastinate",
            n,
            done,
            seconds,
            enqueue_seconds,
            settings=f"worker concurrency={claimers}, one job per fetch (batch {batch} n/a)",
        )
    except Exception as exc:  # a broken anchor is reported, not fatal
        return failed("procrastinate", n, exc)
    finally:
        await drop_schema(dsn, SCHEMA)
