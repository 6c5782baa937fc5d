"""Versioned, transactional migrations of the store's schema.

``migrate(dsn, schema)`` applies every migration newer than the schema's version in
one transaction, under an advisory lock (two brokers migrating at once take
turns), and records each in ``schema_version``. Applying it twice is a no-op; a
schema newer than this code is refused with ``SchemaMismatch``.
"""

from __future__ import annotations

import zlib
from typing import Any

import psycopg
from psycopg import sql as pgsql

from workqueue_core.domain.errors import SchemaMismatch, StoreUnavailable
from workqueue_postgres.errors import describe
from workqueue_postgres.sql import quote_schema

_V1 = """
CREATE TABLE {s}.agents (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 253),
    registered_at timestamptz NOT NULL,
    labels jsonb NOT NULL DEFAULT '{{}}',
    annotations jsonb NOT NULL DEFAULT '{{}}',
    status text NOT NULL CHECK (status IN ('ACTIVE', 'DRAINING', 'INACTIVE')),
    last_seen_at timestamptz,
    token_hash text
);
CREATE INDEX agents_token_hash ON {s}.agents (token_hash) WHERE token_hash IS NOT NULL;

CREATE TABLE {s}.work_targets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL UNIQUE,
    agent_ids uuid[] NOT NULL,
    selector jsonb,
    CHECK (selector IS NOT NULL OR cardinality(agent_ids) > 0)
);

CREATE TABLE {s}.target_agents (
    agent_id uuid NOT NULL REFERENCES {s}.agents (id),
    target_id bigint NOT NULL REFERENCES {s}.work_targets (id),
    PRIMARY KEY (agent_id, target_id)
);

CREATE TABLE {s}.work_queue (
    id uuid PRIMARY KEY,
    work_type text NOT NULL,
    spec text NOT NULL,
    target_id bigint NOT NULL REFERENCES {s}.work_targets (id),
    created_at timestamptz NOT NULL,
    max_retries integer NOT NULL CHECK (max_retries >= 0),
    base_delay_us bigint NOT NULL CHECK (base_delay_us >= 0),
    multiplier double precision NOT NULL,
    max_delay_us bigint NOT NULL CHECK (max_delay_us >= base_delay_us),
    jitter text NOT NULL CHECK (jitter IN ('none', 'full', 'equal')),
    claim_timeout_us bigint NOT NULL CHECK (claim_timeout_us > 0),
    priority integer NOT NULL,
    not_before timestamptz,
    idempotency_key text,
    correlation_id text,
    labels jsonb NOT NULL DEFAULT '{{}}',
    callback_url text,
    status text NOT NULL CHECK (status IN ('HELD', 'PENDING', 'CLAIMED')),
    attempt integer NOT NULL CHECK (attempt >= 0),
    executions integer NOT NULL CHECK (executions >= 0 AND executions <= max_retries + 1),
    local_retries integer NOT NULL CHECK (local_retries >= 0),
    claimed_by uuid,
    claimed_at timestamptz,
    lease_expires_at timestamptz,
    error_class text CHECK (error_class IN ('PERMANENT', 'RETRYABLE')),
    error_reason text,
    error_message text,
    CHECK (status <> 'CLAIMED'
           OR (claimed_by IS NOT NULL AND claimed_at IS NOT NULL
               AND lease_expires_at IS NOT NULL AND attempt >= 1 AND executions >= 1)),
    CHECK ((error_class IS NULL) = (error_reason IS NULL))
);
-- claim_next: per target, PENDING items in claim order (priority, age, id).
CREATE INDEX work_queue_claim ON {s}.work_queue (target_id, priority DESC, created_at, id)
    WHERE status = 'PENDING';
-- sweep: CLAIMED items by lease expiry.
CREATE INDEX work_queue_lease ON {s}.work_queue (lease_expires_at, id)
    WHERE status = 'CLAIMED';
-- query: keyset pagination.
CREATE INDEX work_queue_created ON {s}.work_queue (created_at, id);

CREATE TABLE {s}.work_execution_log (
    LIKE {s}.work_queue INCLUDING DEFAULTS,
    finished_at timestamptz NOT NULL,
    finished_by text NOT NULL,
    result text,
    PRIMARY KEY (id),
    CHECK (status IN ('SUCCEEDED', 'FAILED', 'CANCELED')),
    CHECK (lease_expires_at IS NULL),
    CHECK (executions >= 0 AND executions <= max_retries + 1),
    FOREIGN KEY (target_id) REFERENCES {s}.work_targets (id)
);
-- prune and query_log: by finish time.
CREATE INDEX work_execution_log_finished ON {s}.work_execution_log (finished_at, id);

CREATE TABLE {s}.work_events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_id uuid NOT NULL,
    from_status text,
    to_status text NOT NULL,
    actor text NOT NULL,
    at timestamptz NOT NULL,
    attempt integer NOT NULL,
    executions integer NOT NULL,
    claimed_by uuid,
    correlation_id text,
    detail text NOT NULL
);
CREATE INDEX work_events_work ON {s}.work_events (work_id, seq);

CREATE TABLE {s}.idempotency_keys (
    key text PRIMARY KEY,
    work_id uuid NOT NULL
);
"""

_V2 = """
-- Targets are never deleted and only queue rows (whose target_id is checked) move to
-- the log, so the log's foreign key re-checked what was already true, once per
-- completed item, on the hottest write path.
ALTER TABLE {s}.work_execution_log DROP CONSTRAINT work_execution_log_target_id_fkey;

-- Completion callbacks: when the next delivery attempt of a record is due; NULL when
-- none is pending (no callback_url, delivered or abandoned).
ALTER TABLE {s}.work_execution_log ADD COLUMN callback_due_at timestamptz;
CREATE INDEX work_execution_log_callbacks ON {s}.work_execution_log (finished_at, id)
    WHERE callback_due_at IS NOT NULL;
"""

