"""Slot for issue 5's benchmark: the in-process executor draining the same workload."""

from __future__ import annotations

import importlib
import time

from benchmarks import ours
from benchmarks._db import drop_schema, scalar
from benchmarks._result import DrainResult, failed

SCHEMA = "bench_executor"
NAME = "executor (in-process worker)"


async def drain(dsn: str, n: int, claimers: int, batch: int) -> DrainResult | None:
    """Run ``benchmarks.executor_drain.drain_with_worker``; None when it does not exist."""
    try:
        module = importlib.import_module("benchmarks.executor_drain")
    except ModuleNotFoundError as exc:
        if exc.name in ("benchmarks.executor_drain",):
            return None
        return failed(NAME, n, exc)
    try:
        started = time.perf_counter()
        jobs_per_second = float(await module.drain_with_worker(dsn, SCHEMA, n, claimers, batch))
        wall = time.perf_counter() - started
        seconds = n / jobs_per_second if jobs_per_second > 0 else wall
        settings = f"{claimers} Workers, batch={batch}, concurrency={2 * batch} each"
        if await scalar(dsn, f"SELECT count(*) FROM pg_namespace WHERE nspname = '{SCHEMA}'"):
            done, left = await ours.count_done(dsn, SCHEMA)
        else:
            # The helper dropped its schema after checking that its log holds exactly
            # the n items, each SUCCEEDED (it raises otherwise).
            done, left = n, 0
            settings += "; log checked by drain_with_worker"
        return DrainResult(
            NAME,
            n,
            done,
            seconds,
            0.0,
            settings=settings,
            error=None if left == 0 else f"{left} items left in the queue",
        )
    except Exception as exc:
        return failed(NAME, n, exc)
    finally:
        await drop_schema(dsn, SCHEMA)
