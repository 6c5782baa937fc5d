"""Shared examples for the Work resource and work type tests: the seed's Work, Build,
BuildRun and a Job; helpers that wrap templates in a Work and mutate documents."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workqueue_core.work.resource import API_VERSION, KIND
from workqueue_core.work.safe_yaml import YamlLimits, load_json_compatible_mapping

SHIPWRIGHT = Path(__file__).resolve().parents[2].parent / "shared" / "upstream" / "shipwright"
needs_shipwright = pytest.mark.skipif(
    not SHIPWRIGHT.is_dir(), reason=f"upstream Shipwright files not found at {SHIPWRIGHT}"
)

# The example Work of seed 001, "Work CRD Specification", verbatim.
SEED_WORK = """\
apiVersion: brokkr.io/v1alpha1
kind: Work
metadata:
  name: build-my-app-abc123
  namespace: brokkr-agent
spec:
  workType: build  # Type discriminator for different work handlers
  maxRetries: 3
  claimTimeout: 3600  # Seconds before broker can reclaim
  template:  # User-provided template (embedded YAML)
    apiVersion: shipwright.io/v1beta1
    kind: Build
    metadata:
      name: my-app-build
    spec:
      source:
        type: Git
        git:
          url: https://github.com/org/repo
          revision: main
      strategy:
        name: buildah
        kind: ClusterBuildStrategy
      output:
        image: registry.example.com/my-app:latest
        pushSecret: registry-credentials

status:
  phase: Running  # Pending, Running, Succeeded, Failed
  retries: 1
  message: "Image built successfully: sha256:abc123..."
  startTime: "2025-11-02T10:00:00Z"
  completionTime: "2025-11-02T10:05:23Z"
  conditions:
    - type: TemplateApplied
      status: "True"
      lastTransitionTime: "2025-11-02T10:00:05Z"
    - type: TemplateSucceeded
      status: "True"
      reason: BuildCompleted
      message: "BuildRun succeeded"
      lastTransitionTime: "2025-11-02T10:05:23Z"
"""

# The Build and BuildRun of seed 001, "Shipwright Build Specification".
SEED_BUILD = """\
apiVersion: shipwright.io/v1beta1
kind: Build
metadata:
  name: my-app-build
spec:
  source:
    type: Git
    git:
      url: https://github.com/org/repo
      revision: main
      cloneSecret: git-credentials  # Optional: for private repos
    contextDir: "."
  strategy:
    name: buildah
    kind: ClusterBuildStrategy
  paramValues:
    - name: dockerfile
      value: "./Dockerfile"
    - name: build-args
      values:
        - value: "BUILD_VERSION=1.0.0"
  output:
    image: registry.example.com/my-app:latest
    pushSecret: registry-credentials
    annotations:
      "org.opencontainers.image.source": "https://github.com/org/repo"
  timeout: 15m
  retention:
    ttlAfterSucceeded: 1h
    ttlAfterFailed: 24h
"""
SEED_BUILD_RUN = """\
apiVersion: shipwright.io/v1beta1
kind: BuildRun
metadata:
  generateName: my-app-buildrun-
spec:
  build:
    name: my-app-build
  serviceAccount: builder-sa
"""

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"generateName": "backup-"},
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "backup", "image": "registry.example.com/backup:1.2", "args": ["run"]}
                ],
            }
        },
    },
}


def mapping_of(text: str, limits: YamlLimits | None = None) -> dict[str, Any]:
    return load_json_compatible_mapping(text, limits or YamlLimits())


def seed() -> dict[str, Any]:
    return mapping_of(SEED_WORK)


def build_and_run() -> dict[str, Any]:
    work = seed()
    work["spec"]["template"] = [
        mapping_of(SEED_BUILD),
        mapping_of(SEED_BUILD_RUN),
    ]
    return work


def job_work() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "backup-1", "namespace": "ops"},
        "spec": {"workType": "job", "template": copy.deepcopy(JOB)},
    }


def sample(name: str) -> dict[str, Any]:
    return mapping_of((SHIPWRIGHT / "samples" / "v1beta1" / name).read_text())


def wrap(templates: object, work_type: str = "build") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "w-1", "namespace": "builds"},
        "spec": {"workType": work_type, "maxRetries": 2, "template": templates},
    }


def set_at(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def delete_at(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


T = ("spec", "template")
BUILD_SPEC = (*T, "spec")
