"""The SQLite schema as versioned migrations, and the code that applies them.

Version N is reached by applying migrations 1..N in order, each in the same
transaction as the ``schema_version`` update that records it. A file whose version
is newer than ``SCHEMA_VERSION`` was written by newer code and is refused.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from workqueue_core.domain.errors import SchemaMismatch

# Columns shared by the queue and the log (see codec.ITEM_COLUMNS).
_ITEM_COLUMNS = """
    id               TEXT    NOT NULL PRIMARY KEY,
    work_type        TEXT    NOT NULL,
    spec             TEXT    NOT NULL,
    targeting        TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    retry_policy     TEXT    NOT NULL,
    max_executions   INTEGER NOT NULL CHECK (max_executions >= 1),
    claim_timeout_us INTEGER NOT NULL CHECK (claim_timeout_us > 0),
    priority         INTEGER NOT NULL,
    not_before       INTEGER,
    idempotency_key  TEXT,
    correlation_id   TEXT,
    labels           TEXT    NOT NULL,
    callback_url     TEXT,
    attempt          INTEGER NOT NULL CHECK (attempt >= 0),
    executions       INTEGER NOT NULL CHECK (executions >= 0),
    local_retries    INTEGER NOT NULL CHECK (local_retries >= 0),
    claimed_by       TEXT,
    claimed_at       INTEGER,
    lease_expires_at INTEGER,
    last_error       TEXT,
"""

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: queue, log, events, agents, materialised targets.
    (
        f"""CREATE TABLE work_queue ({_ITEM_COLUMNS}
            status TEXT NOT NULL CHECK (status IN ('HELD', 'PENDING', 'CLAIMED')),
            CHECK (status <> 'CLAIMED' OR (claimed_by IS NOT NULL
                                           AND lease_expires_at IS NOT NULL))
        ) WITHOUT ROWID""",
        """CREATE INDEX work_queue_claim_order ON work_queue
            (priority DESC, created_at, id) WHERE status = 'PENDING'""",
        """CREATE INDEX work_queue_created ON work_queue (created_at, id)""",
        """CREATE INDEX work_queue_type ON work_queue (work_type, status)""",
        """CREATE INDEX work_queue_claimed_by ON work_queue (claimed_by)
            WHERE claimed_by IS NOT NULL""",
        """CREATE INDEX work_queue_lease ON work_queue (lease_expires_at, id)
            WHERE status = 'CLAIMED'""",
        """CREATE UNIQUE INDEX work_queue_idempotency ON work_queue (idempotency_key)
            WHERE idempotency_key IS NOT NULL""",
        f"""CREATE TABLE work_execution_log ({_ITEM_COLUMNS}
            status      TEXT    NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED', 'CANCELED')),
            finished_at INTEGER NOT NULL,
            finished_by TEXT    NOT NULL,
            result      TEXT
        ) WITHOUT ROWID""",
        """CREATE INDEX work_log_finished ON work_execution_log (finished_at, id)""",
        """CREATE INDEX work_log_type ON work_execution_log (work_type, status)""",
        """CREATE INDEX work_log_claimed_by ON work_execution_log (claimed_by)
            WHERE claimed_by IS NOT NULL""",
        """CREATE UNIQUE INDEX work_log_idempotency ON work_execution_log (idempotency_key)
            WHERE idempotency_key IS NOT NULL""",
        """CREATE TABLE work_events (
            seq            INTEGER PRIMARY KEY AUTOINCREMENT,
            work_id        TEXT    NOT NULL,
            from_status    TEXT,
            to_status      TEXT    NOT NULL,
            actor          TEXT    NOT NULL,
            at             INTEGER NOT NULL,
            attempt        INTEGER NOT NULL,
            executions     INTEGER NOT NULL,
            claimed_by     TEXT,
            correlation_id TEXT,
            detail         TEXT    NOT NULL
        )""",
        """CREATE INDEX work_events_item ON work_events (work_id, seq)""",
        """CREATE TABLE agents (
            id            TEXT    NOT NULL PRIMARY KEY,
            name          TEXT    NOT NULL UNIQUE,
            registered_at INTEGER NOT NULL,
            labels        TEXT    NOT NULL,
            annotations   TEXT    NOT NULL,
            status        TEXT    NOT NULL CHECK (status IN ('ACTIVE', 'DRAINING', 'INACTIVE')),
            last_seen_at  INTEGER,
            token_hash    TEXT
        ) WITHOUT ROWID""",
        """CREATE INDEX agents_token_hash ON agents (token_hash)
            WHERE token_hash IS NOT NULL""",
        # One row per (PENDING item, agent whose id or labels its targeting matches),
        # in claim order per agent: a claim reads its own rows, never other agents' work.
        """CREATE TABLE work_targets (
            agent_id     TEXT    NOT NULL,
            neg_priority INTEGER NOT NULL,
            created_at   INTEGER NOT NULL,
            work_id      TEXT    NOT NULL,
            PRIMARY KEY (agent_id, neg_priority, created_at, work_id)
        ) WITHOUT ROWID""",
        """CREATE INDEX work_targets_item ON work_targets (work_id)""",
    ),
    # 2: completion callbacks. One row per log record whose callback delivery is
    # pending (done and abandoned deliveries have none): when the next attempt is
    # due. Records already in the log when this runs get none (never called back).
    (
        """CREATE TABLE work_callbacks (
            work_id     TEXT    NOT NULL PRIMARY KEY,
            finished_at INTEGER NOT NULL,
            next_at     INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE INDEX work_callbacks_due ON work_callbacks (finished_at, work_id)""",
    ),
    # 3: callbacks_due takes due deliveries by (next attempt, finished_at, id), read in
    # that order from the index; by (finished_at, id) it tested every pending delivery
    # (all of them in backoff while a receiver is down) on every pass.
    (
        """DROP INDEX work_callbacks_due""",
        """CREATE INDEX work_callbacks_next ON work_callbacks (next_at, finished_at, work_id)""",
    ),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this code writes and reads."""


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file; 0 when it was never migrated."""
    if not _table_exists(conn, "schema_version"):
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the SQLite database has schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this workqueue knows: upgrade workqueue"
        )


def check_version(conn: sqlite3.Connection) -> int:
    """Refuse a file that is not at exactly ``SCHEMA_VERSION``."""
    version = current_version(conn)
    _refuse_newer(version)
    if version < SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the SQLite database is at schema version {version}, this workqueue needs "
            f"{SCHEMA_VERSION}: run `workqueue migrate`"
        )
    return version


def apply_migrations(conn: sqlite3.Connection) -> int:
    """Bring the file to ``SCHEMA_VERSION`` (a no-op when it is there); returns the version.

    ``conn`` must be in autocommit mode (``isolation_level=None``): the whole upgrade
    runs in one ``BEGIN IMMEDIATE`` transaction, so two processes migrating at once
    apply each step once.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER NOT NULL PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        version = current_version(conn)
        _refuse_newer(version)
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at)"
                " VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (number,),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION
