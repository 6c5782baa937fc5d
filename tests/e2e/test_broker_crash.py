"""Crash safety: kill -9 the broker under a claim/complete load, restart it, lose nothing.

Several agent clients claim and complete work over HTTP while the broker
process is killed with SIGKILL twice and restarted on the same database and
port. Clients treat connection errors as transient and retry; a completion
whose answer was lost is repeated with the same claim token (idempotent). A
claim whose answer was lost leaves the item CLAIMED by an agent that does not
know it: its short lease expires and the broker's sweep returns it to the queue.
At the end every item has exactly one SUCCEEDED record in the execution log and
exactly one SUCCEEDED event, and the queue is empty.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from broker_support import BrokerProcess, database_url

from workqueue_core.domain.errors import LeaseLost, StoreUnavailable, WorkqueueError
from workqueue_core.domain.models import (
    LogQuery,
    SubmitRequest,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_http.client import BrokerClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ITEMS = 150
CLIENTS = 4
KILL_AFTER = (ITEMS // 4, ITEMS // 2)  # completions seen before each kill -9
TRANSIENT = (httpx.TransportError, StoreUnavailable, OSError)


def is_transient(error: BaseException) -> bool:
    """Connection-level trouble (the broker is down or restarting), not a refusal."""
    if isinstance(error, TRANSIENT):
        return True
    status = getattr(error, "status_code", None) or getattr(error, "status", None)
    return status in (502, 503, 504)


class Load:
    """Shared progress of the clients."""

    def __init__(self) -> None:
        self.completions: list[uuid.UUID] = []
        self.lease_lost = 0
        self.transient = 0
        self.stop = False


async def agent_loop(url: str, token: str, agent_id: uuid.UUID, work_type: str, load: Load) -> None:
    async with BrokerClient(url, token, timeout=5.0, retries=1) as client:
        while not load.stop:
            try:
                claimed = await client.claim_next(agent_id, [work_type], limit=4, wait=0.5)
            except Exception as error:
                if not is_transient(error):
                    raise
                load.transient += 1
                await anyio.sleep(0.1)
                continue
            for item in claimed:
                await complete_until_answered(client, item, agent_id, load)


async def complete_until_answered(
    client: BrokerClient, item: WorkItem, agent_id: uuid.UUID, load: Load
) -> None:
    """Complete with the same token until the broker answers (idempotent on retry)."""
    while True:
        try:
            await client.complete(item.token, agent_id, result=f"done {item.id}")
        except LeaseLost:
            load.lease_lost += 1  # swept while we were cut off; someone else will run it
            return
        except Exception as error:
            if not is_transient(error):
                raise
            load.transient += 1
            await anyio.sleep(0.1)
            continue
        load.completions.append(item.id)
        return


async def crash_run(broker: BrokerProcess) -> None:
    work_type = f"crash-{uuid.uuid4().hex[:8]}"
    policy = RetryPolicy(max_retries=50, base_delay=timedelta(0))
    async with BrokerClient(broker.url, broker.admin_token) as admin:
        agents = [
            await admin.register_agent(f"crash-agent-{i}-{work_type}", labels={"pool": "crash"})
            for i in range(CLIENTS)
        ]
        submitted = set()
        for n in range(ITEMS):
            result = await admin.submit(
                SubmitRequest(
                    work_type=work_type,
                    spec=f"item {n}",
                    targeting=Targeting.labels("pool=crash"),
                    retry_policy=policy,
                    claim_timeout=timedelta(seconds=2),
                )
            )
            submitted.add(result.item.id)

    load = Load()
    async with anyio.create_task_group() as group:
        for issued in agents:
            group.start_soon(agent_loop, broker.url, issued.token, issued.agent.id, work_type, load)
        with anyio.fail_after(240):
            for threshold in KILL_AFTER:
                while len(load.completions) < threshold:
                    await anyio.sleep(0.05)
                broker.kill()
                await anyio.sleep(0.3)  # clients see connection errors meanwhile
                await anyio.to_thread.run_sync(broker.start)
            async with BrokerClient(broker.url, broker.admin_token) as admin:
                while True:
                    done = await admin.list_log(LogQuery(work_type=work_type, limit=1000))
                    if len(done) >= ITEMS:
                        break
                    await anyio.sleep(0.2)
        load.stop = True

    async with BrokerClient(broker.url, broker.admin_token) as admin:
        records = await admin.list_log(LogQuery(work_type=work_type, limit=1000))
        assert len(records) == ITEMS
        assert {r.id for r in records} == submitted  # nothing lost, nothing invented
        assert all(r.status is WorkStatus.SUCCEEDED for r in records)
        assert await admin.list_work(WorkQuery(work_type=work_type, limit=1000)) == []
        succeeded: Counter[uuid.UUID] = Counter()
        for work_id in submitted:
            for event in await admin.events(work_id):
                if event.to_status is WorkStatus.SUCCEEDED:
                    succeeded[work_id] += 1
        assert set(succeeded.values()) == {1}  # completed exactly once each
        assert len(succeeded) == ITEMS
    assert broker.starts == 1 + len(KILL_AFTER)
    assert load.transient > 0  # the clients did see the broker die
    print(f"transient errors {load.transient}, lease lost {load.lease_lost}")
    # Every completion a client saw acknowledged is in the log.
    assert set(load.completions) <= submitted


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_kill_9_under_load_loses_nothing(kind: str, tmp_path: Path) -> None:
    with database_url(kind, tmp_path) as url:
        broker = BrokerProcess(url, tmp_path, extra_env={"WORKQUEUE_SWEEP_INTERVAL": "250ms"})
        try:
            await anyio.to_thread.run_sync(broker.start)
            await crash_run(broker)
            assert broker.stop() == 0, broker.log_text()[-2000:]
        except WorkqueueError:
            print(broker.log_text()[-5000:])
            raise
        finally:
            broker.close()