_V3 = """
-- A row names a holder exactly when it is CLAIMED. complete_many then matches its
-- rows by id, attempt and holder alone: a status condition in that statement made
-- the planner scan the partial lease index, whose dead entries (every completed
-- claim until VACUUM) grew the cost of each completion with the queue's history.
ALTER TABLE {s}.work_queue ADD CONSTRAINT work_queue_holder_iff_claimed
    CHECK ((status = 'CLAIMED') = (claimed_by IS NOT NULL));
"""

_V4 = """
-- callbacks_due takes due deliveries by (next attempt, finished_at, id), read in that
-- order from this index. By (finished_at, id), a pass tested every pending delivery
-- row by row, so a receiver down for long (every delivery in backoff) made each pass
-- cost the whole backlog.
DROP INDEX {s}.work_execution_log_callbacks;
CREATE INDEX work_execution_log_callback_due
    ON {s}.work_execution_log (callback_due_at, finished_at, id)
    WHERE callback_due_at IS NOT NULL;
"""

_V5 = """
-- The drain's rows, written per item, made cheaper (issue 17). A claim rewrites its queue
-- row (not HOT: status is in the partial indexes' predicates), so every index of the
-- table takes a new entry. The listing index now leaves claimed rows out: a claim writes
-- entries in the primary key and the lease index only. query() reads claimed rows, as
-- many as the agents hold, through work_queue_lease.
DROP INDEX {s}.work_queue_created;
CREATE INDEX work_queue_created ON {s}.work_queue (created_at, id) WHERE status <> 'CLAIMED';

-- Nothing looks an event up by seq alone: work_events_work (work_id, seq) orders a timeline
-- and finds it for prune. The primary key was one more index entry per event.
ALTER TABLE {s}.work_events DROP CONSTRAINT work_events_pkey;

-- Claim and completion events leave out what their row already says: a NULL actor is the
-- holder ('agent:' || claimed_by), a NULL detail the transition's own word ('claimed',
-- 'succeeded'). sql.EVENTS fills both in.
ALTER TABLE {s}.work_events ALTER COLUMN actor DROP NOT NULL,
    ALTER COLUMN detail DROP NOT NULL;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5)
"""Migration n (1-based) is ``MIGRATIONS[n - 1]``; never edit one that has shipped."""

LATEST_VERSION = len(MIGRATIONS)
"""The schema version this code reads and writes."""


def lock_key(schema: str, purpose: str) -> int:
    """A stable 32-bit advisory lock key for ``purpose`` in ``schema``."""
    return zlib.crc32(f"workqueue:{schema}:{purpose}".encode())


async def _current_version(conn: psycopg.AsyncConnection[Any], schema: str) -> int | None:
    """The schema's version, or None when the schema or its version table is missing."""
    cur = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{quote_schema(schema)}.schema_version",)
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return None
    cur = await conn.execute(
        pgsql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(
            pgsql.Identifier(schema)
        )
    )
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


def _too_new(schema: str, version: int) -> SchemaMismatch:
    return SchemaMismatch(
        f"schema {schema!r} is at version {version}, newer than the {LATEST_VERSION} this "
        "workqueue knows: upgrade workqueue before using this database"
    )


async def migrate(dsn: str, schema: str = "workqueue", *, version: int = LATEST_VERSION) -> int:
    """Bring ``schema`` up to ``version`` (by default ``LATEST_VERSION``) and return it.

    Idempotent; safe when several processes migrate at once; refuses a schema newer
    than this code with ``SchemaMismatch``. An earlier ``version`` is for upgrade
    tests: the store itself only opens a schema at ``LATEST_VERSION``.
    """
    if not 1 <= version <= LATEST_VERSION:
        raise ValueError(f"version must be in 1..{LATEST_VERSION}, got {version}")
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await _migrate(conn, schema, version)
    except psycopg.OperationalError as error:
        raise StoreUnavailable(describe("migrate", dsn, error)) from None


async def _migrate(conn: psycopg.AsyncConnection[Any], schema: str, target: int) -> int:
    ident = pgsql.Identifier(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, "migrate"),))
        await conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        await conn.execute(
            pgsql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_version (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(ident)
        )
        version = await _current_version(conn, schema) or 0
        if version > LATEST_VERSION:
            raise _too_new(schema, version)
        quoted = quote_schema(schema)
        for number in range(version + 1, target + 1):
            text = MIGRATIONS[number - 1].replace("{{}}", "{}").replace("{s}", quoted)
            await conn.execute(text.encode())
            await conn.execute(
                pgsql.SQL("INSERT INTO {}.schema_version (version) VALUES (%s)").format(ident),
                (number,),
            )
    return max(version, target)


async def check_version(conn: psycopg.AsyncConnection[Any], schema: str) -> int:
    """Return the schema's version, or raise ``SchemaMismatch`` unless it is current."""
    version = await _current_version(conn, schema)
    if version is None or version == 0:
        raise SchemaMismatch(
            f"schema {schema!r} has no workqueue tables: run `workqueue migrate` "
            "(or open the store with migrate=True)"
        )
    if version > LATEST_VERSION:
        raise _too_new(schema, version)
    if version < LATEST_VERSION:
        raise SchemaMismatch(
            f"schema {schema!r} is at version {version}, older than {LATEST_VERSION}: "
            "run `workqueue migrate`"
        )
    return version
