"""The PostgreSQL store against the conformance suite, each example on an empty store.

Same profile as the in-memory store (200 examples × 50 steps), on a real server.
The schema is migrated once for the class and emptied before every example
(``pg_support.ReusableSchema.reset``: every table, identities restarted), so each
example starts from a store exactly as fresh as a new schema, without paying for
a migration and a ``DROP SCHEMA`` each time.

The schema lives in a database of the class's own with ``synchronous_commit = off``
(``pg_support.unflushed_database``): the suite checks what the store returns and
what other sessions see, which that setting does not change, and each write no
longer waits for a WAL flush (most of this test's time before). Durability is
tested on the shared database (``test_postgres_restart.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager

import pytest

from pg_support import ReusableSchema, reusable_schema, unflushed_database
from workqueue_core.ports import Store
from workqueue_core.testing import conformance_test_case
from workqueue_postgres import PostgresStore

_schema: list[tuple[str, ReusableSchema]] = []
"""The class's DSN and schema while its tests run (set by ``setUpClass``)."""


@asynccontextmanager
async def fresh_store() -> AsyncIterator[Store]:
    ((dsn, schema),) = _schema
    schema.reset()
    # A fixed-size pool: psycopg_pool draws from the global ``random`` when it opens a
    # connection, which Hypothesis takes for a strategy using ``random`` mid-draw.
    store = await PostgresStore.open(
        dsn,
        schema=schema.name,
        migrate=False,
        random_source=lambda: 0.0,
        min_size=4,
        max_size=4,
    )
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.slow
class TestPostgresStoreConformance(conformance_test_case(fresh_store)):  # type: ignore[misc]
    _stack: ExitStack

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls._stack = ExitStack()
        dsn = cls._stack.enter_context(unflushed_database())
        _schema.append((dsn, cls._stack.enter_context(reusable_schema(dsn))))
        cls._stack.callback(_schema.clear)

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stack.close()
        super().tearDownClass()
