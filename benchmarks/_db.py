"""A fresh database for one benchmark run, and schema helpers inside it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def with_database(dsn: str, dbname: str) -> str:
    """The same DSN pointing at another database."""
    return make_conninfo(dsn, dbname=dbname)


def with_search_path(dsn: str, schema: str) -> str:
    """The same DSN with ``search_path`` set to ``schema`` for every connection."""
    options = conninfo_to_dict(dsn).get("options") or ""
    return make_conninfo(dsn, options=f"{options} -c search_path={schema}".strip())


@asynccontextmanager
async def fresh_database(dsn: str, keep: bool = False) -> AsyncIterator[str]:
    """Create ``wq_bench_<pid>`` on the server of ``dsn``; yield its DSN; drop it afterwards."""
    name = f"wq_bench_{os.getpid()}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(dsn, name)
    finally:
        if not keep:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
                await admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


async def create_schema(dsn: str, schema: str) -> None:
    """Create an empty schema (dropping any leftover of the same name)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a schema and everything in it."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


async def scalar(dsn: str, query: str) -> int:
    """Run a one-value query (e.g. a count) and return its integer result."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query)
        row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0


async def vacuum_analyze(dsn: str) -> None:
    """VACUUM ANALYZE the database, so every system starts from fresh statistics."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("VACUUM ANALYZE")
