"""Faults: an unreachable server or a killed connection is a clear StoreUnavailable."""

from __future__ import annotations

import socket

import pytest

from pg_support import connect, fresh_postgres_store
from workqueue_core.domain.errors import StoreUnavailable
from workqueue_core.domain.models import Agent, Completion, Targeting, WorkItem, WorkStatus
from workqueue_core.testing.clock import EPOCH, SequentialIds
from workqueue_postgres import PostgresStore

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_opening_on_a_port_nobody_listens_on_is_store_unavailable() -> None:
    dsn = f"postgresql://root:s3cret-pw@127.0.0.1:{_free_port()}/test"
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresStore.open(dsn, schema="wq_nowhere", timeout=1.0)
    assert "127.0.0.1" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


async def test_a_killed_connection_fails_the_operation_whole_and_the_pool_recovers() -> None:
    new_id = SequentialIds()
    async with fresh_postgres_store(min_size=1, max_size=1) as store:
        agent = Agent(id=new_id(), name="a", registered_at=EPOCH)
        await store.register_agent(agent)
        item = WorkItem(
            id=new_id(), work_type="t", spec="{}", targeting=Targeting.everyone(), created_at=EPOCH
        )
        await store.submit(item, "test", EPOCH)
        (claimed,) = await store.claim_next(agent.id, EPOCH)

        async with await connect() as admin:
            cur = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = '' AND datname = current_database() "
                "AND pid <> pg_backend_pid() AND query LIKE %s",
                (f"%{store.schema}%",),
            )
            assert any(row[0] for row in await cur.fetchall())

        with pytest.raises(StoreUnavailable, match="unavailable during complete"):
            await store.complete_many([Completion(claimed.token, agent.id)], EPOCH)

        # Nothing half-done: the item is still claimed, with no log record and no extra event.
        still = await store.get(item.id)
        assert still is not None
        assert still.status is WorkStatus.CLAIMED
        assert await store.get_record(item.id) is None
        assert [e.to_status for e in await store.events(item.id)] == [
            WorkStatus.PENDING,
            WorkStatus.CLAIMED,
        ]
        record = await store.complete(claimed.token, agent.id, EPOCH)
        assert record.status is WorkStatus.SUCCEEDED


async def test_the_dsn_password_never_reaches_the_message() -> None:
    dsn = f"postgresql://root:hunter2@127.0.0.1:{_free_port()}/test"
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresStore.open(dsn, schema="wq_nowhere", migrate=False, timeout=1.0)
    assert "hunter2" not in str(caught.value)
