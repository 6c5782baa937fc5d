"""Work resources for controller tests: a ``job`` Work whose Job the fake drives as asked."""

from __future__ import annotations

import json
from typing import Any

from .jobs import DELAY_ANNOTATION, OUTCOMES_ANNOTATION

__all__ = ["FAST_RETRIES", "job_work"]

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
