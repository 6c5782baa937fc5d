"""A narrow-table loop: the simplest durable claim/complete/event drain, for scale.

Not a queue anyone ships: bigint ids, five columns, one partial claim index, a log
row and one event row per transition, statements that return only ids. It shows what
this machine and server do for a claim/complete/event loop with almost nothing per
row, so the floor (our own statements) and every system can be read against it.
Same workload as the others: two claimers on autocommit psycopg connections, claim
``batch`` with ``FOR UPDATE SKIP LOCKED``, complete the batch, until empty.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from psycopg import sql

from benchmarks._db import create_schema, drop_schema, scalar, vacuum_analyze
from benchmarks._result import DrainResult, failed

SCHEMA = "bench_narrow"

_TABLES = """
CREATE TABLE {s}.q (
    id bigint PRIMARY KEY, priority int NOT NULL, created_at timestamptz NOT NULL,
    status text NOT NULL, payload text NOT NULL
);
CREATE INDEX q_claim ON {s}.q (priority DESC, id) WHERE status = 'pending';
CREATE TABLE {s}.log (
    id bigint PRIMARY KEY, status text NOT NULL, finished_at timestamptz NOT NULL,
    payload text NOT NULL
);
CREATE TABLE {s}.events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, work_id bigint NOT NULL,
    kind text NOT NULL, at timestamptz NOT NULL
);
CREATE INDEX events_work ON {s}.events (work_id);
"""
_PREFILL = """
INSERT INTO {s}.q SELECT g, 0, clock_timestamp(), 'pending', '{{}}'
FROM generate_series(1, %(n)s) g
"""
_CLAIM = """
WITH c AS (
    UPDATE {s}.q SET status = 'claimed'
    WHERE id IN (SELECT id FROM {s}.q WHERE status = 'pending'
                 ORDER BY priority DESC, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING id
), e AS (
    INSERT INTO {s}.events (work_id, kind, at) SELECT id, 'claimed', now() FROM c
)
SELECT id FROM c
"""
_COMPLETE = """
WITH d AS (
    DELETE FROM {s}.q WHERE id = ANY(%(ids)s) AND status = 'claimed' RETURNING id, payload
), l AS (
    INSERT INTO {s}.log SELECT id, 'succeeded', now(), payload FROM d
), e AS (
    INSERT INTO {s}.events (work_id, kind, at) SELECT id, 'succeeded', now() FROM d
)
SELECT count(*) FROM d
"""


def _statement(template: str) -> str:
    return template.format(s=sql.Identifier(SCHEMA).as_string(None))


async def _claimer(dsn: str, batch: int) -> int:
    claim, complete = _statement(_CLAIM), _statement(_COMPLETE)
    done = 0
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        while True:
            await cur.execute(claim, {"limit": batch})
            ids = [row[0] for row in await cur.fetchall()]
            if not ids:
                return done
            await cur.execute(complete, {"ids": ids})
            row: Any = await cur.fetchone()
            done += int(row[0])


async def drain(dsn: str, n: int, claimers: int, batch: int) -> DrainResult:
    """Create the narrow tables, fill them with ``n`` rows, time ``claimers`` draining them."""
    try:
        await create_schema(dsn, SCHEMA)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(_statement(_TABLES))
            started = time.perf_counter()
            await conn.execute(_statement(_PREFILL), {"n": n})
            enqueue_seconds = time.perf_counter() - started
        await vacuum_analyze(dsn)
        started = time.perf_counter()
        await asyncio.gather(*(_claimer(dsn, batch) for _ in range(claimers)))
        seconds = time.perf_counter() - started
        s = sql.Identifier(SCHEMA).as_string(None)
        done = await scalar(dsn, f"SELECT count(*) FROM {s}.log")
        left = await scalar(dsn, f"SELECT count(*) FROM {s}.q")
        return DrainResult(
            "narrow-table loop",
            n,
            done,
            seconds,
            enqueue_seconds,
            settings=(
                f"{claimers} connections; bigint ids, 5 columns, 1 claim index, "
                "a log row and an event row per transition, only ids returned"
            ),
            error=None if left == 0 else f"{left} rows left in the queue",
        )
    except Exception as exc:  # a broken reference is reported, not fatal
        return failed("narrow-table loop", n, exc)
    finally:
        await drop_schema(dsn, SCHEMA)
