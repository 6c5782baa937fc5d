"""PostgreSQL for tests: the server's DSN, throwaway schemas and fresh stores.

Tests that need PostgreSQL fail (never skip) with a clear message when no server
answers at ``PG_DSN`` (``WORKQUEUE_TEST_PG``; start the local one with
``bash scripts/ensure-postgres``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from workqueue_postgres import PostgresStore, migrate

PG_DSN = os.environ.get("WORKQUEUE_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def no_server_message(error: BaseException) -> str:
    """Why PostgreSQL tests cannot run, and what to do about it."""
    return (
        f"no PostgreSQL answers at {PG_DSN} ({type(error).__name__}: {error}). "
        "Start one with `bash scripts/ensure-postgres` or set WORKQUEUE_TEST_PG."
    )


async def connect(**kwargs: Any) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection to ``PG_DSN``; a clear AssertionError when none answers."""
    try:
        return await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True, **kwargs)
    except psycopg.OperationalError as error:
        raise AssertionError(no_server_message(error)) from error


async def drop_schema(name: str) -> None:
    """Drop ``name`` and everything in it, if it exists."""
    async with await connect() as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@asynccontextmanager
async def temporary_schema() -> AsyncIterator[str]:
    """A unique, not yet existing schema name; the schema is dropped (CASCADE) afterwards."""
    name = f"wq_test_{uuid.uuid4().hex[:16]}"
    async with await connect():
        pass  # fail early and clearly when there is no server
    try:
        yield name
    finally:
        await drop_schema(name)


@asynccontextmanager
async def fresh_postgres_store(**kw: Any) -> AsyncIterator[PostgresStore]:
    """A ``PostgresStore`` on a new, migrated schema of its own, closed and dropped after.

    Keyword arguments go to ``PostgresStore.open`` (``schema`` is chosen here).
    """
    async with temporary_schema() as schema:
        store = await PostgresStore.open(PG_DSN, schema=schema, **kw)
        try:
            yield store
        finally:
            await store.close()


RESET_ORDER = (
    "target_agents",
    "work_queue",
    "work_execution_log",
    "work_events",
    "idempotency_keys",
    "agents",
    "work_targets",
)
"""Every store table but ``schema_version``, children before the tables they reference."""

IDENTITIES = (("work_events", "seq"), ("work_targets", "id"))


def reset_statement(schema: str) -> bytes:
    """One round trip that empties a migrated schema and restarts its identity columns.

    ``DELETE`` rather than ``TRUNCATE``: on the few rows a test leaves, deleting costs
    about a millisecond, while ``TRUNCATE`` swaps the files of every table and index
    (some 15 ms, far more on a busy server).
    """
    s = sql.Identifier(schema)
    parts = [sql.SQL("DELETE FROM {}.{}").format(s, sql.Identifier(t)) for t in RESET_ORDER]
    parts += [
        sql.SQL("ALTER TABLE {}.{} ALTER COLUMN {} RESTART").format(
            s, sql.Identifier(table), sql.Identifier(column)
        )
        for table, column in IDENTITIES
    ]
    return sql.SQL("; ").join(parts).as_bytes(None)


class ReusableSchema:
    """One migrated schema for a whole test session, emptied before each use.

    ``reset()`` empties it (one statement on a connection kept open for the purpose)
    so each use starts from a fresh store, without paying for a migration each time.
    """

    def __init__(self, name: str, conn: psycopg.Connection[Any]) -> None:
        self.name = name
        self._conn = conn
        self._reset = reset_statement(name)

    def reset(self) -> None:
        """Empty every table and restart identities; as if freshly migrated."""
        self._conn.execute(self._reset)


@contextmanager
def reusable_schema(dsn: str = PG_DSN) -> Iterator[ReusableSchema]:
    """A migrated schema of its own for the session (on ``dsn``); dropped afterwards.

    Fails when the schema has a table the reset does not know, so a new migration
    cannot leave rows behind from one use to the next.
    """
    name = f"wq_test_{uuid.uuid4().hex[:16]}"
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as error:
        raise AssertionError(no_server_message(error)) from error
    with conn:
        try:
            asyncio.run(migrate(dsn, name))
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (name,)
                )
            }
            unknown = tables - {*RESET_ORDER, "schema_version"}
            assert not unknown, f"pg_support.RESET_ORDER misses tables {sorted(unknown)}"
            yield ReusableSchema(name, conn)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@contextmanager
def unflushed_database() -> Iterator[str]:
    """The DSN of a new database of its own whose commits do not wait for the WAL flush.

    ``synchronous_commit = off`` is set on this database only (never on the server or
    on ``PG_DSN``'s database, which other tests share): a commit returns before its WAL
    reaches the disk. What other sessions see, and when, is unchanged: a transaction's
    effects are visible to everyone from its commit either way, locks and isolation
    are the same, and the server stays consistent; only the last few hundred
    milliseconds of commits could be lost if the *server* crashed. For tests that check
    semantics (the conformance suite), not durability, this saves an ``fdatasync`` per
    write transaction (about 3 ms against 0.4 ms on the CI machine). Durability across
    a server restart is tested on ``PG_DSN`` (``test_postgres_restart.py``).

    The database is made from ``template0`` (never connected to, so no "being accessed
    by other users" clash with concurrent runs) and dropped afterwards.
    """
    name = f"wq_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True)
    except psycopg.OperationalError as error:
        raise AssertionError(no_server_message(error)) from error
    database = sql.Identifier(name)
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(database))
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(database)
            )
        yield make_conninfo(PG_DSN, dbname=name)
    finally:
        # A connection of its own: one kept from the start would be gone if the
        # server restarted meanwhile (other tests restart it).
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
