"""Issue 17 scratch harness: where the bare-SQL floor's server time goes, variant by variant.

Not wired into ``benchmarks.postgres``. Each variant is the floor (``sql.claim_next`` +
``sql.complete_many_quiet`` on bare psycopg, results undecoded) with one change to the
schema or the statements; the narrow-table loop (``benchmarks.narrow``'s tables and
statements) runs in the same rounds. Every round runs every variant once, in an order
rotated from round to round, so machine load falls on all alike; each drain gets a
fresh ``attr17_*`` schema in the given database, prefilled by one ``INSERT ... SELECT``
that copies a row the store submitted (UUIDv7 ids, one ``submitted`` event per item),
then ``VACUUM ANALYZE``d. Per drain: jobs/s, and the CPU per item of the two claimer
backends (``/proc/<pid>/stat``: the server must be local) and of this process.
Afterwards, per variant, a fresh schema is prefilled the same way and ``cycles`` claims
and completions of ``batch`` run under ``EXPLAIN (ANALYZE, BUFFERS, WAL)``, the variants
taking turns, each statement in its own transaction, its WAL read back with
``pg_walinspect`` by transaction id (other sessions' WAL is not counted) and grouped by
record kind and relation. ``pg_walinspect`` is created in ``attr17_walinspect`` and
dropped unless it was already installed; the first cycle's plans go to ``PLAN_DIR``.
Results and analysis: ``docs/benchmarks.md``, "Issue 17: where the floor's time goes".

    python -m benchmarks._attribution [--rounds 5] [--jobs 20000] [--variants a,b]
        [--cycles 10] [--skip-drain] [--skip-explain] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import attrs
import psycopg
from psycopg import sql as pgsql

from benchmarks import narrow, ours
from benchmarks._db import drop_schema
from benchmarks._workload import noop_item, now
from workqueue_broker.ids import uuid7
from workqueue_postgres import sql

DSN = os.environ.get("WORKQUEUE_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")
PREFIX = "attr17_"
WAL_SCHEMA = "attr17_walinspect"


def _sub(text: str, old: str, new: str, count: int = 1) -> str:
    """``text`` with ``old`` replaced by ``new``, exactly ``count`` times (else fail)."""
    found = text.count(old)
    if found != count:
        raise AssertionError(f"expected {count} of {old!r}, found {found}")
    return text.replace(old, new)


def _drop_events(statement: str) -> str:
    """The statement without its ``events`` CTE (diagnostic: DESIGN requires events)."""
    out, n = re.subn(r"\), events AS \(.*?\n\)\n", ")\n", statement, flags=re.S)
    assert n == 1, statement
    return out


def _drop_narrow_events(statement: str) -> str:
    out, n = re.subn(r"\), e AS \(.*?\n\)\n", ")\n", statement, flags=re.S)
    assert n == 1, statement
    return out


# --- statements -----------------------------------------------------------------------

BASE_CLAIM = sql.CLAIM_NEXT
BASE_COMPLETE = sql.COMPLETE_MANY_QUIET

_PICKED_BY_AGENT = BASE_CLAIM[
    BASE_CLAIM.index("WITH picked AS (") : BASE_CLAIM.index("), claimed AS (")
]
NOAGENTS_CLAIM = _sub(
    BASE_CLAIM,
    _PICKED_BY_AGENT,
    f"""WITH picked AS (
    SELECT q.id
    FROM {{s}}.work_queue q
    WHERE q.target_id = %(target)s AND {sql._ELIGIBLE}
    ORDER BY q.priority DESC, q.created_at, q.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
""",
)

_FINAL = f"SELECT {sql._CLAIMED} FROM claimed ORDER BY priority DESC, created_at, id"
IDSONLY_CLAIM = _sub(
    BASE_CLAIM, _FINAL, "SELECT id, attempt FROM claimed ORDER BY priority DESC, created_at, id"
)

SLIM_CLAIM = _sub(
    _sub(BASE_CLAIM, "'PENDING', 'CLAIMED', NULL", "NULL, 'CLAIMED', NULL"),
    "%(agent)s, correlation_id, NULL",
    "%(agent)s, NULL, NULL",
)
SLIM_COMPLETE = _sub(
    _sub(BASE_COMPLETE, "'CLAIMED', 'SUCCEEDED', NULL", "NULL, 'SUCCEEDED', NULL"),
    "l.claimed_by, l.correlation_id, NULL",
    "l.claimed_by, NULL, NULL",
)
"""Claim and completion events without from_status and correlation_id (both derivable:
the transition's source and the item's own correlation id)."""

NOEVENTS_CLAIM = _drop_events(BASE_CLAIM)
NOEVENTS_COMPLETE = _drop_events(BASE_COMPLETE)


def _bigint_claim() -> str:
    s = BASE_CLAIM
    s = _sub(s, "    SELECT c.id\n", "    SELECT c.seq\n")
    s = _sub(s, "SELECT q.id, q.priority, q.created_at", "SELECT q.seq, q.priority, q.created_at")
    s = _sub(
        s,
        "ORDER BY q.priority DESC, q.created_at, q.id",
        "ORDER BY q.priority DESC, q.created_at, q.seq",
    )
    s = _sub(
        s,
        "ORDER BY c.priority DESC, c.created_at, c.id",
        "ORDER BY c.priority DESC, c.created_at, c.seq",
    )
    s = _sub(
        s,
        "WHERE q.id = ANY(ARRAY(SELECT id FROM picked))",
        "WHERE q.seq = ANY(ARRAY(SELECT seq FROM picked))",
    )
    s = _sub(s, "RETURNING q.id, ", "RETURNING q.seq, q.id, ")
    s = _sub(s, "    SELECT id, 'PENDING', 'CLAIMED'", "    SELECT seq, 'PENDING', 'CLAIMED'")
    return _sub(
        s,
        "FROM claimed ORDER BY priority DESC, created_at, id",
        "FROM claimed ORDER BY priority DESC, created_at, seq",
    )


def _bigint_complete() -> str:
    s = BASE_COMPLETE
    s = _sub(s, f"RETURNING {sql._Q_ITEMS}, i.result", f"RETURNING q.seq, {sql._Q_ITEMS}, i.result")
    s = _sub(s, f"({sql._LOG}, callback_due_at)", f"({sql._LOG}, callback_due_at, seq)")
    s = _sub(
        s,
        "%(now)s::timestamptz END\n    FROM done d",
        "%(now)s::timestamptz END, d.seq\n    FROM done d",
    )
    s = _sub(
        s,
        "RETURNING id, attempt, executions, claimed_by, correlation_id",
        "RETURNING seq, id, attempt, executions, claimed_by, correlation_id",
    )
    return _sub(
        s, "    SELECT l.id, 'CLAIMED', 'SUCCEEDED'", "    SELECT l.seq, 'CLAIMED', 'SUCCEEDED'"
    )


BIGINT_CLAIM = _bigint_claim()
BIGINT_COMPLETE = _bigint_complete()

# --- schema changes (run after the store's migrations 1-5 and the template row) ------

DROP_CHECKS = """
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT conrelid::regclass AS t, conname FROM pg_constraint
           WHERE contype = 'c' AND conrelid IN ('{s}.work_queue'::regclass,
                                                '{s}.work_execution_log'::regclass)
  LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname); END LOOP;
