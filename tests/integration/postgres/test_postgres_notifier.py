"""LISTEN/NOTIFY wake-ups: a submit through one store wakes a waiter on another."""

from __future__ import annotations

import anyio
import pytest

from pg_support import PG_DSN, fresh_postgres_store
from workqueue_core.domain.models import Agent, Targeting, WorkItem, WorkStatus
from workqueue_core.testing.clock import EPOCH, SequentialIds
from workqueue_postgres import PostgresStore

pytestmark = pytest.mark.anyio


def _item(work_id: object, status: WorkStatus = WorkStatus.PENDING) -> WorkItem:
    return WorkItem(
        id=work_id,  # type: ignore[arg-type]
        work_type="t",
        spec="{}",
        targeting=Targeting.everyone(),
        created_at=EPOCH,
        status=status,
    )


async def test_a_submit_on_another_store_wakes_a_waiter() -> None:
    new_id = SequentialIds()
    async with fresh_postgres_store() as waiter_store:
        other = await PostgresStore.open(PG_DSN, schema=waiter_store.schema)
        try:
            await waiter_store.register_agent(Agent(id=new_id(), name="a", registered_at=EPOCH))
            await anyio.sleep(0.2)  # let the registration's own wake-up arrive first
            mark = waiter_store.notifier.mark()
            woken: list[bool] = []

            async def wait() -> None:
                woken.append(await waiter_store.notifier.wait(30.0, since=mark))

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.1)
                await other.submit(_item(new_id()), "test", EPOCH)
            assert woken == [True]
            assert waiter_store.notifier.mark() > mark
        finally:
            await other.close()


async def test_a_wake_up_between_mark_and_wait_is_not_lost() -> None:
    new_id = SequentialIds()
    async with fresh_postgres_store() as store:
        await anyio.sleep(0.2)
        mark = store.notifier.mark()
        await store.submit(_item(new_id()), "test", EPOCH)
        with anyio.fail_after(30):
            while store.notifier.mark() == mark:  # the NOTIFY travels through the server
                await anyio.sleep(0.01)
        assert await store.notifier.wait(30.0, since=mark) is True


async def test_a_held_item_wakes_nobody() -> None:
    new_id = SequentialIds()
    async with fresh_postgres_store() as store:
        await anyio.sleep(0.2)
        mark = store.notifier.mark()
        await store.submit(_item(new_id(), WorkStatus.HELD), "test", EPOCH)
        assert await store.notifier.wait(0.5, since=mark) is False
