"""Kubernetes work types' specs over real HTTP: a bad ``build`` or ``job`` Work is refused
with 422 ``application/problem+json`` naming the field's path, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integration.http.support import (
    BUILD_WORK,
    Broker,
    admin_headers,
    running_broker,
    server_errors,
)
from workqueue_http.problems import PROBLEM_BASE

pytestmark = pytest.mark.anyio

JOB_WORK = """\
apiVersion: brokkr.io/v1alpha1
kind: Work
metadata:
  name: backup-nightly
spec:
  workType: job
  template:
    apiVersion: batch/v1
    kind: Job
    metadata:
      generateName: backup-
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: backup
            image: registry.example.com/backup:1.2
"""


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with running_broker() as running:
        yield running
        assert server_errors(running) == []


async def submit(broker: Broker, work_type: str, spec: str) -> httpx.Response:
    body: dict[str, Any] = {"work_type": work_type, "spec": spec, "targeting": {"selector": {}}}
    async with httpx.AsyncClient(base_url=broker.url) as http:
        return await http.post("/api/v1/work", json=body, headers=admin_headers())


async def stored(broker: Broker) -> int:
    async with httpx.AsyncClient(base_url=broker.url) as http:
        stats = await http.get("/api/v1/stats", headers=admin_headers())
    return int(stats.json()["total"])


async def test_valid_build_and_job_specs_are_accepted(broker: Broker) -> None:
    before = await stored(broker)
    for work_type, spec in [("build", BUILD_WORK), ("job", JOB_WORK)]:
        response = await submit(broker, work_type, spec)
        assert response.status_code == 201, response.text
        assert response.json()["work"]["item"]["spec"] == spec
    assert await stored(broker) == before + 2


@pytest.mark.parametrize(
    ("work_type", "spec", "path", "words"),
    [
        (
            "build",
            BUILD_WORK.replace("image: registry.example.com/sample-go:latest", "pushSecret: s"),
            "spec.template.spec.output.image",
            "required field is missing",
        ),
        (
            "build",
            BUILD_WORK.replace("kind: ClusterBuildStrategy", "kind: Kaniko"),
            "spec.template.spec.strategy.kind",
            "ClusterBuildStrategy",
        ),
        (
            "build",
            BUILD_WORK.replace("contextDir: docker-build", "contextDir: 5"),
            "spec.template.spec.source.contextDir",
            "expected a string, found an integer",
        ),
        (
            "build",
            BUILD_WORK.replace("      strategy:", "      strategi: {}\n      strategy:"),
            "spec.template.spec.strategi",
            "unknown field 'strategi'",
        ),
        (
            "job",
            JOB_WORK.replace("            image: registry.example.com/backup:1.2\n", ""),
            "spec.template.spec.template.spec.containers[0].image",
            "",
        ),
        (
            "job",
            JOB_WORK.replace("backoffLimit: 0", "backoffLimit: none"),
            "spec.template.spec.backoffLimit",
            "",
        ),
    ],
    ids=[
        "build-without-output-image",
        "build-unknown-strategy-kind",
        "build-context-dir-a-number",
        "build-unknown-field",
        "job-container-without-image",
        "job-backoff-limit-text",
    ],
)
async def test_a_bad_kubernetes_spec_is_a_422_naming_its_path(
    broker: Broker, work_type: str, spec: str, path: str, words: str
) -> None:
    before = await stored(broker)
    response = await submit(broker, work_type, spec)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == f"{PROBLEM_BASE}invalid-spec"
    assert problem["path"] == path, problem
    assert words in problem["detail"]
    assert await stored(broker) == before
