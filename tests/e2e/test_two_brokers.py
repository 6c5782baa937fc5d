"""Two broker processes on one PostgreSQL database, as replicas behind a load balancer.

Eight agent clients are spread over two brokers (four each) and drain work with
short leases while both brokers' maintenance loops run; one broker is killed with
SIGKILL mid-load and restarted. Then:

- exactly once: every item has one SUCCEEDED record and one SUCCEEDED event, none
  is left queued, nothing was invented;
- sweeps: no lease was expired twice (each (item, attempt) has at most one
  sweeper event), however the two brokers' sweeps interleaved;
- callbacks: with both brokers delivering, each record reaches the receiver once,
  and the brokers' delivery counters add up to the deliveries (nobody posted an
  attempt another broker had taken), both brokers having run delivery passes;
- prune: two fresh brokers with a short retention prune the whole log at once, and
  their pruned-record counters add up to the records there were.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from broker_support import BrokerProcess, new_admin_token, postgres_schema_url
from test_broker_callbacks import receiver
from test_broker_crash import Load, agent_loop

from workqueue_core.domain.models import (
    LogQuery,
    SubmitRequest,
    Targeting,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_http.client import BrokerClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ITEMS = 240
CALLBACK_ITEMS = 40
CLIENTS = 8
MAINTENANCE = {
    "WORKQUEUE_SWEEP_INTERVAL": "250ms",
    "WORKQUEUE_CALLBACK_INTERVAL": "100ms",
}


def metric(broker: BrokerProcess, name: str, labels: str = "") -> float:
    """The sum of a counter's samples on ``broker``'s ``/metrics`` (matching ``labels``)."""
    text = httpx.get(f"{broker.url}/metrics", timeout=5.0).raise_for_status().text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
        if match and labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


def brokers(url: str, workdir: Path, token: str, env: dict[str, str]) -> Iterator[BrokerProcess]:
    """Two broker processes on ``url`` sharing the admin token (started by the caller)."""
    for name in ("a", "b"):
        yield BrokerProcess(url, workdir / name, admin_token=token, extra_env=dict(env))


async def submit_all(admin: BrokerClient, requests: list[SubmitRequest]) -> set[uuid.UUID]:
    ids: set[uuid.UUID] = set()
    for start in range(0, len(requests), 100):
        for result in await admin.submit_many(requests[start : start + 100]):
            assert not isinstance(result, Exception), result
            ids.add(result.item.id)
    return ids


async def drain(
    pair: list[BrokerProcess],
    agents: list[tuple[uuid.UUID, str]],
    work_type: str,
    count: int,
    *,
    kill: BrokerProcess | None = None,
) -> Load:
    """Agents (spread over ``pair``) drain ``work_type`` until ``count`` records are logged;
    with ``kill``, that broker is killed with SIGKILL a third of the way and restarted."""
    load = Load()
    async with anyio.create_task_group() as group:
        for n, (agent_id, token) in enumerate(agents):
            broker = pair[n % len(pair)]
            group.start_soon(agent_loop, broker.url, token, agent_id, work_type, load)
        with anyio.fail_after(60):
            if kill is not None:
                while len(load.completions) < count // 3:
                    await anyio.sleep(0.05)
                kill.kill()
                await anyio.sleep(0.3)  # its clients see connection errors meanwhile
                await anyio.to_thread.run_sync(kill.start)
            async with BrokerClient(pair[0].url, pair[0].admin_token) as admin:
                while len(await admin.list_log(LogQuery(work_type=work_type, limit=1000))) < count:
                    await anyio.sleep(0.1)
        load.stop = True
    return load


async def test_two_brokers_share_one_database_and_lose_nothing(tmp_path: Path) -> None:
    token = new_admin_token()
    with postgres_schema_url() as url, ExitStack() as stack:
        pair = list(brokers(url, tmp_path, token, MAINTENANCE))
        for broker in pair:
            stack.callback(broker.close)
            await anyio.to_thread.run_sync(broker.start)
        a, b = pair
        work_type = f"two-{uuid.uuid4().hex[:8]}"
        policy = RetryPolicy(max_retries=50, base_delay=timedelta(0))
        async with BrokerClient(a.url, token) as admin:
            issued = [
                await admin.register_agent(f"agent-{i}", labels={"pool": "two"})
                for i in range(CLIENTS)
            ]
            agents = [(i.agent.id, i.token) for i in issued]
            submitted = await submit_all(
                admin,
                [
                    SubmitRequest(
                        work_type=work_type,
                        spec=f"item {n}",
                        targeting=Targeting.labels("pool=two"),
                        retry_policy=policy,
                        claim_timeout=timedelta(seconds=2),
                    )
                    for n in range(ITEMS)
                ],
            )

        load = await drain(pair, agents, work_type, ITEMS, kill=b)

        async with BrokerClient(b.url, token) as admin:  # the restarted one answers too
            records = await admin.list_log(LogQuery(work_type=work_type, limit=1000))
            assert {r.id for r in records} == submitted and len(records) == ITEMS
            assert all(r.status is WorkStatus.SUCCEEDED for r in records)
            assert await admin.list_work(WorkQuery(work_type=work_type, limit=10)) == []
            succeeded: Counter[uuid.UUID] = Counter()
            expired: Counter[tuple[uuid.UUID, int]] = Counter()
            for work_id in submitted:
                for event in await admin.events(work_id):
                    if event.to_status is WorkStatus.SUCCEEDED:
                        succeeded[work_id] += 1
                    if event.actor == "sweeper":
                        expired[(work_id, event.attempt)] += 1
            assert len(succeeded) == ITEMS and set(succeeded.values()) == {1}
            assert set(expired.values()) <= {1}, "a lease was expired twice"
        assert b.starts == 2 and load.transient > 0  # b died and its clients noticed
        assert set(load.completions) <= submitted

        # Callbacks, delivered by both brokers' loops, each once.
        callback_type = f"{work_type}-cb"
        with receiver() as (base, received):
            async with BrokerClient(a.url, token) as admin:
                hooked = await submit_all(
                    admin,
                    [
                        SubmitRequest(
                            work_type=callback_type,
                            spec="{}",
                            targeting=Targeting.labels("pool=two"),
                            callback_url=f"{base}/done",
                        )
                        for _ in range(CALLBACK_ITEMS)
                    ],
                )
            await drain(pair, agents, callback_type, CALLBACK_ITEMS)
            with anyio.fail_after(30):
                while len(received) < CALLBACK_ITEMS:
                    await anyio.sleep(0.05)
            await anyio.sleep(0.5)  # several more passes of both loops: nothing twice
            delivered = Counter(uuid.UUID(r["headers"]["X-Workqueue-Work-Id"]) for r in received)
        assert set(delivered) == hooked and set(delivered.values()) == {1}
        counted = [
            metric(x, "workqueue_callback_attempts_total", 'outcome="delivered"') for x in pair
        ]
        assert sum(counted) == CALLBACK_ITEMS
        for broker in pair:
            passes = metric(broker, "workqueue_maintenance_passes_total", 'task="callbacks"')
            assert passes > 0, f"{broker.url} ran no callback pass"
        for broker in pair:
            assert broker.stop() == 0, broker.log_text()[-2000:]

        # Prune: two fresh brokers with a one-second retention race for the same log.
        prune_env = {**MAINTENANCE, "WORKQUEUE_RETENTION": "1s", "WORKQUEUE_PRUNE_INTERVAL": "1s"}
        await anyio.sleep(1.1)  # every record is older than the retention now
        pruners = list(brokers(url, tmp_path / "prune", token, prune_env))
        for broker in pruners:
            stack.callback(broker.close)
        async with anyio.create_task_group() as group:
            for broker in pruners:
                group.start_soon(anyio.to_thread.run_sync, broker.start)
        total = ITEMS + CALLBACK_ITEMS
        with anyio.fail_after(30):
            while sum(metric(x, "workqueue_maintenance_pruned_records_total") for x in pruners) < (
                total
            ):
                await anyio.sleep(0.1)
        await anyio.sleep(1.5)  # another pass of each: nothing more to prune
        assert sum(metric(x, "workqueue_maintenance_pruned_records_total") for x in pruners) == (
            total
        )
        async with BrokerClient(pruners[0].url, token) as admin:
            assert await admin.list_log(LogQuery(limit=10)) == []
        for broker in pruners:
            assert broker.stop() == 0, broker.log_text()[-2000:]
