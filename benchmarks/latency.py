"""Latency: ``claim_next(limit=1)`` against a large targeted queue, and submit→claimed.

Claim latency. 100 agents carry ``zone`` (10 zones) and ``pool`` labels; ten
items submitted through the store create the ten targets ``zone in (zK, zK+1)``
(so every agent matches two targets and every item ~20 agents). The queue is then
filled to ``size`` rows with one ``INSERT ... SELECT generate_series`` that copies
those template rows (new ids, increasing ``created_at``), plus their ``submitted``
events, and analysed. Timed: ``store.claim_next(agent, now, ["noop"], limit=1)``,
agents taken round-robin, after a short warm-up.

Submit→claimed. A claimer waits in ``BrokerService.claim_next(wait=...)`` on the
store's LISTEN/NOTIFY notifier; the clock starts before ``store.submit`` and stops
when the waiting claim returns the item.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import attrs
import psycopg
from psycopg import sql as pgsql

from benchmarks import ours
from benchmarks._db import drop_schema, vacuum_analyze
from benchmarks._stats import percentile
from benchmarks._workload import WORK_TYPE, agent, noop_item, now, zone_agents, zone_selectors

CLAIM_SCHEMA = "bench_claim_latency"
NOTIFY_SCHEMA = "bench_notify_latency"
WARMUP = 50


@attrs.frozen
class LatencyResult:
    """Percentiles of one latency measurement, in milliseconds."""

    name: str
    samples: int
    p50_ms: float
    p99_ms: float
    setup_seconds: float = 0.0
    error: str | None = None


def _summary(name: str, seconds: Sequence[float], setup: float) -> LatencyResult:
    ms = [s * 1000 for s in seconds]
    return LatencyResult(name, len(ms), percentile(ms, 50), percentile(ms, 99), setup)


def _failed(name: str, exc: BaseException | str) -> LatencyResult:
    return LatencyResult(name, 0, float("nan"), float("nan"), error=str(exc) or repr(exc))


async def _bulk_fill(dsn: str, schema: str, size: int) -> None:
    """Grow the queue to ``size`` rows by copying its template rows, with their events."""
    from workqueue_postgres import sql

    s = pgsql.Identifier(schema).as_string(None)
    overrides = {
        "id": "gen_random_uuid()",
        "created_at": "t.created_at + g * interval '1 microsecond'",
        "correlation_id": "NULL",
    }
    columns = ", ".join(sql.ITEM_COLUMNS)
    values = ", ".join(overrides.get(c, f"t.{c}") for c in sql.ITEM_COLUMNS)
    events = ", ".join(sql.EVENT_COLUMNS)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {s}.work_queue")
        row = await cur.fetchone()
        templates = int(row[0]) if row else 0
        extra = size - templates
        if extra <= 0:
            return
        fill = f"""
            WITH t AS (
                SELECT *, (row_number() OVER (ORDER BY id)) - 1 AS k FROM {s}.work_queue
            ), ins AS (
                INSERT INTO {s}.work_queue ({columns})
                SELECT {values}
                FROM generate_series(1, %(extra)s) g JOIN t ON t.k = g %% %(templates)s
                RETURNING id, status, attempt, executions
            )
            INSERT INTO {s}.work_events ({events})
            SELECT id, NULL, status, 'bench', %(now)s, attempt, executions, NULL, NULL,
                   'submitted'
            FROM ins
        """
        await conn.execute(fill, {"extra": extra, "templates": templates, "now": now()})


async def claim_latency(dsn: str, size: int, samples: int, agents: int = 100) -> LatencyResult:
    """p50/p99 of ``claim_next(limit=1)`` with ``size`` pending targeted items."""
    name = f"claim_next(limit=1), {size:,} pending, {agents} agents, label targeting"
    if (why := ours.available()) is not None:
        return _failed(name, f"store not available: {why}")
    store = None
    try:
        started = time.perf_counter()
        store = await ours.open_store(dsn, CLAIM_SCHEMA)
        registered = [await store.register_agent(a) for a in zone_agents(agents)]
        for targeting in zone_selectors():
            await store.submit(noop_item(targeting), "bench", now())
        await _bulk_fill(dsn, CLAIM_SCHEMA, size)
        await vacuum_analyze(dsn)
        setup = time.perf_counter() - started
        types = (WORK_TYPE,)
        timings: list[float] = []
        for i in range(WARMUP + samples):
            who = registered[i % len(registered)]
            t0 = time.perf_counter()
            claimed = await store.claim_next(who.id, now(), types, 1)
            elapsed = time.perf_counter() - t0
            if len(claimed) != 1:
                raise RuntimeError(f"agent {who.name} claimed {len(claimed)} items, expected 1")
            if i >= WARMUP:
                timings.append(elapsed)
        return _summary(name, timings, setup)
    except Exception as exc:
        return _failed(name, exc)
    finally:
        if store is not None:
            await store.close()
        await drop_schema(dsn, CLAIM_SCHEMA)


class _WallClock:
    def now(self) -> Any:
        return now()


async def notify_latency(dsn: str, samples: int, wait: float = 5.0) -> LatencyResult:
    """p50/p99 from ``store.submit`` to a waiting ``BrokerService.claim_next`` returning it."""
    name = "submit → claimed, waiting claimer woken by LISTEN/NOTIFY"
    if (why := ours.available()) is not None:
        return _failed(name, f"store not available: {why}")
    from workqueue_core.service.broker import BrokerService

    store = None
    try:
        started = time.perf_counter()
        store = await ours.open_store(dsn, NOTIFY_SCHEMA)
        start = getattr(store.notifier, "start", None)
        if start is not None:
            await start()
        service = BrokerService(
            store,
            _WallClock(),
            uuid4,
            lambda: uuid4().hex,
            notifier=store.notifier,
            poll_interval=wait,
        )
        who = await store.register_agent(agent("bench-notify"))
        setup = time.perf_counter() - started
        timings: list[float] = []
        for i in range(WARMUP // 5 + samples):
            waiting = asyncio.create_task(service.claim_next(who.id, [WORK_TYPE], 1, wait=wait))
            await asyncio.sleep(0.02)  # let the claimer find nothing and start waiting
            item = noop_item()
            t0 = time.perf_counter()
            await store.submit(item, "bench", now())
            claimed = await waiting
            elapsed = time.perf_counter() - t0
            if [c.id for c in claimed] != [item.id]:
                raise RuntimeError(f"the waiting claimer got {claimed!r}, not the new item")
            await store.complete(claimed[0].token, who.id, now())
            if i >= WARMUP // 5:
                timings.append(elapsed)
        return _summary(name, timings, setup)
    except Exception as exc:
        return _failed(name, exc)
    finally:
        if store is not None:
            await store.close()
        await drop_schema(dsn, NOTIFY_SCHEMA)
