"""The reconcile decision with the ``build`` work type: a BuildRun stopped by a patch is
cancelled once and waited for before the next instance is applied."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from work_examples import SEED_BUILD, SEED_BUILD_RUN, mapping_of

from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.work.reconcile import (
    ApplyInstance,
    Decision,
    StopInstance,
    format_time,
    reconcile,
)
from workqueue_core.work.reconcile_labels import group_instances
from workqueue_core.work.resource import (
    CONDITION_TEMPLATE_SUCCEEDED,
    WorkMetadata,
    WorkPhase,
    WorkResource,
    WorkSpec,
)
from workqueue_shipwright import BuildWorkType
from workqueue_shipwright.build import BUILD_RUN, CANCEL_PATCH

T0 = datetime(2030, 1, 1, tzinfo=UTC)
UID = "0b6b3c1e-5d7a-4d43-9a51-2f0c7a1e9e02"
BUILD_TYPE = BuildWorkType()
POLICY = RetryPolicy(base_delay=timedelta(seconds=10), multiplier=1.0)


def build_work(claim_timeout: int = 60) -> WorkResource:
    return WorkResource(
        WorkMetadata(
            name="wq-build-1",
            namespace="builds",
            uid=UID,
            generation=1,
            resource_version="1",
            creation_timestamp=format_time(T0),
        ),
        WorkSpec(
            work_type="build",
            templates=[mapping_of(SEED_BUILD), mapping_of(SEED_BUILD_RUN)],
            max_retries=2,
            claim_timeout=claim_timeout,
        ),
    )


class Cluster:
    """The Work's objects by name and kind; applies decisions as the controller does."""

    def __init__(self, work: WorkResource) -> None:
        self.work = work
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def decide(self, now: datetime) -> Decision:
        observed = group_instances(UID, self.objects.values())
        return reconcile(self.work, observed, now, BUILD_TYPE, POLICY)

    def perform(self, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, ApplyInstance):
                for obj in action.objects:
                    key = (obj["kind"], obj["metadata"]["name"])
                    self.objects.setdefault(key, copy.deepcopy(dict(obj)))
            elif isinstance(action, StopInstance):
                for step in action.steps:
                    assert step.patch is not None, "the build type stops by a patch"
                    target = self.objects[(step.kind.kind, step.name)]
                    target["spec"] = {**target["spec"], **step.patch["spec"]}
                    self.patches.append((step.name, dict(step.patch)))
        if decision.status is not None:
            self.work = attrs.evolve(self.work, status=decision.status)

    def set_succeeded(self, name: str, status: str, reason: str, when: datetime) -> None:
        run = self.objects[("BuildRun", name)]
        run["status"] = {
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": status,
                    "reason": reason,
                    "message": reason,
                    "lastTransitionTime": format_time(when),
                }
            ]
        }


def test_a_new_build_work_applies_the_build_and_the_build_run() -> None:
    cluster = Cluster(build_work())
    decision = cluster.decide(T0)
    [apply] = [a for a in decision.actions if isinstance(a, ApplyInstance)]
    assert [(o["kind"], o["metadata"]["name"]) for o in apply.objects] == [
        ("Build", "wq-build-1-0"),
        ("BuildRun", "wq-build-1-0"),
    ]
    assert decision.status is not None
    assert decision.status.phase is WorkPhase.RUNNING
    succeeded = decision.status.condition(CONDITION_TEMPLATE_SUCCEEDED)
    assert succeeded is not None
    assert (succeeded.status, succeeded.reason) == ("Unknown", "BuildRunPending")
    assert decision.requeue_after == timedelta(seconds=60)


def test_a_stuck_build_run_is_cancelled_once_and_waited_for_before_the_retry() -> None:
    cluster = Cluster(build_work(claim_timeout=60))
    cluster.perform(cluster.decide(T0))
    # No progress for claimTimeout: the failure is recorded, then the BuildRun cancelled.
    late = T0 + timedelta(seconds=61)
    decision = cluster.decide(late)
    assert [type(a).__name__ for a in decision.actions] == [
        "WriteStatus",
        "StopInstance",
        "Requeue",
    ]
    stop = decision.actions[1]
    assert isinstance(stop, StopInstance)
    assert [(s.kind, s.name, s.patch) for s in stop.steps] == [
        (BUILD_RUN, "wq-build-1-0", CANCEL_PATCH)
    ]
    cluster.perform(decision)
    assert cluster.work.status.retries == 1
    # Shipwright is cancelling it: the retry is due, but instance 0 still runs.
    cluster.set_succeeded("wq-build-1-0", "Unknown", "BuildRunCanceled", late)
    due = late + timedelta(seconds=11)
    waiting = cluster.decide(due)
    assert not any(isinstance(a, ApplyInstance) for a in waiting.actions)
    assert not any(isinstance(a, StopInstance) for a in waiting.actions)  # patched: not again
    cluster.perform(waiting)
    assert len(cluster.patches) == 1
    # Cancelled: instance 1 is applied.
    cluster.set_succeeded("wq-build-1-0", "False", "BuildRunCanceled", due)
    applied = cluster.decide(due + timedelta(seconds=1))
    [apply] = [a for a in applied.actions if isinstance(a, ApplyInstance)]
    assert apply.index == 1
    assert {o["metadata"]["name"] for o in apply.objects} == {"wq-build-1-1"}


def test_a_work_being_deleted_cancels_its_running_build_run() -> None:
    cluster = Cluster(build_work())
    cluster.perform(cluster.decide(T0))
    cluster.set_succeeded("wq-build-1-0", "Unknown", "Running", T0)
    metadata = attrs.evolve(cluster.work.metadata, deletion_timestamp=format_time(T0))
    cluster.work = attrs.evolve(cluster.work, metadata=metadata)
    decision = cluster.decide(T0 + timedelta(seconds=5))
    [stop] = decision.actions
    assert isinstance(stop, StopInstance)
    assert [(s.name, s.patch) for s in stop.steps] == [("wq-build-1-0", CANCEL_PATCH)]


def test_a_build_run_cancelled_by_someone_else_fails_the_work_permanently() -> None:
    cluster = Cluster(build_work())
    cluster.perform(cluster.decide(T0))
    cluster.objects[("BuildRun", "wq-build-1-0")]["spec"]["state"] = "BuildRunCanceled"
    cluster.set_succeeded("wq-build-1-0", "False", "BuildRunCanceled", T0)
    decision = cluster.decide(T0 + timedelta(seconds=5))
    assert decision.status is not None
    assert (decision.status.phase, decision.status.retries) == (WorkPhase.FAILED, 0)
    retryable = decision.status.condition("Retryable")
    assert retryable is not None and retryable.status == "False"
