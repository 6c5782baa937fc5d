"""Our PostgreSQL store: prefill, a batched two-claimer drain, and table counts."""

from __future__ import annotations

import asyncio
import cProfile
import random
import time
from collections.abc import Sequence
from typing import Any

from psycopg import sql as pgsql

from benchmarks._db import drop_schema, scalar, vacuum_analyze
from benchmarks._result import DrainResult, failed
from benchmarks._workload import WORK_TYPE, agent, noop_item, now
from workqueue_core.domain.models import Agent, Completion

SCHEMA = "bench_ours"
SUBMIT_BATCH = 1000
SUBMIT_CONCURRENCY = 4
PROFILER: cProfile.Profile | None = None
"""When set, profiles the timed drain phase (``--profile``)."""


def available() -> str | None:
    """None when ``workqueue_postgres.PostgresStore`` can be imported, else why not."""
    try:
        from workqueue_postgres import PostgresStore, migrate  # noqa: F401
    except Exception as exc:  # the store may still be under construction
        return f"{type(exc).__name__}: {exc}"
    return None


async def open_store(dsn: str, schema: str, max_size: int = 4) -> Any:
    """Migrate ``schema`` and open a store on it."""
    from workqueue_postgres import PostgresStore, migrate

    await migrate(dsn, schema)
    return await PostgresStore.open(
        dsn, schema=schema, min_size=1, max_size=max_size, random_source=random.random
    )


async def prefill(store: Any, n: int) -> str:
    """Submit ``n`` no-op items: in batches when the store can, else concurrently."""
    items = [noop_item() for _ in range(n)]
    submit_many = getattr(store, "submit_many", None)
    if submit_many is not None:
        for first in range(0, n, SUBMIT_BATCH):
            await submit_many(items[first : first + SUBMIT_BATCH], "bench", now())
        return f"submit_many, batches of {SUBMIT_BATCH}"
    queue = iter(items)

    async def submitter() -> None:
        for item in queue:
            await store.submit(item, "bench", now())

    await asyncio.gather(*(submitter() for _ in range(SUBMIT_CONCURRENCY)))
    return f"submit one by one, {SUBMIT_CONCURRENCY} concurrent"


async def register(store: Any, count: int, prefix: str) -> list[Agent]:
    """Register ``count`` unlabelled agents."""
    return [await store.register_agent(agent(f"{prefix}-{i}")) for i in range(count)]


async def _claimer(store: Any, who: Agent, batch: int) -> int:
    done = 0
    types: Sequence[str] = (WORK_TYPE,)
    while True:
        items = await store.claim_next(who.id, now(), types, batch)
        if not items:
            return done
        answers = await store.complete_many_quiet(
            [Completion(i.token, who.id) for i in items], now()
        )
        errors = [a for a in answers if a is not None]
        if errors:
            raise RuntimeError(f"complete_many_quiet refused {len(errors)} entries: {errors[0]!r}")
        done += len(items)


async def count_done(dsn: str, schema: str) -> tuple[int, int]:
    """(SUCCEEDED log records, rows left in the queue) of a store schema."""
    s = pgsql.Identifier(schema).as_string(None)
    done = await scalar(
        dsn, f"SELECT count(*) FROM {s}.work_execution_log WHERE status = 'SUCCEEDED'"
    )
    left = await scalar(dsn, f"SELECT count(*) FROM {s}.work_queue")
    return done, left


async def drain(dsn: str, n: int, claimers: int, batch: int) -> DrainResult:
    """Prefill ``n`` items, then time ``claimers`` agents draining them in batches."""
    if (why := available()) is not None:
        return failed("ours", n, f"store not available: {why}")
    store = None
    try:
        store = await open_store(dsn, SCHEMA, max_size=claimers + 2)
        agents = await register(store, claimers, "drain")
        started = time.perf_counter()
        how = await prefill(store, n)
        enqueue_seconds = time.perf_counter() - started
        await vacuum_analyze(dsn)
        if PROFILER is not None:
            PROFILER.enable()
        started = time.perf_counter()
        await asyncio.gather(*(_claimer(store, a, batch) for a in agents))
        seconds = time.perf_counter() - started
        if PROFILER is not None:
            PROFILER.disable()
        done, left = await count_done(dsn, SCHEMA)
        return DrainResult(
            "ours",
            n,
            done,
            seconds,
            enqueue_seconds,
            settings=f"{claimers} agents, claim_next(limit={batch}) + complete_many_quiet; {how}",
            error=None if left == 0 else f"{left} items left in the queue",
        )
    except Exception as exc:
        return failed("ours", n, exc)
    finally:
        if store is not None:
            await store.close()
        await drop_schema(dsn, SCHEMA)
