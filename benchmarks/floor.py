"""The bare-SQL floor: our store's own claim and complete statements, run with bare psycopg.

The items and agents are created through the store (not timed); the drain runs
``workqueue_postgres.sql``'s ``claim_next`` and ``complete_many_quiet`` statements (which
write their events in the same statement) on one autocommit connection per
claimer, with no library objects: the rows the statements return are left
undecoded in the result, except the two values the next statement needs (each
claimed row's id and attempt, read from the binary result as they are).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

import psycopg

from benchmarks import ours
from benchmarks._db import drop_schema, vacuum_analyze
from benchmarks._result import DrainResult, failed
from benchmarks._workload import WORK_TYPE, now

SCHEMA = "bench_floor"


def _int4(data: bytes | None) -> int:
    """A binary ``integer`` value."""
    return int.from_bytes(data or b"", "big", signed=True)


async def _claimer(dsn: str, st: Any, columns: tuple[str, ...], agent_id: UUID, batch: int) -> int:
    id_at = columns.index("id")
    attempt_at = columns.index("attempt")
    claim: dict[str, Any] = {
        "agent": agent_id,
        "actor": f"agent:{agent_id}",
        "types": [WORK_TYPE],
        "limit": batch,
    }
    done = 0
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            claim["now"] = now()
            cur = conn.cursor(binary=True)
            await cur.execute(st.claim_next, claim)
            claimed = cur.pgresult
            k = 0 if claimed is None else claimed.ntuples
            if claimed is None or k == 0:
                return done
            value = claimed.get_value
            await cur.execute(
                st.complete_many_quiet,
                {
                    "ids": [UUID(bytes=value(i, id_at)) for i in range(k)],
                    "attempts": [_int4(value(i, attempt_at)) for i in range(k)],
                    "agents": None,  # every entry the agent's, as the store sends it
                    "agent": agent_id,
                    "results": None,
                    "local_retries": None,
                    "now": now(),
                },
            )
            completed = cur.pgresult
            if completed is None or completed.ntuples != k:
                raise RuntimeError(f"complete_many_quiet completed fewer than the {k} claimed")
            done += k


async def drain(dsn: str, n: int, claimers: int, batch: int) -> DrainResult:
    """Prefill ``n`` items through the store, then time bare-SQL claimers draining them."""
    if (why := ours.available()) is not None:
        return failed("bare-SQL floor", n, f"store not available: {why}")
    from workqueue_postgres import sql

    store = None
    try:
        store = await ours.open_store(dsn, SCHEMA)
        agents = await ours.register(store, claimers, "floor")
        started = time.perf_counter()
        await ours.prefill(store, n)
        enqueue_seconds = time.perf_counter() - started
        await store.close()
        store = None
        await vacuum_analyze(dsn)
        st = sql.statements(SCHEMA)
        started = time.perf_counter()
        await asyncio.gather(*(_claimer(dsn, st, sql.CLAIMED_COLUMNS, a.id, batch) for a in agents))
        seconds = time.perf_counter() - started
        done, left = await ours.count_done(dsn, SCHEMA)
        return DrainResult(
            "bare-SQL floor",
            n,
            done,
            seconds,
            enqueue_seconds,
            settings=(
                f"{claimers} connections, sql.claim_next(limit={batch}) + sql.complete_many_quiet"
            ),
            error=None if left == 0 else f"{left} items left in the queue",
        )
    except Exception as exc:
        return failed("bare-SQL floor", n, exc)
    finally:
        if store is not None:
            await store.close()
        await drop_schema(dsn, SCHEMA)
