"""The Work controller with the ``build`` work type end to end on the fake API server.

The fake serves Shipwright's Build and BuildRun from the upstream CRDs (validated by their
schemas) and its simulated Shipwright controller drives each BuildRun to the outcome the
Work's templates ask for (``support.kube.shipwright``).  Each test runs a
``WorkController`` with the ``build`` and ``job`` work types over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from support.kube import FakeKube, serve_shipwright
from support.kube.shipwright import REGISTRATION_ANNOTATION
from support.kube.works import build_work
from workqueue_controller.process import controller_work_types, served_work_types
from workqueue_core.work.registry import WorkTypes
from workqueue_kubernetes import (
    WORKS,
    KubernetesClusterClient,
    load_configuration,
    open_cluster_client,
)
from workqueue_kubernetes.controller import ControllerOptions, WorkController
from workqueue_kubernetes.job import JobWorkType
from workqueue_shipwright import BuildWorkType
from workqueue_shipwright.reasons import BUILD_RUN_REASONS, ReasonClass

pytestmark = pytest.mark.anyio
NS = "default"
TERMINAL = ("Succeeded", "Failed")


@asynccontextmanager
async def running_controller(
    fake: FakeKube, kubeconfig: Path, **options: Any
) -> AsyncIterator[tuple[WorkController, KubernetesClusterClient]]:
    serve_shipwright(fake)
    configuration = await load_configuration(str(kubeconfig), "fake", in_cluster=False)
    async with open_cluster_client(configuration) as client:
        work_types = WorkTypes([BuildWorkType(), JobWorkType()])
        controller = WorkController(client, work_types, ControllerOptions(namespace=NS, **options))
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


def owned(fake: FakeKube, plural: str, work: Mapping[str, Any]) -> list[dict[str, Any]]:
    uid = work["metadata"]["uid"]
    return sorted(
        (
            obj
            for obj in fake.objects(plural, NS)
            if obj["metadata"].get("labels", {}).get("workqueue.dev/work-uid") == uid
        ),
        key=lambda obj: int(obj["metadata"]["labels"]["workqueue.dev/instance"]),
    )


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


async def wait_for(predicate: Any, seconds: float = 10) -> None:
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.02)


async def test_a_build_work_succeeds_with_the_image_digest_size_and_commit(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with running_controller(fake_kube, kubeconfig) as (controller, client):
        await client.create(WORKS, build_work("app"), namespace=NS)
        work = await terminal(fake_kube, "app")
    status = work["status"]
    assert (status["phase"], status["retries"]) == ("Succeeded", 0)
    assert condition(work, "TemplateSucceeded")["reason"] == "Succeeded"
    [build] = owned(fake_kube, "builds", work)
    [run] = owned(fake_kube, "buildruns", work)
    assert build["metadata"]["name"] == run["metadata"]["name"] == "app-0"
    assert run["spec"]["build"] == {"name": "app-0"}
    for obj in (build, run):
        [owner] = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "Work",
            work["metadata"]["uid"],
            True,
        )
    output = run["status"]["output"]
    assert status["result"] == {
        "buildRun": "app-0",
        "image": "registry.example.com/apps/app:latest",
        "digest": output["digest"],
        "size": str(output["size"]),
        "commit": run["status"]["source"]["git"]["commitSha"],
    }  # no "branch": Shipwright reports branchName only when the source names no revision
    assert status["result"]["digest"].startswith("sha256:")
    assert len(status["result"]["commit"]) == 40
    assert controller.stats.outcomes["Succeeded"] == 1


@pytest.mark.parametrize("shape", ["build", "embedded"])
async def test_the_other_template_shapes_succeed(
    fake_kube: FakeKube, kubeconfig: Path, shape: str
) -> None:
    async with running_controller(fake_kube, kubeconfig) as (_, client):
        await client.create(WORKS, build_work("shaped", shape=shape), namespace=NS)
        work = await terminal(fake_kube, "shaped")
    assert work["status"]["phase"] == "Succeeded"
    assert work["status"]["result"]["digest"].startswith("sha256:")
    builds = owned(fake_kube, "builds", work)
    [run] = owned(fake_kube, "buildruns", work)
    if shape == "build":
        assert [b["metadata"]["name"] for b in builds] == ["shaped-0"]
        assert run["spec"]["build"] == {"name": "shaped-0"}
    else:
        assert builds == []
        assert "spec" in run["spec"]["build"]


async def test_a_retryable_failure_then_success(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(fake_kube, kubeconfig) as (_, client):
        await client.create(
            WORKS, build_work("flaky", "Failed:PodEvicted", "Succeeded"), namespace=NS
        )
        work = await terminal(fake_kube, "flaky")
    assert (work["status"]["phase"], work["status"]["retries"]) == ("Succeeded", 1)
    runs = owned(fake_kube, "buildruns", work)
    assert [r["metadata"]["name"] for r in runs] == ["flaky-0", "flaky-1"]
    assert [condition(r, "Succeeded")["reason"] for r in runs] == ["PodEvicted", "Succeeded"]
    assert [b["metadata"]["name"] for b in owned(fake_kube, "builds", work)] == [
        "flaky-0",
        "flaky-1",
    ]
    assert work["status"]["result"]["buildRun"] == "flaky-1"


async def test_a_permanent_failure_is_not_retried(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(fake_kube, kubeconfig) as (_, client):
        await client.create(
            WORKS, build_work("vulnerable", "Failed:VulnerabilitiesFound"), namespace=NS
        )
        work = await terminal(fake_kube, "vulnerable")
    assert (work["status"]["phase"], work["status"]["retries"]) == ("Failed", 0)
    assert condition(work, "TemplateSucceeded")["reason"] == "VulnerabilitiesFound"
    assert condition(work, "Retryable")["status"] == "False"
    assert "failureDetails" in condition(work, "TemplateSucceeded")["message"]
    assert len(owned(fake_kube, "buildruns", work)) == 1


@pytest.mark.parametrize(
    ("build_reason", "retries", "retryable"),
    [("RemoteRepositoryUnreachable", 1, "True"), ("BuildStrategyNotFound", 0, "False")],
)
async def test_a_build_registration_failure_is_classified_by_the_build_reason(
    fake_kube: FakeKube, kubeconfig: Path, build_reason: str, retries: int, retryable: str
) -> None:
    body = build_work("unregistered", max_retries=1)
    body["spec"]["template"][0]["metadata"]["annotations"] = {REGISTRATION_ANNOTATION: build_reason}
    async with running_controller(fake_kube, kubeconfig) as (_, client):
        await client.create(WORKS, body, namespace=NS)
        work = await terminal(fake_kube, "unregistered")
    assert (work["status"]["phase"], work["status"]["retries"]) == ("Failed", retries)
    assert condition(work, "TemplateSucceeded")["reason"] == "BuildRegistrationFailed"
    assert build_reason in condition(work, "TemplateSucceeded")["message"]
    assert condition(work, "Retryable")["status"] == retryable
    for build in owned(fake_kube, "builds", work):
        assert (build["status"]["registered"], build["status"]["reason"]) == ("False", build_reason)


async def test_a_work_being_deleted_cancels_its_build_run_then_both_go(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    body = build_work("cancelled", "never")
    body["metadata"]["finalizers"] = ["test.workqueue.dev/hold"]  # keep it while deleting
    async with running_controller(fake_kube, kubeconfig) as (_, client):
        await client.create(WORKS, body, namespace=NS)
        await wait_for(
            lambda: any(
                (condition(r, "Succeeded") if r.get("status", {}).get("conditions") else {}).get(
                    "reason"
                )
                == "Running"
                for r in fake_kube.objects("buildruns", NS)
            )
        )
        await client.delete(WORKS, "cancelled", namespace=NS)

        def canceled() -> bool:
            run = fake_kube.get("buildruns", NS, "cancelled-0") or {}
            conditions = (run.get("status") or {}).get("conditions") or []
            return any(c["status"] == "False" for c in conditions)

        await wait_for(canceled)
        run = fake_kube.get("buildruns", NS, "cancelled-0")
        assert run is not None
        assert run["spec"]["state"] == "BuildRunCanceled"
        assert (condition(run, "Succeeded")["status"], condition(run, "Succeeded")["reason"]) == (
            "False",
            "BuildRunCanceled",
        )
        assert fake_kube.count("patch", "buildruns") == 1  # one cancel, not repeated
        await client.merge_patch(
            WORKS, "cancelled", {"metadata": {"finalizers": None}}, namespace=NS
        )
        await wait_for(
            lambda: not fake_kube.objects("buildruns", NS) and not fake_kube.objects("builds", NS)
        )
    assert fake_kube.get("works", NS, "cancelled") is None


async def test_deleting_a_work_deletes_its_build_and_build_run(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with running_controller(fake_kube, kubeconfig) as (_, client):
        await client.create(WORKS, build_work("gone", "never"), namespace=NS)
        await wait_for(lambda: bool(fake_kube.objects("buildruns", NS)))
        await client.delete(WORKS, "gone", namespace=NS)
        await wait_for(
            lambda: not fake_kube.objects("buildruns", NS) and not fake_kube.objects("builds", NS)
        )


async def test_a_build_run_without_progress_is_canceled_and_the_retry_waits_for_it(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    fake_kube.shipwright.enabled = False  # instance 0 is never picked up: no progress
    async with running_controller(fake_kube, kubeconfig, status_delay=0) as (_, client):
        await client.create(
            WORKS, build_work("stuck", max_retries=1, claim_timeout=1), namespace=NS
        )
        await wait_for(lambda: fake_kube.get("buildruns", NS, "stuck-0") is not None)
        fake_kube.shipwright.enabled = True  # it honours the cancel, and runs instance 1
        work = await terminal(fake_kube, "stuck")
    assert (work["status"]["phase"], work["status"]["retries"]) == ("Succeeded", 1)
    first = fake_kube.get("buildruns", NS, "stuck-0")
    assert first is not None
    assert first["spec"]["state"] == "BuildRunCanceled"
    assert condition(first, "Succeeded")["reason"] == "BuildRunCanceled"
    second = fake_kube.get("buildruns", NS, "stuck-1")
    assert second is not None
    # instance 1 was created only once instance 0 had finished canceling
    assert (
        second["metadata"]["creationTimestamp"]
        >= condition(first, "Succeeded")["lastTransitionTime"]
    )


def _expected(reason: str) -> tuple[str, int, str]:
    """The Work's phase, retries (``maxRetries`` 1) and ``Retryable`` a reason implies."""
    reason_class = BUILD_RUN_REASONS[reason].reason_class if reason in BUILD_RUN_REASONS else None
    if reason_class is ReasonClass.SUCCEEDED:
        return "Succeeded", 0, ""
    if reason_class in (ReasonClass.PERMANENT, ReasonClass.CANCELED):
        return "Failed", 0, "False"
    return "Failed", 1, "True"  # retryable, and any reason not in the table


