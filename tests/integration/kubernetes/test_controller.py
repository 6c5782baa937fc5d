"""The Work controller end to end on the fake API server (real HTTP, kubernetes-asyncio).

Each test runs a ``WorkController`` with the ``job`` work type against the fake, creates
Works whose Jobs the fake's simulated Job controller drives to the outcomes asked for,
and checks the Work's status and the Jobs that were made.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from support.kube import FakeKube
from support.kube.works import job_work
from workqueue_core.domain.models import FailureClass
from workqueue_core.work.registry import WorkTypes
from workqueue_kubernetes import (
    WORKS,
    KubernetesClusterClient,
    load_configuration,
    open_cluster_client,
)
from workqueue_kubernetes.controller import ControllerOptions, WorkController
from workqueue_kubernetes.job import FAILED_REASONS, JobWorkType

pytestmark = pytest.mark.anyio
NS = "default"
TERMINAL = ("Succeeded", "Failed")


@asynccontextmanager
async def running_controller(
    kubeconfig: Path, **options: Any
) -> AsyncIterator[tuple[WorkController, KubernetesClusterClient]]:
    configuration = await load_configuration(str(kubeconfig), "fake", in_cluster=False)
    async with open_cluster_client(configuration) as client:
        controller = WorkController(
            client, WorkTypes([JobWorkType()]), ControllerOptions(namespace=NS, **options)
        )
        async with anyio.create_task_group() as tg:
            with anyio.fail_after(10):
                await tg.start(controller.run)
            yield controller, client
            tg.cancel_scope.cancel()


async def terminal(fake: FakeKube, name: str, seconds: float = 20) -> Mapping[str, Any]:
    with anyio.fail_after(seconds):
        while True:
            work = fake.get("works", NS, name)
            if work is not None and (work.get("status") or {}).get("phase") in TERMINAL:
                return work
            await anyio.sleep(0.02)


def jobs_of(fake: FakeKube, work: Mapping[str, Any]) -> list[dict[str, Any]]:
    uid = work["metadata"]["uid"]
    return sorted(
        (
            job
            for job in fake.objects("jobs", NS)
            if job["metadata"].get("labels", {}).get("workqueue.dev/work-uid") == uid
        ),
        key=lambda job: int(job["metadata"]["labels"]["workqueue.dev/instance"]),
    )


def condition(work: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next(c for c in work["status"]["conditions"] if c["type"] == kind)


async def create(client: KubernetesClusterClient, body: Mapping[str, Any]) -> None:
    await client.create(WORKS, body, namespace=NS)


async def test_a_job_work_succeeds(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (controller, client):
        await create(client, job_work("ok"))
        work = await terminal(fake_kube, "ok")
    status = work["status"]
    assert status["phase"] == "Succeeded"
    assert status["retries"] == 0
    assert status["startTime"] and status["completionTime"]
    assert status["observedGeneration"] == work["metadata"]["generation"]
    assert condition(work, "TemplateApplied")["status"] == "True"
    assert condition(work, "TemplateSucceeded")["status"] == "True"
    [job] = jobs_of(fake_kube, work)
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Work",
        "ok",
        work["metadata"]["uid"],
        True,
    )
    assert job["spec"]["backoffLimit"] == 0
    assert controller.stats.outcomes["Succeeded"] == 1


async def test_two_retryable_failures_then_success(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (_, client):
        await create(client, job_work("flaky", "Failed", "Failed", "Complete", max_retries=3))
        work = await terminal(fake_kube, "flaky")
    assert work["status"]["phase"] == "Succeeded"
    assert work["status"]["retries"] == 2
    jobs = jobs_of(fake_kube, work)
    assert [j["metadata"]["labels"]["workqueue.dev/instance"] for j in jobs] == ["0", "1", "2"]
    outcomes = [[c["type"] for c in j["status"]["conditions"]][-1] for j in jobs]
    assert outcomes == ["Failed", "Failed", "Complete"]


async def test_a_permanent_failure_is_not_retried(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (_, client):
        await create(client, job_work("broken", "Failed:PodFailurePolicy", max_retries=3))
        work = await terminal(fake_kube, "broken")
    assert work["status"]["phase"] == "Failed"
    assert work["status"]["retries"] == 0
    assert condition(work, "TemplateSucceeded")["reason"] == "PodFailurePolicy"
    assert len(jobs_of(fake_kube, work)) == 1


async def test_an_exhausted_budget_fails_the_work(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (_, client):
        await create(client, job_work("doomed", "Failed", max_retries=2))
        work = await terminal(fake_kube, "doomed")
    assert work["status"]["phase"] == "Failed"
    assert work["status"]["retries"] == 2
    assert len(jobs_of(fake_kube, work)) == 3  # maxRetries + 1 runs, never more
    assert condition(work, "TemplateSucceeded")["reason"] == "BackoffLimitExceeded"


async def test_deleting_a_work_deletes_its_running_job(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with running_controller(kubeconfig) as (_, client):
        await create(client, job_work("cancelled", "never"))
        with anyio.fail_after(10):
            while not fake_kube.objects("jobs", NS):
                await anyio.sleep(0.02)
        await client.delete(WORKS, "cancelled", namespace=NS)
        with anyio.fail_after(10):
            while fake_kube.objects("jobs", NS):
                await anyio.sleep(0.02)
    assert fake_kube.get("works", NS, "cancelled") is None


async def test_a_spec_change_is_observed(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (_, client):
        await create(client, job_work("changing", "never"))
        with anyio.fail_after(10):
            while not fake_kube.objects("jobs", NS):
                await anyio.sleep(0.02)
        await client.merge_patch(WORKS, "changing", {"spec": {"maxRetries": 1}}, namespace=NS)
        with anyio.fail_after(10):
            while True:
                work = fake_kube.get("works", NS, "changing")
                assert work is not None
                if (
                    work["metadata"]["generation"] == 2
                    and (work.get("status") or {}).get("observedGeneration") == 2
                ):
                    break
                await anyio.sleep(0.02)
    assert work["status"]["phase"] == "Running"
    assert len(jobs_of(fake_kube, work)) == 1  # a spec change does not start a second Job


def _expected(outcome: str) -> tuple[str, str, int]:
    """The fake's outcome, and the phase and retries the ``job`` type's table implies with
    ``maxRetries`` 1: a retryable reason runs twice, a permanent one once."""
    if outcome in ("Complete", "SuccessCriteriaMet"):
        return outcome, "Succeeded", 0
    reason = outcome.partition(":")[2] or outcome
    retryable = FAILED_REASONS[reason] is FailureClass.RETRYABLE
    return outcome, "Failed", 1 if retryable else 0


@pytest.mark.parametrize(
    ("outcome", "phase", "retries"),
    [
        _expected(o)
        for o in (
            "Complete",
            "SuccessCriteriaMet",
            "Failed:BackoffLimitExceeded",
            "Failed:DeadlineExceeded",
            "Failed:PodFailurePolicy",
            "FailedIndexes",
            "MaxFailedIndexesExceeded",
        )
    ],
)
async def test_every_job_reason_ends_the_work_as_classified(
    fake_kube: FakeKube, kubeconfig: Path, outcome: str, phase: str, retries: int
) -> None:
    async with running_controller(kubeconfig) as (_, client):
        await create(client, job_work("reason", outcome, max_retries=1))
        work = await terminal(fake_kube, "reason")
    assert (work["status"]["phase"], work["status"]["retries"]) == (phase, retries)
    assert len(jobs_of(fake_kube, work)) == retries + 1
    if phase == "Failed":
        reason = outcome.partition(":")[2] or outcome
        assert condition(work, "TemplateSucceeded")["reason"] == reason


async def test_an_instance_the_api_server_refuses_fails_the_work_permanently(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with running_controller(kubeconfig) as (_, client):
        fake_kube.fail_next(1, 422, verb="create", path="/jobs")
        await create(client, job_work("refused", max_retries=3))
        work = await terminal(fake_kube, "refused")
    assert (work["status"]["phase"], work["status"]["retries"]) == ("Failed", 0)
    assert condition(work, "TemplateSucceeded")["reason"] == "InstanceInvalid"
    assert condition(work, "Retryable")["status"] == "False"
    assert jobs_of(fake_kube, work) == []


async def test_a_forbidden_instance_is_retried_under_the_budget(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with running_controller(kubeconfig) as (_, client):
        fake_kube.fail_next(1, 403, verb="create", path="/jobs")  # e.g. a quota, once
        await create(client, job_work("quota", max_retries=3))
        work = await terminal(fake_kube, "quota")
    assert (work["status"]["phase"], work["status"]["retries"]) == ("Succeeded", 1)
    assert [
        j["metadata"]["labels"]["workqueue.dev/instance"] for j in jobs_of(fake_kube, work)
    ] == ["1"]


# --- the backoff counts from the Job's failure ---------------------------------------------

TEN_MINUTES = json.dumps(
    {"baseDelaySeconds": 600, "multiplier": 1.0, "maxDelaySeconds": 600, "jitter": "none"}
)


async def a_job_failed_while_no_controller_ran(
    fake_kube: FakeKube, kubeconfig: Path, name: str, ago: float
) -> dict[str, Any]:
    """A Work whose instance 0 a first controller applied and which failed ``ago``
    seconds before now, after that controller stopped; the Job of instance 0."""
    fake_kube.jobs.enabled = False  # the Job stays pending until ``finish``
    async with running_controller(kubeconfig, status_delay=0) as (_, client):
        await create(client, job_work(name, "Failed", "Complete", retry_policy=TEN_MINUTES))
        with anyio.fail_after(10):
            while ((fake_kube.get("works", NS, name) or {}).get("status") or {}).get(
                "phase"
            ) != "Running":
                await anyio.sleep(0.02)
    [job] = jobs_of(fake_kube, fake_kube.get("works", NS, name) or {})
    assert await fake_kube.jobs.finish(NS, job["metadata"]["name"], "Failed", ago=ago)
    fake_kube.jobs.enabled = True
    failed = fake_kube.get("jobs", NS, job["metadata"]["name"])
    assert failed is not None
    return failed


def failed_at(job: Mapping[str, Any]) -> datetime:
    [failed] = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    return datetime.fromisoformat(failed["lastTransitionTime"])


async def test_a_controller_started_long_after_a_job_failed_retries_at_once(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    await a_job_failed_while_no_controller_ran(fake_kube, kubeconfig, "late", ago=3600)
    # Its backoff (600 s) ended 50 minutes ago: the new controller applies instance 1 at
    # once, not a backoff after it sees the failure (the bound here is far below 600 s).
    started = datetime.now(UTC)
    async with running_controller(kubeconfig, status_delay=0):
        work = await terminal(fake_kube, "late", seconds=20)
    assert (work["status"]["phase"], work["status"]["retries"]) == ("Succeeded", 1)
    jobs = jobs_of(fake_kube, work)
    assert [j["metadata"]["labels"]["workqueue.dev/instance"] for j in jobs] == ["0", "1"]
    created = datetime.fromisoformat(jobs[1]["metadata"]["creationTimestamp"])
    assert created < started + timedelta(seconds=600)


@pytest.mark.parametrize("ago", [0, 100])
async def test_a_recent_failure_still_waits_its_backoff_counted_from_the_failure(
    fake_kube: FakeKube, kubeconfig: Path, ago: float
) -> None:
    job = await a_job_failed_while_no_controller_ran(fake_kube, kubeconfig, "recent", ago=ago)
    async with running_controller(kubeconfig, status_delay=0) as (controller, client):
        with anyio.fail_after(10):
            while ((fake_kube.get("works", NS, "recent") or {}).get("status") or {}).get(
                "retries"
            ) != 1:
                await anyio.sleep(0.02)
        work = fake_kube.get("works", NS, "recent")
        assert work is not None
        due = failed_at(job) + timedelta(seconds=600)
        assert datetime.fromisoformat(work["status"]["nextRetryTime"]) == due
        assert condition(work, "TemplateApplied")["reason"] == "RetryScheduled"
        # A later reconcile (a spec change: it records observedGeneration) still waits.
        await client.merge_patch(WORKS, "recent", {"spec": {"claimTimeout": 601}}, namespace=NS)
        with anyio.fail_after(10):
            while ((fake_kube.get("works", NS, "recent") or {}).get("status") or {}).get(
                "observedGeneration"
            ) != 2:
                await anyio.sleep(0.02)
        work = fake_kube.get("works", NS, "recent")
        assert work is not None
        assert work["status"]["nextRetryTime"] == due.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert [j["metadata"]["name"] for j in jobs_of(fake_kube, work)] == ["recent-0"]
        with anyio.fail_after(10):
            while controller.queue.delayed != 1:  # to be woken up when the retry is due
                await anyio.sleep(0.02)
