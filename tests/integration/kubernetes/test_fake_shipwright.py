"""The fake's simulated Shipwright controller: what it writes is valid against the real
CRDs, and it follows the annotations, cancels on ``spec.state`` and stops on delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from support.kube import FakeKube, serve_shipwright
from support.kube.jobs import OUTCOME_ANNOTATION

pytestmark = pytest.mark.anyio
NS = "default"
BUILD_SPEC = {
    "source": {"type": "Git", "git": {"url": "https://github.com/shipwright-io/sample-go"}},
    "strategy": {"name": "buildah", "kind": "ClusterBuildStrategy"},
    "output": {"image": "registry.example.com/app:latest"},
}


def make(
    kube: FakeKube,
    name: str,
    outcome: str,
    *,
    build: bool = True,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    builds, runs = serve_shipwright(kube)
    if build:
        kube.create_object(builds, NS, {"metadata": {"name": name}, "spec": spec or BUILD_SPEC})
    run = {
        "metadata": {"name": name, "annotations": {OUTCOME_ANNOTATION: outcome}},
        "spec": {"build": {"name": name}},
    }
    return kube.create_object(runs, NS, run)


def succeeded(kube: FakeKube, name: str) -> dict[str, Any]:
    run = kube.get("buildruns", NS, name) or {}
    for condition in (run.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Succeeded":
            return dict(condition)
    return {}


async def until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.01)


def assert_valid(kube: FakeKube, plural: str, name: str) -> None:
    resource = kube.served(("shipwright.io", plural))
    assert resource is not None and resource.validator is not None
    obj = kube.get(plural, NS, name)
    assert obj is not None
    assert resource.validator.errors(obj) == []
    assert resource.validator.prune(obj) == []  # no field the schema does not know


async def test_a_success_writes_schema_valid_output_and_source(fake_kube: FakeKube) -> None:
    make(fake_kube, "ok", "Succeeded")
    await until(lambda: succeeded(fake_kube, "ok").get("status") == "True")
    run = fake_kube.get("buildruns", NS, "ok")
    assert run is not None
    assert run["status"]["output"]["digest"].startswith("sha256:")
    assert run["status"]["source"]["git"]["commitSha"]
    assert run["status"]["buildSpec"] == BUILD_SPEC
    assert run["status"]["completionTime"]
    assert_valid(fake_kube, "buildruns", "ok")
    build = fake_kube.get("builds", NS, "ok")
    assert build is not None and build["status"]["registered"] == "True"
    assert_valid(fake_kube, "builds", "ok")


@pytest.mark.parametrize("revision", [None, "v1.2"])
async def test_the_branch_name_is_reported_only_for_a_source_without_revision(
    fake_kube: FakeKube, revision: str | None
) -> None:
    """``GitSourceResult.BranchName`` (buildrun_types.go): "the default branch name of the
    git source; this will be set only when revision is not specified in Build object"."""
    git: dict[str, str] = {"url": "https://github.com/shipwright-io/sample-go"}
    if revision is not None:
        git["revision"] = revision
    make(fake_kube, "src", "Succeeded", spec={**BUILD_SPEC, "source": {"type": "Git", "git": git}})
    await until(lambda: succeeded(fake_kube, "src").get("status") == "True")
    run = fake_kube.get("buildruns", NS, "src")
    assert run is not None
    result = run["status"]["source"]["git"]
    assert result["commitSha"]
    if revision is None:
        assert result["branchName"] == "main"
    else:
        assert "branchName" not in result
    assert_valid(fake_kube, "buildruns", "src")


async def test_a_failure_has_its_reason_and_failure_details(fake_kube: FakeKube) -> None:
    make(fake_kube, "oom", "Failed:StepOutOfMemory")
    await until(lambda: succeeded(fake_kube, "oom").get("status") == "False")
    assert succeeded(fake_kube, "oom")["reason"] == "StepOutOfMemory"
    run = fake_kube.get("buildruns", NS, "oom")
    assert run is not None
    assert run["status"]["failureDetails"]["location"]["container"] == "step-build"
    assert_valid(fake_kube, "buildruns", "oom")


async def test_a_missing_build_fails_with_build_not_found(fake_kube: FakeKube) -> None:
    make(fake_kube, "orphan", "Succeeded", build=False)
    await until(lambda: succeeded(fake_kube, "orphan").get("status") == "False")
    assert succeeded(fake_kube, "orphan")["reason"] == "BuildNotFound"
    assert_valid(fake_kube, "buildruns", "orphan")


async def test_spec_state_cancels_a_running_build_run(fake_kube: FakeKube) -> None:
    _, runs = serve_shipwright(fake_kube)
    make(fake_kube, "long", "never")
    await until(lambda: succeeded(fake_kube, "long").get("reason") == "Running")
    fake_kube.shipwright.step = 0.2  # slow enough to see the interim condition
    fake_kube.patch_object(
        runs, NS, "long", {"spec": {"state": "BuildRunCanceled"}}, "application/merge-patch+json"
    )
    await until(lambda: succeeded(fake_kube, "long").get("reason") == "BuildRunCanceled")
    assert succeeded(fake_kube, "long")["status"] == "Unknown"  # Tekton still stopping it
    await until(lambda: succeeded(fake_kube, "long").get("status") == "False")
    assert succeeded(fake_kube, "long")["reason"] == "BuildRunCanceled"
    assert_valid(fake_kube, "buildruns", "long")


async def test_a_deleted_build_run_is_left_alone(fake_kube: FakeKube) -> None:
    _, runs = serve_shipwright(fake_kube)
    fake_kube.shipwright.step = 0.05
    make(fake_kube, "gone", "Succeeded")
    fake_kube.delete_object(runs, NS, "gone")
    await anyio.sleep(0.3)
    assert fake_kube.get("buildruns", NS, "gone") is None
    assert fake_kube.internal_errors == []