END $$;
"""

HOT_INDEXES = """
DROP INDEX {s}.work_queue_claim;
CREATE INDEX work_queue_claim ON {s}.work_queue (target_id, priority DESC, created_at, id);
DROP INDEX {s}.work_queue_lease;
DROP INDEX {s}.work_queue_created;
CREATE INDEX work_queue_created ON {s}.work_queue (created_at, id);
"""


def _fillfactor(ff: int) -> str:
    return f"ALTER TABLE {{s}}.work_queue SET (fillfactor = {ff});"


BIGINT_KEYS = """
ALTER TABLE {s}.work_queue ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE {s}.work_queue DROP CONSTRAINT work_queue_pkey;
ALTER TABLE {s}.work_queue ADD PRIMARY KEY (seq);
ALTER TABLE {s}.work_queue ADD CONSTRAINT work_queue_id_key UNIQUE (id);
DROP INDEX {s}.work_queue_claim;
CREATE INDEX work_queue_claim ON {s}.work_queue (target_id, priority DESC, created_at, seq)
    WHERE status = 'PENDING';
DROP INDEX {s}.work_queue_lease;
CREATE INDEX work_queue_lease ON {s}.work_queue (lease_expires_at, seq) WHERE status = 'CLAIMED';
ALTER TABLE {s}.work_execution_log ADD COLUMN seq bigint NOT NULL;
ALTER TABLE {s}.work_execution_log DROP CONSTRAINT work_execution_log_pkey;
ALTER TABLE {s}.work_execution_log ADD PRIMARY KEY (seq);
DROP INDEX {s}.work_execution_log_finished;
CREATE INDEX work_execution_log_finished ON {s}.work_execution_log (finished_at, seq);
DROP INDEX {s}.work_execution_log_callback_due;
CREATE INDEX work_execution_log_callback_due ON {s}.work_execution_log
    (callback_due_at, finished_at, seq) WHERE callback_due_at IS NOT NULL;
