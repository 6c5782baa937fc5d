"""Work resources for controller tests: a ``job`` Work whose Job the fake drives as asked,
and a ``build`` Work whose BuildRun the simulated Shipwright controller drives as asked."""

from __future__ import annotations

import json
from typing import Any

from .jobs import DELAY_ANNOTATION, OUTCOMES_ANNOTATION

__all__ = ["FAST_RETRIES", "build_work", "job_work"]

FAST_RETRIES = json.dumps({"baseDelaySeconds": 0.05, "multiplier": 1.0, "maxDelaySeconds": 0.05})
"""A retry policy annotation with a 50 ms backoff, for tests."""


def job_work(
    name: str,
    *outcomes: str,
    namespace: str = "default",
    max_retries: int = 3,
    claim_timeout: int = 600,
    delay: float | None = None,
    retry_policy: str | None = FAST_RETRIES,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Work of type ``job`` whose instance *n* ends as ``outcomes[n]`` (the last repeats;
    ``Complete`` when none are given), as the fake's simulated Job controller reads them."""
    job_annotations = {OUTCOMES_ANNOTATION: ",".join(outcomes or ("Complete",))}
    if delay is not None:
        job_annotations[DELAY_ANNOTATION] = str(delay)
    annotations = {"workqueue.dev/retry-policy": retry_policy} if retry_policy else {}
    return {
        "apiVersion": "brokkr.io/v1alpha1",
        "kind": "Work",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {},
            "annotations": annotations,
        },
        "spec": {
            "workType": "job",
            "maxRetries": max_retries,
            "claimTimeout": claim_timeout,
            "template": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "task", "annotations": job_annotations},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "busybox:1.36"}],
                        }
                    }
                },
            },
        },
    }


def build_work(
    name: str,
    *outcomes: str,
    shape: str = "build-and-run",
    namespace: str = "default",
    max_retries: int = 3,
    claim_timeout: int = 600,
    delay: float | None = None,
    retry_policy: str | None = FAST_RETRIES,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Work of type ``build`` whose instance *n* ends as ``outcomes[n]`` (the last repeats;
    ``Succeeded`` when none are given), as ``shipwright.ShipwrightController`` reads them.

    ``shape``: ``build-and-run`` (a Build and a BuildRun naming it), ``build`` (a Build
    alone: the annotations go on the Build) or ``embedded`` (a BuildRun embedding it)."""
    annotations_of_run = {OUTCOMES_ANNOTATION: ",".join(outcomes or ("Succeeded",))}
    if delay is not None:
        annotations_of_run[DELAY_ANNOTATION] = str(delay)
    build_spec = {
        "source": {
            "type": "Git",
            "git": {"url": "https://github.com/shipwright-io/sample-go", "revision": "main"},
            "contextDir": "docker-build",
        },
        "strategy": {"name": "buildah", "kind": "ClusterBuildStrategy"},
        "paramValues": [{"name": "dockerfile", "value": "Dockerfile"}],
        "output": {"image": f"registry.example.com/apps/{name}:latest"},
        "timeout": "15m",
    }
    build: dict[str, Any] = {
        "apiVersion": "shipwright.io/v1beta1",
        "kind": "Build",
        "metadata": {"name": "app"},
        "spec": build_spec,
    }
    run: dict[str, Any] = {
        "apiVersion": "shipwright.io/v1beta1",
        "kind": "BuildRun",
        "metadata": {"generateName": "app-", "annotations": annotations_of_run},
        "spec": {"build": {"name": "app"}},
    }
    if shape == "build-and-run":
        templates: list[dict[str, Any]] = [build, run]
    elif shape == "build":
        build["metadata"]["annotations"] = annotations_of_run
        templates = [build]
    elif shape == "embedded":
        run["spec"] = {"build": {"spec": build_spec}}
        templates = [run]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    annotations = {"workqueue.dev/retry-policy": retry_policy} if retry_policy else {}
    return {
        "apiVersion": "brokkr.io/v1alpha1",
        "kind": "Work",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {},
            "annotations": annotations,
        },
        "spec": {
            "workType": "build",
            "maxRetries": max_retries,
            "claimTimeout": claim_timeout,
            "template": templates if len(templates) > 1 else templates[0],
        },
    }
