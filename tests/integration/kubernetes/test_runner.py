"""The ``KubernetesRunner`` against the fake API server, at the seams the e2e tests cannot
time: an informer re-list racing the Work's create.

No Work controller runs here: the tests write the Work's status themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
import pytest
import yaml

from support.kube import FakeKube
from support.kube.works import job_work
from workqueue_core.domain.models import Failure, FailureClass, Targeting, WorkItem, WorkStatus
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.executor.handlers import Job, Outcome, Success
from workqueue_core.work.claim_work import work_name
from workqueue_core.work.registry import WorkTypes
from workqueue_kubernetes import WORKS, Backoff, KubernetesClusterClient
from workqueue_kubernetes.job import JobWorkType
from workqueue_kubernetes.port import ObjectList, ResourceKind
from workqueue_kubernetes.runner import KubernetesRunner

pytestmark = pytest.mark.anyio
NS = "default"
AGENT = UUID("11111111-2222-4333-8444-555555555555")
WORK_ID = UUID("01a23d74-fefb-7abd-8e67-20b4658eea90")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FAST = Backoff(initial=0.02, maximum=0.1)


def claimed_item(attempt: int = 1) -> WorkItem:
    return WorkItem(
        id=WORK_ID,
        work_type="job",
        spec=yaml.safe_dump(job_work("submitted")),
        targeting=Targeting.agents(AGENT),
        created_at=T0,
        retry_policy=RetryPolicy(max_retries=3),
        status=WorkStatus.CLAIMED,
        attempt=attempt,
        executions=1,
        claimed_by=AGENT,
        claimed_at=T0,
        lease_expires_at=T0 + timedelta(hours=1),
    )


class GatedLists:
    """The cluster client, except that an armed ``list`` reads the server at once and then
    holds its answer until released: a re-list whose snapshot predates later writes."""

    def __init__(self, inner: KubernetesClusterClient) -> None:
        self._inner = inner
        self.armed = False
        self.entered = anyio.Event()
        self.release = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def list(self, kind: ResourceKind, **options: Any) -> ObjectList:
        listed = await self._inner.list(kind, **options)
        if self.armed:
            self.armed = False
            self.entered.set()
            await self.release.wait()
        return listed


@asynccontextmanager
async def running_runner(client: Any) -> AsyncIterator[KubernetesRunner]:
    runner = KubernetesRunner(
        client,
        WorkTypes([JobWorkType()]),
        agent_id=AGENT,
        namespace=NS,
        finished_ttl=3600,
        backoff=FAST,
    )
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await tg.start(runner.run_informer)
        yield runner
        tg.cancel_scope.cancel()


async def finish(cluster: KubernetesClusterClient, name: str, status: Mapping[str, Any]) -> None:
    await cluster.patch_status(WORKS, name, {"status": status}, namespace=NS)


async def test_a_relist_whose_snapshot_predates_the_create_is_no_deletion(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    gated = GatedLists(cluster)
    outcomes: list[Outcome] = []
    name = work_name(WORK_ID, 1)
    async with running_runner(gated) as runner, anyio.create_task_group() as tg:
        gated.armed = True
        fake_kube.fail_next(1, 410, verb="watch")  # 410 (in the open watch or the next):
        fake_kube.expire_watches()  # the informer lists again ...
        with anyio.fail_after(10):
            await gated.entered.wait()  # ... and that list has read the server: no Work yet

        async def run() -> None:
            outcomes.append(await runner.run(Job(claimed_item())))

        tg.start_soon(run)
        with anyio.fail_after(10):
            while runner.informer.get(f"{NS}/{name}") is None:  # created and remembered
                await anyio.sleep(0.01)
        gated.release.set()  # the re-list's older snapshot replaces the cache
        with anyio.fail_after(10):
            while runner.informer.list_count < 2:
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)
        assert outcomes == []  # the Work exists: the attempt still waits for it
        assert fake_kube.get("works", NS, name) is not None
        await finish(cluster, name, {"phase": "Succeeded", "retries": 0, "result": {"k": "v"}})
        with anyio.fail_after(10):
            while not outcomes:
                await anyio.sleep(0.01)
    assert outcomes == [Success('{"k": "v"}')]


async def test_a_work_deleted_under_the_attempt_is_a_retryable_failure(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    name = work_name(WORK_ID, 1)
    async with running_runner(cluster) as runner, anyio.create_task_group() as tg:
        outcomes: list[Outcome] = []

        async def run() -> None:
            outcomes.append(await runner.run(Job(claimed_item())))

        tg.start_soon(run)
        with anyio.fail_after(10):
            while runner.informer.get(f"{NS}/{name}") is None:
                await anyio.sleep(0.01)
        await cluster.delete(WORKS, name, namespace=NS)
    [outcome] = outcomes
    assert isinstance(outcome, Failure)
    assert outcome.reason == "WorkDeleted"


@pytest.mark.parametrize("status", [404, 401])
async def test_a_create_refused_for_a_reason_a_retry_does_not_change_fails_the_attempt(
    cluster: KubernetesClusterClient, fake_kube: FakeKube, status: int
) -> None:
    """404 (the namespace does not exist), 401 and other client errors are not retried
    forever: the attempt would hold its claim, heartbeated, and never report."""
    async with running_runner(cluster) as runner:
        fake_kube.fail_next(1000, status, method="POST", path="/works")
        with anyio.fail_after(10):
            outcome = await runner.run(Job(claimed_item()))
    assert isinstance(outcome, Failure)
    assert (outcome.failure_class, outcome.reason) == (FailureClass.RETRYABLE, "WorkNotCreated")
    assert fake_kube.get("works", NS, work_name(WORK_ID, 1)) is None
