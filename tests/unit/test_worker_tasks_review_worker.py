"""Review of shared handler tasks (``HandlerTasks.start_many``) through a Worker: items
of one claim must not affect each other, as if each ran in a task of its own."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from test_worker_support import fast_options, memory_harness, running

from workqueue_core.domain.models import WorkStatus
from workqueue_core.executor.worker import Job, Worker

pytestmark = pytest.mark.anyio


async def test_a_handler_cancelling_its_own_task_does_not_interrupt_the_next_item_claimed() -> None:
    harness = memory_harness()
    worker = Worker(harness.source(), name="worker-1", options=fast_options(batch=4))

    @worker.handler("self-cancel")
    async def self_cancel(job: Job) -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # returns without awaiting: in a task of its own, only it would end
        return "done"

    @worker.handler("slow")
    async def slow(job: Job) -> str:
        await anyio.sleep(0.01)
        return "slow done"

    first = await harness.submit("self-cancel")
    second = await harness.submit("slow")  # claimed in the same batch, after the first
    async with running(worker):
        records = await harness.wait_ended(first, second)

    assert [(r.status, r.result, r.item.executions) for r in records] == [
        (WorkStatus.SUCCEEDED, "done", 1),
        (WorkStatus.SUCCEEDED, "slow done", 1),
    ]
    for work_id in (first, second):
        # ran once, never interrupted (released as if the worker were being cancelled)
        assert [e.detail for e in await harness.events(work_id)] == [
            "submitted",
            "claimed",
            "succeeded",
        ]
    await harness.check_replay(second)
