"""PostgreSQL for tests: the server's DSN, throwaway schemas and fresh stores.

Tests that need PostgreSQL fail (never skip) with a clear message when no server
answers at ``PG_DSN`` (``WORKQUEUE_TEST_PG``; start the local one with
``bash scripts/ensure-postgres``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from workqueue_postgres import PostgresStore

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
