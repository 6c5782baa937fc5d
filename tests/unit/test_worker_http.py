"""The same worker against a real broker over HTTP, through the HTTP ``BrokerClient``.

The agent is registered with the admin token; the worker then runs with the
agent's own token (an agent token acts only as its own agent) and ``agent_id``.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import anyio
from test_worker_support import HANG_GUARD, until

from integration.http.support import ADMIN_TOKEN, Broker, running_broker, server_errors
from workqueue_core.domain.models import ExecutionRecord, SubmitRequest, Targeting, WorkStatus
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.executor.worker import Job, RetryableError, Worker, WorkerOptions
from workqueue_core.ports.agent import WorkSource
from workqueue_http.client import BrokerClient


def the_client_is_a_work_source(client: BrokerClient) -> WorkSource:
    """Checked by mypy: the HTTP client satisfies the worker's port."""
    return client


async def scenario(broker: Broker) -> None:
    async with BrokerClient(broker.url, ADMIN_TOKEN, retries=0) as admin:
        issued = await admin.register_agent("http-worker", {"pool": "http"})

        async def submit(spec: str) -> UUID:
            result = await admin.submit(
                SubmitRequest(
                    work_type="echo",
                    spec=spec,
                    targeting=Targeting.labels("pool=http"),
                    retry_policy=RetryPolicy(max_retries=2, base_delay=timedelta(0)),
                )
            )
            return result.item.id

        ids = [await submit(str(n)) for n in range(6)]
        doomed = await submit("cancel me")
        started = anyio.Event()
        cancelled = anyio.Event()

        async with BrokerClient(broker.url, issued.token) as client:
            worker = Worker(
                the_client_is_a_work_source(client),
                name="http-worker",
                agent_id=issued.agent.id,
                options=WorkerOptions(
                    concurrency=3, batch=3, claim_wait=0.2, heartbeat_interval=0.05
                ),
            )

            @worker.handler("echo")
            async def echo(job: Job) -> str:
                if job.spec == "cancel me":
                    started.set()
                    try:
                        await anyio.sleep_forever()
                    finally:
                        cancelled.set()
                if job.spec == "0" and job.attempt == 1:
                    raise RetryableError("Flaky", "first attempt")
                await anyio.sleep(0.1)  # long enough for a heartbeat or two
                return f"echo {job.spec}"

            async def all_ended() -> bool:
                states = [await admin.get(work_id) for work_id in ids]
                return all(isinstance(s, ExecutionRecord) for s in states)

            with anyio.fail_after(HANG_GUARD):
                async with anyio.create_task_group() as tg:
                    await tg.start(worker.run)
                    await started.wait()
                    await admin.cancel(doomed, reason="not needed")
                    await cancelled.wait()
                    await until(all_ended)
                    worker.stop()

        records = [await admin.get(work_id) for work_id in ids]
        assert all(isinstance(r, ExecutionRecord) for r in records)
        assert [r.status for r in records] == [WorkStatus.SUCCEEDED] * 6
        assert [r.result for r in records if isinstance(r, ExecutionRecord)] == [
            f"echo {n}" for n in range(6)
        ]
        first = records[0]
        assert isinstance(first, ExecutionRecord)
        assert first.item.executions == 2
        cancelled_record = await admin.get(doomed)
        assert isinstance(cancelled_record, ExecutionRecord)
        assert cancelled_record.status is WorkStatus.CANCELED
        assert worker.stats.lease_lost == 1
        assert worker.stats.succeeded == 6


def test_a_worker_runs_against_a_broker_over_http() -> None:
    with running_broker() as broker:
        anyio.run(scenario, broker)
        assert server_errors(broker) == []
