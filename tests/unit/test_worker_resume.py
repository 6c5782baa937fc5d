"""``Worker.resume``: claims the agent already holds run as if just claimed (restart)."""

from __future__ import annotations

import anyio
import pytest
from test_worker_support import fast_options, memory_harness, running, until

from workqueue_core.domain.models import WorkStatus
from workqueue_core.executor.worker import Job, Worker

pytestmark = pytest.mark.anyio


async def test_a_resumed_claim_runs_once_and_is_reported_with_its_token() -> None:
    harness = memory_harness()
    work_id = await harness.submit("echo", "hello")
    issued = await harness.service.register_agent("restarted")
    agent_id = issued.agent.id
    [item] = await harness.service.claim_next(agent_id, ["echo"], 1)
    seen: list[tuple[int, int]] = []
    worker = Worker(harness.source(), name="restarted", agent_id=agent_id, options=fast_options())

    @worker.handler("echo")
    async def echo(job: Job) -> str:
        seen.append((job.attempt, job.local_retries))
        job.report_local_retries(1)
        return "resumed"

    worker.resume([item])
    async with running(worker):
        [record] = await harness.wait_ended(work_id)
    assert record.status is WorkStatus.SUCCEEDED
    assert record.result == "resumed"
    assert seen == [(1, 0)]  # the same claim: no second claim, run once
    assert (record.item.attempt, record.item.executions, record.item.local_retries) == (1, 2, 1)
    assert worker.stats.succeeded == 1
    await harness.check_replay(work_id)


async def test_a_resumed_claim_that_was_lost_reports_nothing() -> None:
    harness = memory_harness()
    work_id = await harness.submit("echo", "hello")
    issued = await harness.service.register_agent("restarted")
    agent_id = issued.agent.id
    [item] = await harness.service.claim_next(agent_id, ["echo"], 1)
    await harness.service.cancel(work_id)
    worker = Worker(harness.source(), name="restarted", agent_id=agent_id, options=fast_options())
    started: list[int] = []

    @worker.handler("echo")
    async def echo(job: Job) -> str:
        started.append(job.attempt)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    worker.resume([item])
    async with running(worker):
        await until(lambda: worker.stats.lease_lost == 1)
    assert started == [1]
    record = await harness.record(work_id)
    assert record.status is WorkStatus.CANCELED
    assert worker.stats.succeeded == worker.stats.failed == worker.stats.released == 0


async def test_resume_after_run_is_refused() -> None:
    harness = memory_harness()
    worker = Worker(harness.source(), name="w", options=fast_options())
    worker.handler("echo")(_noop)
    async with running(worker):
        with pytest.raises(RuntimeError):
            worker.resume([])


async def _noop(job: Job) -> None:
    return None