# One reason or more of each class (the unit tests read every reason of the table).
REPRESENTATIVES = (
    "Failed",
    "PodEvicted",
    "StepOutOfMemory",
    "BuildRunTimeout",
    "BuildNotFound",
    "VulnerabilitiesFound",
    "BuildRegistrationFailed",
    "ServiceAccountNotFound",
    "TaskRunCancelled",
    "TaskRunImagePullFailed",  # not in the upstream source: retryable by default
)


def test_the_representatives_cover_every_failure_class() -> None:
    classes = {BUILD_RUN_REASONS[r].reason_class for r in REPRESENTATIVES if r in BUILD_RUN_REASONS}
    assert classes == {ReasonClass.RETRYABLE, ReasonClass.PERMANENT, ReasonClass.CANCELED}
    assert any(r not in BUILD_RUN_REASONS for r in REPRESENTATIVES)


@pytest.mark.parametrize("outcome", ["Succeeded", *(f"Failed:{r}" for r in REPRESENTATIVES)])
async def test_every_reason_ends_the_work_as_classified(
    fake_kube: FakeKube, kubeconfig: Path, outcome: str
) -> None:
    reason = outcome.partition(":")[2] or outcome
    phase, retries, retryable = _expected(reason)
    async with running_controller(fake_kube, kubeconfig) as (_, client):
        await client.create(WORKS, build_work("reason", outcome, max_retries=1), namespace=NS)
        work = await terminal(fake_kube, "reason")
    assert (work["status"]["phase"], work["status"]["retries"]) == (phase, retries)
    assert len(owned(fake_kube, "buildruns", work)) == retries + 1
    if phase == "Failed":
        assert condition(work, "TemplateSucceeded")["reason"] == reason
        assert condition(work, "Retryable")["status"] == retryable


async def test_the_controller_process_runs_build_only_where_shipwright_is_served(
    fake_kube: FakeKube, cluster: KubernetesClusterClient
) -> None:
    without = await served_work_types(cluster, controller_work_types(), NS)
    assert without.names == {"job"}
    serve_shipwright(fake_kube)
    served = await served_work_types(cluster, controller_work_types(), NS)
    assert served.names == {"build", "job"}
    assert controller_work_types().names == {"build", "job"}
