"""A simulated batch/v1 Job controller for the fake API server.

Each created Job is driven to an outcome chosen by its annotations:

``fake.workqueue.dev/outcome``
    ``Complete`` (default, see ``JobController.default_outcome``): ``SuccessCriteriaMet``
    then ``Complete``, both reason ``CompletionsReached``;
    ``SuccessCriteriaMet``: the same with reason ``SuccessPolicy`` (an Indexed Job's
    success policy);
    ``Failed:<reason>`` with reason ``BackoffLimitExceeded`` (``Failed`` alone means
    this), ``DeadlineExceeded``, ``PodFailurePolicy``, ``MaxFailedIndexesExceeded`` or
    ``FailedIndexes``: ``FailureTarget`` then ``Failed``, both with that reason;
    ``FailedIndexes`` and ``MaxFailedIndexesExceeded`` also work as bare words;
    ``never``: started (``startTime``, ``active: 1``) and left running.
``fake.workqueue.dev/outcomes``
    a comma-separated list of outcomes as above, one per retry: the Job whose
    ``workqueue.dev/instance`` label is *n* gets the *n*-th (the last one when the list is
    shorter), so ``Failed,Failed,Complete`` fails twice and then succeeds; it wins over
    ``fake.workqueue.dev/outcome``.
``fake.workqueue.dev/delay``
    seconds between the Job's start and its outcome (default ``JobController.delay``).

The writes follow the real controller (Kubernetes 1.31+, types.go): a first status write
sets ``startTime``, ``active`` and ``ready`` (its pod is up); the outcome takes two
writes, the interim condition
(``SuccessCriteriaMet`` / ``FailureTarget``) and then the terminal one (``Complete`` /
``Failed``) with ``completionTime`` (success only), ``succeeded``/``failed`` counts and
``active: 0`` and ``ready: 0``.  Every condition has ``status: "True"``, ``reason``, ``message``,
``lastProbeTime`` and ``lastTransitionTime``.  Jobs are written in-process (no HTTP, no
injected faults) and each write is a real MODIFIED watch event.

``JobController.finish`` drives one Job to an outcome on demand, its times set in the
past: a Job that finished long before a controller looked (disable the simulated
controller first, so that it leaves the Job alone).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs

from .server import ApiError, now_rfc3339

if TYPE_CHECKING:
    from .server import FakeKube

__all__ = [
    "DELAY_ANNOTATION",
    "OUTCOMES_ANNOTATION",
    "OUTCOME_ANNOTATION",
    "JobController",
    "default_job",
]

OUTCOME_ANNOTATION: Final = "fake.workqueue.dev/outcome"
OUTCOMES_ANNOTATION: Final = "fake.workqueue.dev/outcomes"
DELAY_ANNOTATION: Final = "fake.workqueue.dev/delay"

_FAILURE_MESSAGES: Final = {
    "BackoffLimitExceeded": "Job has reached the specified backoff limit",
    "DeadlineExceeded": "Job was active longer than specified deadline",
    "PodFailurePolicy": "Container main for pod {ns}/{name}-abcde failed with exit code 42"
    " matching FailJob rule at index 0",
    "MaxFailedIndexesExceeded": "Job has exceeded the specified maximal number of failed indexes",
    "FailedIndexes": "Job has failed indexes",
}
_SUCCESS: Final = {
    "Complete": ("CompletionsReached", "Reached expected number of succeeded pods"),
    "SuccessCriteriaMet": ("SuccessPolicy", "Matched rules at index 0"),
}


def default_job(job: dict[str, Any]) -> None:
    """The API server's defaults for a new Job (batch/v1 SetDefaults_Job and the strategy)."""
    spec = job.setdefault("spec", {})
    uid = job["metadata"]["uid"]
    name = job["metadata"].get("name", "")
    completions_set = spec.get("completions") is not None
    spec.setdefault("parallelism", 1)
    if not completions_set and spec.get("completionMode") != "Indexed":
        spec["completions"] = 1
    spec.setdefault("completionMode", "NonIndexed")
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") else 6
    spec.setdefault("suspend", False)
    spec.setdefault(
        "podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    )
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        template = spec.setdefault("template", {})
        template_metadata = template.setdefault("metadata", {})
        template_metadata.setdefault("labels", {}).update(labels)
    job["metadata"].setdefault("labels", {})
    for key in ("batch.kubernetes.io/controller-uid", "controller-uid"):
        job["metadata"]["labels"].setdefault(key, uid)
    for key in ("batch.kubernetes.io/job-name", "job-name"):
        job["metadata"]["labels"].setdefault(key, name)


def _time_ago(seconds: float) -> str:
    """``now_rfc3339`` ``seconds`` ago."""
    if not seconds:
        return now_rfc3339()
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, reason: str, message: str, ago: float = 0.0) -> dict[str, str]:
    when = _time_ago(ago)
    return {
        "type": kind,
        "status": "True",
        "lastProbeTime": when,
        "lastTransitionTime": when,
        "reason": reason,
        "message": message,
    }