ALTER TABLE {s}.work_events ALTER COLUMN work_id TYPE bigint USING 0;
"""
"""bigint keys: the queue's, the log's and the events' key is a bigint the queue assigns;
the queue keeps its UUID as a unique column (completions find rows by it), the log keeps
it unindexed. ``work_queue_created`` stays on (created_at, id): query() pages by UUID."""

HOT_INDEXES_BIGINT = """
DROP INDEX {s}.work_queue_claim;
CREATE INDEX work_queue_claim ON {s}.work_queue (target_id, priority DESC, created_at, seq);
DROP INDEX {s}.work_queue_lease;
DROP INDEX {s}.work_queue_created;
CREATE INDEX work_queue_created ON {s}.work_queue (created_at, id);
"""

LOG_UUID_INDEX = "CREATE UNIQUE INDEX work_execution_log_id ON {s}.work_execution_log (id);"


@attrs.frozen
class Variant:
    """The floor with one change: extra DDL, other statements, which key events use."""

    name: str
    note: str
    ddl: str = ""
    claim: str = BASE_CLAIM
    complete: str = BASE_COMPLETE
    key: str = "id"  # the queue column events and the log are keyed by


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("base", "floor as on main (migration 5)"),
        Variant("nocheck", "1: CHECK constraints dropped (diagnostic)", ddl=DROP_CHECKS),
        Variant(
            "noagents",
            "2: claim by one target, no target_agents / agents (diagnostic)",
            claim=NOAGENTS_CLAIM,
        ),
        Variant("ff70", "3: work_queue fillfactor 70", ddl=_fillfactor(70)),
        Variant("ff50", "3: work_queue fillfactor 50", ddl=_fillfactor(50)),
        Variant(
            "bigint",
            "4: bigint keys, UUID unique on the queue only",
            ddl=BIGINT_KEYS,
            claim=BIGINT_CLAIM,
            complete=BIGINT_COMPLETE,
            key="seq",
        ),
        Variant(
            "bigint_logid",
            "4': bigint keys + unique UUID index on the log",
            ddl=BIGINT_KEYS + LOG_UUID_INDEX,
            claim=BIGINT_CLAIM,
            complete=BIGINT_COMPLETE,
            key="seq",
        ),
        Variant(
            "hot",
            "5: HOT-able claim: claim/created indexes non-partial, no lease index (diagnostic)",
            ddl=HOT_INDEXES,
        ),
        Variant(
            "hot_ff50",
            "5+3: HOT-able claim, fillfactor 50 (diagnostic)",
            ddl=HOT_INDEXES + _fillfactor(50),
        ),
        Variant("idsonly", "6: claim returns id, attempt only (diagnostic)", claim=IDSONLY_CLAIM),
        Variant(
            "noevents",
            "7: no claim/completion events (diagnostic)",
            claim=NOEVENTS_CLAIM,
            complete=NOEVENTS_COMPLETE,
        ),
        Variant(
            "ff70_bigint",
            "3+4: fillfactor 70 and bigint keys",
            ddl=BIGINT_KEYS + _fillfactor(70),
            claim=BIGINT_CLAIM,
            complete=BIGINT_COMPLETE,
            key="seq",
        ),
        Variant(
            "hot_ff70",
            "5+3: HOT-able claim, fillfactor 70 (diagnostic)",
            ddl=HOT_INDEXES + _fillfactor(70),
        ),
        Variant(
            "hot_ff50_bigint",
            "5+3+4: HOT-able claim, fillfactor 50, bigint keys (diagnostic)",
            ddl=BIGINT_KEYS + HOT_INDEXES_BIGINT + _fillfactor(50),
            claim=BIGINT_CLAIM,
            complete=BIGINT_COMPLETE,
            key="seq",
        ),
        Variant(
            "events_noindex",
            "7': events written, work_events_work index dropped (diagnostic)",
            ddl="DROP INDEX {s}.work_events_work;",
        ),
        Variant(
            "slimevents",
            "7'': claim/completion events without from_status, correlation_id",
            claim=SLIM_CLAIM,
            complete=SLIM_COMPLETE,
        ),
        Variant(
            "narrow",
            "narrow-table loop (benchmarks.narrow)",
            claim=narrow._CLAIM,
            complete=narrow._COMPLETE,
        ),
        Variant(
            "narrow_noevents",
            "narrow-table loop without its event rows (diagnostic)",
            claim=_drop_narrow_events(narrow._CLAIM),
            complete=_drop_narrow_events(narrow._COMPLETE),
        ),
    )
}


def _ident(schema: str) -> str:
    return pgsql.Identifier(schema).as_string(None)


def _fmt(template: str, schema: str) -> str:
    return template.replace("{s}", _ident(schema))


# --- setup ----------------------------------------------------------------------------


@attrs.frozen
class Setup:
    schema: str
    agents: tuple[UUID, ...]
    target: int


_TEMPLATE_COLUMNS = tuple(c for c in sql.ITEM_COLUMNS if c not in ("id", "created_at"))


async def setup(v: Variant, n: int, tag: str) -> Setup:
    """A fresh schema for ``v`` with ``n`` pending items and two agents."""
    schema = f"{PREFIX}{v.name}_{tag}"
    if v.name.startswith("narrow"):
        await drop_schema(DSN, schema)
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
            await conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
            await conn.execute(narrow._TABLES.format(s=_ident(schema)).encode())
            await conn.execute(narrow._PREFILL.format(s=_ident(schema)).encode(), {"n": n})
            await _vacuum(conn, schema)
        return Setup(schema, (), 0)
    await drop_schema(DSN, schema)
    store = await ours.open_store(DSN, schema)
    try:
        agents = await ours.register(store, 2, "attr")
        await store.submit(noop_item(), "bench", now())
    finally:
        await store.close()
    s = _ident(schema)
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(f"CREATE TABLE {s}.attr17_template AS SELECT * FROM {s}.work_queue")
        await conn.execute(f"DELETE FROM {s}.work_queue")
        await conn.execute(f"DELETE FROM {s}.work_events")
        if v.ddl:
            await conn.execute(_fmt(v.ddl, schema).encode())
        cur = await conn.execute(f"SELECT target_id FROM {s}.attr17_template")
        target = int((await cur.fetchone() or (0,))[0])
        start = datetime.now(UTC)
        ids = [uuid7() for _ in range(n)]
        created = [start + timedelta(microseconds=i) for i in range(n)]
        cols = ", ".join(sql.ITEM_COLUMNS)
        values = ", ".join(
            "u.id" if c == "id" else "u.created_at" if c == "created_at" else f"t.{c}"
            for c in sql.ITEM_COLUMNS
        )
        await conn.execute(
            f"""
            WITH ins AS (
                INSERT INTO {s}.work_queue ({cols})
                SELECT {values}
                FROM unnest(%(ids)s::uuid[], %(created)s::timestamptz[]) AS u(id, created_at)
                CROSS JOIN {s}.attr17_template t
                ORDER BY u.created_at
                RETURNING {v.key} AS k, status, attempt, executions, claimed_by, correlation_id
            )
            INSERT INTO {s}.work_events ({", ".join(sql.EVENT_COLUMNS)})
            SELECT k, NULL, status, 'bench', now(), attempt, executions, claimed_by,
                   correlation_id, 'submitted'
            FROM ins
            """.encode(),
            {"ids": ids, "created": created},
        )
        await _vacuum(conn, schema)
    return Setup(schema, tuple(a.id for a in agents), target)


async def _vacuum(conn: psycopg.AsyncConnection[Any], schema: str) -> None:
    cur = await conn.execute(
        "SELECT format('%%I.%%I', schemaname, relname) FROM pg_stat_user_tables "
        "WHERE schemaname = %s",
        (schema,),
    )
    for (table,) in await cur.fetchall():
        await conn.execute(f"VACUUM ANALYZE {table}".encode())


# --- drains ---------------------------------------------------------------------------


def _int4(data: bytes | None) -> int:
    return int.from_bytes(data or b"", "big", signed=True)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a local process, from /proc (the server is local)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _floor_claimer(v: Variant, st: Setup, agent: UUID, batch: int) -> tuple[int, float]:
    claim_sql, complete_sql = _fmt(v.claim, st.schema), _fmt(v.complete, st.schema)
    params: dict[str, Any] = {
        "agent": agent,
        "types": ["noop"],
        "limit": batch,
        "target": st.target,
    }
    done = 0
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        pid = conn.info.backend_pid
        cpu = _cpu(pid)
        id_at = attempt_at = -1
        while True:
            params["now"] = now()
            cur = conn.cursor(binary=True)
            await cur.execute(claim_sql, params)
            res = cur.pgresult
            k = 0 if res is None else res.ntuples
            if res is None or k == 0:
                return done, _cpu(pid) - cpu
            if id_at < 0:
                names = [(res.fname(i) or b"").decode() for i in range(res.nfields)]
                id_at, attempt_at = names.index("id"), names.index("attempt")
            value = res.get_value
            await cur.execute(
                complete_sql,
                {
                    "ids": [UUID(bytes=value(i, id_at)) for i in range(k)],
                    "attempts": [_int4(value(i, attempt_at)) for i in range(k)],
                    "agents": None,
                    "agent": agent,
                    "results": None,
                    "local_retries": None,
                    "now": now(),
                },
            )
            out = cur.pgresult
            if out is None or out.ntuples != k:
                raise RuntimeError(f"{v.name}: completed fewer than the {k} claimed")
            done += k


async def _narrow_claimer(v: Variant, schema: str, batch: int) -> tuple[int, float]:
    claim, complete = _fmt(v.claim, schema), _fmt(v.complete, schema)
    done = 0
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        pid = conn.info.backend_pid
        cpu = _cpu(pid)
        cur = conn.cursor(binary=True)
        while True:
            await cur.execute(claim, {"limit": batch})
            ids = [row[0] for row in await cur.fetchall()]
            if not ids:
                return done, _cpu(pid) - cpu
            await cur.execute(complete, {"ids": ids})
            row: Any = await cur.fetchone()
            done += int(row[0])


async def _check(v: Variant, st: Setup, n: int) -> None:
    s = _ident(st.schema)
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        if v.name.startswith("narrow"):
            q = (
                f"SELECT (SELECT count(*) FROM {s}.log), (SELECT count(*) FROM {s}.q), "
                f"(SELECT count(*) FROM {s}.events)"
            )
            want_events = 0 if v.name == "narrow_noevents" else 2 * n
        else:
            q = (
                f"SELECT (SELECT count(*) FROM {s}.work_execution_log WHERE status = 'SUCCEEDED'), "
                f"(SELECT count(*) FROM {s}.work_queue), (SELECT count(*) FROM {s}.work_events)"
            )
            want_events = n if v.name == "noevents" else 3 * n
        cur = await conn.execute(q.encode())
        done, left, events = await cur.fetchone() or (0, 0, 0)
    if (done, left, events) != (n, 0, want_events):
        raise RuntimeError(f"{v.name}: done {done}, left {left}, events {events} (n={n})")


async def drain(
    v: Variant, n: int, claimers: int, batch: int, tag: str
) -> tuple[float, float, float]:
    """(jobs/s, backend CPU µs per item, client CPU µs per item) of one drain of ``n``
    items by ``claimers`` connections."""
    st = await setup(v, n, tag)
    try:
        client = time.process_time()
        started = time.perf_counter()
        if v.name.startswith("narrow"):
            got = await asyncio.gather(
                *(_narrow_claimer(v, st.schema, batch) for _ in range(claimers))
            )
        else:
            agents = (st.agents * claimers)[:claimers]
            got = await asyncio.gather(*(_floor_claimer(v, st, a, batch) for a in agents))
        seconds = time.perf_counter() - started
        client = time.process_time() - client
        await _check(v, st, n)
        backend = sum(cpu for _, cpu in got)
        return n / seconds, backend / n * 1e6, client / n * 1e6
    finally:
        await drop_schema(DSN, st.schema)


# --- WAL and server time per statement --------------------------------------------------


async def _ensure_walinspect(conn: psycopg.AsyncConnection[Any]) -> tuple[str, bool]:
    cur = await conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_walinspect'"
    )
    row = await cur.fetchone()
    if row is not None:
        return str(row[0]), False
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {WAL_SCHEMA}".encode())
    await conn.execute(f"CREATE EXTENSION pg_walinspect SCHEMA {WAL_SCHEMA}".encode())
    return WAL_SCHEMA, True


async def _explained(
    conn: psycopg.AsyncConnection[Any], wal_ns: str, statement: str, params: dict[str, Any]
) -> tuple[float, int, int, Counter[str], dict[str, Any]]:
    """(execution ms, WAL bytes, WAL records, records by kind, plan) of one statement in
    its own transaction; WAL counted by its transaction id."""
    cur = await conn.execute("SELECT pg_current_wal_insert_lsn()")
    before = (await cur.fetchone() or ("0/0",))[0]
    async with conn.transaction():
        cur = await conn.execute(
            ("EXPLAIN (ANALYZE, BUFFERS, WAL, TIMING OFF, FORMAT JSON) " + statement).encode(),
            params,
        )
        plan: dict[str, Any] = (await cur.fetchone() or ([{}],))[0][0]
        cur = await conn.execute("SELECT pg_current_xact_id_if_assigned()::text")
        xid8 = (await cur.fetchone() or (None,))[0]
    cur = await conn.execute("SELECT pg_current_wal_flush_lsn()")
    after = (await cur.fetchone() or ("0/0",))[0]
    xid = str(int(xid8) % (1 << 32)) if xid8 is not None else "-1"
    cur = await conn.execute(
        "SELECT w.resource_manager || ':' || w.record_type, coalesce(c.relname, '-'), "
        "count(*), sum(w.record_length), sum(w.fpi_length) "
        f"FROM {wal_ns}.pg_get_wal_records_info(%s, %s) w "
        "LEFT JOIN pg_class c ON c.relfilenode = "
        r"nullif(substring(w.block_ref from 'rel \d+/\d+/(\d+)'), '')::oid "
        "WHERE w.xid::text = %s GROUP BY 1, 2".encode(),
        (before, after, xid),
    )
    # "n <kind> <relation>": records, "b ...": bytes, "fpi ...": of which full-page images
    kinds: Counter[str] = Counter()
    total = records = 0
    for kind, rel, count, length, fpi in await cur.fetchall():
        kinds[f"n {kind} {rel}"] += int(count)
        kinds[f"b {kind} {rel}"] += int(length)
        kinds[f"fpi {kind} {rel}"] += int(fpi)
        records += int(count)
        total += int(length)
    return float(plan["Execution Time"]), total, records, kinds, plan


@attrs.frozen
class Explained:
    claim_ms: list[float]
    complete_ms: list[float]
    claim_wal: list[int]
    complete_wal: list[int]
    claim_records: list[int]
    complete_records: list[int]
    kinds: Counter[str]
    hot_updates: int
    updates: int


async def _cycle(
    conn: psycopg.AsyncConnection[Any],
    v: Variant,
    st: Setup,
    out: Explained,
    batch: int,
    wal_ns: str,
    first: bool,
) -> None:
    """One claim and one completion of ``batch`` items under EXPLAIN, recorded in ``out``."""
    s = _ident(st.schema)
    claim_params: dict[str, Any]
    if v.name.startswith("narrow"):
        claim, claim_params = _fmt(v.claim, st.schema), {"limit": batch}
    else:
        claim = _fmt(v.claim, st.schema)
        claim_params = {
            "agent": st.agents[0],
            "types": ["noop"],
            "limit": batch,
            "target": st.target,
            "now": now(),
        }
    ms, wal, recs, kinds, plan = await _explained(conn, wal_ns, claim, claim_params)
    if first:
        _save_plan(v.name, "claim", plan)
    out.claim_ms.append(ms)
    out.claim_wal.append(wal)
    out.claim_records.append(recs)
    out.kinds.update({f"claim {k}": c for k, c in kinds.items()})
    params: dict[str, Any]
    if v.name.startswith("narrow"):
        cur = await conn.execute(f"SELECT id FROM {s}.q WHERE status = 'claimed'".encode())
        complete, params = (
            _fmt(v.complete, st.schema),
            {"ids": [r[0] for r in await cur.fetchall()]},
        )
    else:
        cur = await conn.execute(
            f"SELECT id, attempt FROM {s}.work_queue WHERE status = 'CLAIMED'".encode()
        )
        rows = await cur.fetchall()
        complete = _fmt(v.complete, st.schema)
        params = {
            "ids": [r[0] for r in rows],
            "attempts": [r[1] for r in rows],
            "agents": None,
            "agent": st.agents[0],
            "results": None,
            "local_retries": None,
            "now": now(),
        }
    ms, wal, recs, kinds, plan = await _explained(conn, wal_ns, complete, params)
    if first:
        _save_plan(v.name, "complete", plan)
    out.complete_ms.append(ms)
    out.complete_wal.append(wal)
    out.complete_records.append(recs)
    out.kinds.update({f"complete {k}": c for k, c in kinds.items()})


async def explain_all(
    variants: list[Variant], n: int, batch: int, cycles: int, wal_ns: str
) -> dict[str, Explained]:
    """Per variant, ``cycles`` claims and completions under EXPLAIN, the variants taking
    turns cycle by cycle (each on its own schema of ``n`` pending items)."""
    setups = {v.name: await setup(v, n, "x") for v in variants}
    outs = {v.name: Explained([], [], [], [], [], [], Counter(), 0, 0) for v in variants}
    try:
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
            for cycle in range(cycles):
                for v in variants[cycle % len(variants) :] + variants[: cycle % len(variants)]:
                    await _cycle(conn, v, setups[v.name], outs[v.name], batch, wal_ns, cycle == 0)
        await asyncio.sleep(1.0)  # let the backend's table statistics reach pg_stat
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
            for v in variants:
                table = "q" if v.name.startswith("narrow") else "work_queue"
                cur = await conn.execute(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                    "WHERE schemaname = %s AND relname = %s",
                    (setups[v.name].schema, table),
                )
                upd, hot = await cur.fetchone() or (0, 0)
                outs[v.name] = attrs.evolve(outs[v.name], hot_updates=int(hot), updates=int(upd))
        return outs
    finally:
        for st in setups.values():
            await drop_schema(DSN, st.schema)


PLAN_DIR = "/tmp/attr17_plans"


def _save_plan(name: str, which: str, plan: dict[str, Any]) -> None:
    os.makedirs(PLAN_DIR, exist_ok=True)
    with open(f"{PLAN_DIR}/{name}_{which}.json", "w") as f:
        json.dump(plan, f, indent=1)


# --- main -----------------------------------------------------------------------------


def machine() -> str:
    started = time.perf_counter()
    s = 0
    for i in range(10_000_000):
        s += i
    cpu = time.perf_counter() - started
    return f"10M additions {cpu:.2f} s, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--claimers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-explain", action="store_true")
    parser.add_argument("--output", default="/tmp/attr17_results.json")
    args = parser.parse_args()
    names = args.variants.split(",")
    if "narrow" not in names:
        names.append("narrow")
    variants = [VARIANTS[n] for n in names]
    result: dict[str, Any] = {"start": datetime.now(UTC).isoformat(), "machine_start": machine()}
    print(f"# {result['start']} {result['machine_start']}", file=sys.stderr)
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    backend: dict[str, list[float]] = {v.name: [] for v in variants}
    client: dict[str, list[float]] = {v.name: [] for v in variants}
    loads: list[float] = []
    if not args.skip_drain:
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                rate, server_us, client_us = await drain(
                    v, args.jobs, args.claimers, args.batch, "d"
                )
                rates[v.name].append(rate)
                backend[v.name].append(server_us)
                client[v.name].append(client_us)
                loads.append(os.getloadavg()[0])
                print(
                    f"round {r + 1} {v.name:15s} {rate:9,.0f} jobs/s  backend {server_us:5.1f} "
                    f"client {client_us:5.1f} us/item  load {loads[-1]:.2f}",
                    file=sys.stderr,
                )
        result["rates"] = rates
        result["backend_us"] = backend
        result["client_us"] = client
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
        result["loads"] = loads
    explained: dict[str, Any] = {}
    if not args.skip_explain:
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
            wal_ns, created = await _ensure_walinspect(conn)
        try:
            outs = await explain_all(variants, args.jobs, args.batch, args.cycles, wal_ns)
            for name, e in outs.items():
                explained[name] = attrs.asdict(e)
                print(
                    f"explain {name:15s} claim {statistics.median(e.claim_ms):.2f} ms "
                    f"{statistics.median(e.claim_wal) / 1024:.1f} kB; complete "
                    f"{statistics.median(e.complete_ms):.2f} ms "
                    f"{statistics.median(e.complete_wal) / 1024:.1f} kB; "
                    f"HOT {e.hot_updates}/{e.updates}",
                    file=sys.stderr,
                )
        finally:
            if created:
                async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
                    await conn.execute(f"DROP SCHEMA {WAL_SCHEMA} CASCADE".encode())
        result["explained"] = explained
    result["end"] = datetime.now(UTC).isoformat()
    result["machine_end"] = machine()
    print(f"# {result['end']} {result['machine_end']}", file=sys.stderr)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    print(report(result, args))


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"start {result['start']}: {result['machine_start']}",
        f"end {result['end']}: {result['machine_end']}",
        "",
    ]
    rates = result.get("rates")
    if rates:
        med = {k: statistics.median(v) for k, v in rates.items() if v}
        nar, base = med.get("narrow"), med.get("base")
        lines += [
            "| variant | jobs/s per round | median | / narrow | / base |",
            "|---|---|---:|---:|---:|",
        ]
        for k, v in rates.items():
            lines.append(
                f"| {k} | {' / '.join(f'{x:,.0f}' for x in v)} | {med[k]:,.0f} | "
                f"{med[k] / nar:.2f} | {med[k] / base:.2f} |"
                if nar and base
                else f"| {k} | {med[k]:,.0f} |"
            )
        # per-round ratios (the round's narrow as reference)
        lines += ["", "per-round ratio to that round's narrow loop, median:"]
        for k, v in rates.items():
            per = [x / n for x, n in zip(v, rates["narrow"], strict=False)]
            lines.append(
                f"  {k}: {' '.join(f'{p:.2f}' for p in per)} -> {statistics.median(per):.2f}"
            )
    ex = result.get("explained")
    if ex:
        lines += [
            "",
            "| variant | claim ms | completion ms | claim WAL kB (records) "
            "| completion WAL kB (records) | WAL per 100 items kB | HOT / updates |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for k, e in ex.items():
            m = statistics.median
            lines.append(
                f"| {k} | {m(e['claim_ms']):.2f} | {m(e['complete_ms']):.2f} | "
                f"{m(e['claim_wal']) / 1024:.1f} ({m(e['claim_records']):.0f}) | "
                f"{m(e['complete_wal']) / 1024:.1f} ({m(e['complete_records']):.0f}) | "
                f"{(m(e['claim_wal']) + m(e['complete_wal'])) / 1024 * 100 / args.batch:.1f} | "
                f"{e['hot_updates']} / {e['updates']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
