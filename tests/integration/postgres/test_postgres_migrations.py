"""Migrations: idempotent, safe when run at once, refusing schemas they do not know."""

from __future__ import annotations

import uuid

import anyio
import pytest
from psycopg import sql

from pg_support import PG_DSN, connect, temporary_schema
from workqueue_core.domain.errors import SchemaMismatch
from workqueue_postgres import LATEST_VERSION, PostgresStore, migrate

pytestmark = pytest.mark.anyio


async def _versions(schema: str) -> list[int]:
    async with await connect() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}.schema_version ORDER BY version").format(
                sql.Identifier(schema)
            )
        )
        return [row[0] for row in await cur.fetchall()]


async def test_migrating_twice_is_a_no_op() -> None:
    async with temporary_schema() as schema:
        assert await migrate(PG_DSN, schema) == LATEST_VERSION
        assert await migrate(PG_DSN, schema) == LATEST_VERSION
        assert await _versions(schema) == list(range(1, LATEST_VERSION + 1))


async def test_concurrent_migrations_take_turns() -> None:
    async with temporary_schema() as schema:
        results: list[int] = []

        async def one() -> None:
            results.append(await migrate(PG_DSN, schema))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
        assert results == [LATEST_VERSION] * 4
        assert await _versions(schema) == list(range(1, LATEST_VERSION + 1))


async def test_a_newer_schema_is_refused() -> None:
    async with temporary_schema() as schema:
        await migrate(PG_DSN, schema)
        async with await connect() as conn:
            await conn.execute(
                sql.SQL("INSERT INTO {}.schema_version (version) VALUES (%s)").format(
                    sql.Identifier(schema)
                ),
                (LATEST_VERSION + 1,),
            )
        with pytest.raises(SchemaMismatch, match="newer"):
            await migrate(PG_DSN, schema)
        with pytest.raises(SchemaMismatch, match="newer"):
            await PostgresStore.open(PG_DSN, schema=schema, migrate=False)


async def test_opening_without_migrating_refuses_an_empty_schema() -> None:
    async with temporary_schema() as schema:
        with pytest.raises(SchemaMismatch, match="migrate"):
            await PostgresStore.open(PG_DSN, schema=schema, migrate=False)
        await migrate(PG_DSN, schema)
        store = await PostgresStore.open(PG_DSN, schema=schema, migrate=False)
        await store.close()


async def test_check_constraints_back_the_state_machine() -> None:
    async with temporary_schema() as schema:
        await migrate(PG_DSN, schema)
        async with await connect() as conn:
            s = sql.Identifier(schema)
            await conn.execute(
                sql.SQL("INSERT INTO {}.work_targets (key, agent_ids) VALUES ('k', %s)").format(s),
                ([uuid.uuid4()],),
            )
            insert = sql.SQL(
                "INSERT INTO {}.work_queue (id, work_type, spec, target_id, created_at, "
                "max_retries, base_delay_us, multiplier, max_delay_us, jitter, claim_timeout_us, "
                "priority, status, attempt, executions, local_retries) VALUES (gen_random_uuid(), "
                "'t', '', 1, now(), 1, 0, 2, 0, 'none', 1, 0, %s, %s, %s, 0)"
            ).format(s)
            with pytest.raises(Exception, match="check constraint"):
                await conn.execute(insert, ("CLAIMED", 1, 1))  # claimed without holder or lease
            with pytest.raises(Exception, match="check constraint"):
                await conn.execute(insert, ("SUCCEEDED", 0, 0))  # terminal rows live in the log
            with pytest.raises(Exception, match="check constraint"):
                await conn.execute(insert, ("PENDING", 3, 3))  # over the budget
            await conn.execute(insert, ("PENDING", 0, 0))