@attrs.define
class JobController:
    """Drives Jobs of the fake server; toggle with ``enabled``, speed with ``delay``/``step``.

    ``delay``: default seconds from start to outcome; ``step``: seconds between the
    simulated controller's writes (start, interim condition, terminal condition).
    """

    server: FakeKube
    enabled: bool = True
    delay: float = 0.0
    step: float = 0.0
    default_outcome: str = "Complete"
    _running: dict[str, asyncio.Task[None]] = attrs.field(factory=dict)

    def observe(self, kind: str, job: dict[str, Any]) -> None:
        """Called by the server for every Job event."""
        uid = job["metadata"]["uid"]
        if kind == "DELETED":
            task = self._running.pop(uid, None)
            if task is not None:
                task.cancel()
            return
        if kind != "ADDED" or not self.enabled or job.get("spec", {}).get("suspend"):
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            task = self.server.spawn(self._drive(job))
            self._running[uid] = task
            task.add_done_callback(lambda _: self._running.pop(uid, None))

    async def _write_status(self, job: dict[str, Any], status: dict[str, Any]) -> bool:
        namespace, name = job["metadata"].get("namespace"), job["metadata"]["name"]
        current = self.server.stored("jobs", namespace, name)
        if current is None or current["metadata"]["uid"] != job["metadata"]["uid"]:
            return False
        updated = {**current, "metadata": dict(current["metadata"])}  # write_object copies
        merged = dict(current.get("status") or {})
        conditions = list(merged.get("conditions") or [])
        conditions.extend(status.pop("conditions", []))
        merged.update(status)
        if conditions:
            merged["conditions"] = conditions
        updated["status"] = merged
        jobs = self.server.resource("jobs", "batch")
        try:
            self.server.write_object(
                jobs,
                namespace,
                name,
                updated,
                subresource="status",
                validate=False,
                copy_result=False,
            )
        except ApiError:
            return False
        return True

    async def _drive(self, job: dict[str, Any]) -> None:
        annotations = job["metadata"].get("annotations") or {}
        outcome = annotations.get(OUTCOME_ANNOTATION, self.default_outcome)
        if annotations.get(OUTCOMES_ANNOTATION):
            outcomes = [o.strip() for o in annotations[OUTCOMES_ANNOTATION].split(",")]
            labels = job["metadata"].get("labels") or {}
            index = int(labels.get("workqueue.dev/instance", "0"))
            outcome = outcomes[min(index, len(outcomes) - 1)]
        delay = float(annotations.get(DELAY_ANNOTATION, self.delay))
        await asyncio.sleep(self.step)
        started = {"startTime": now_rfc3339(), "active": 1, "ready": 1}
        if not await self._write_status(job, started):
            return
        if outcome == "never":
            return
        await asyncio.sleep(delay)
        await self._finish(job, outcome, 0.0)

    async def finish(self, namespace: str, name: str, outcome: str, *, ago: float = 0.0) -> bool:
        """Drive Job ``namespace/name`` to ``outcome`` (as the annotations name them) now:
        the interim condition, then the terminal one, with ``lastTransitionTime`` (and a
        success's ``completionTime``) ``ago`` seconds in the past.  False when there is
        no such Job."""
        job = self.server.get("jobs", namespace, name)
        if job is None:
            return False
        if "startTime" not in (job.get("status") or {}):
            started = {"startTime": _time_ago(ago), "active": 1, "ready": 1}
            if not await self._write_status(job, started):
                return False
        return await self._finish(job, outcome, ago)

    async def _finish(self, job: dict[str, Any], outcome: str, ago: float) -> bool:
        spec = job.get("spec") or {}
        if outcome in _SUCCESS:
            reason, message = _SUCCESS[outcome]
            succeeded = spec.get("completions") or 1
            interim = _condition("SuccessCriteriaMet", reason, message, ago)
            if not await self._write_status(
                job, {"conditions": [interim], "active": 0, "ready": 0, "succeeded": succeeded}
            ):
                return False
            await asyncio.sleep(self.step)
            final = _condition("Complete", reason, message, ago)
            return await self._write_status(
                job, {"conditions": [final], "completionTime": _time_ago(ago)}
            )
        reason = outcome.partition(":")[2] or "BackoffLimitExceeded"
        if outcome in ("FailedIndexes", "MaxFailedIndexesExceeded"):
            reason = outcome
        elif not outcome.startswith("Failed"):
            raise ValueError(f"unknown {OUTCOME_ANNOTATION} {outcome!r}")
        if reason not in _FAILURE_MESSAGES:
            raise ValueError(f"unknown Job failure reason {reason!r}")
        message = _FAILURE_MESSAGES[reason].format(
            ns=job["metadata"].get("namespace"), name=job["metadata"]["name"]
        )
        failed = (spec.get("backoffLimit") or 0) + 1 if reason == "BackoffLimitExceeded" else 1
        extra: dict[str, Any] = {}
        if reason in ("FailedIndexes", "MaxFailedIndexesExceeded"):
            extra["failedIndexes"] = "0"
        interim = _condition("FailureTarget", reason, message, ago)
        if not await self._write_status(
            job, {"conditions": [interim], "active": 0, "ready": 0, "failed": failed, **extra}
        ):
            return False
        await asyncio.sleep(self.step)
        final = _condition("Failed", reason, message, ago)
        return await self._write_status(job, {"conditions": [final]})
