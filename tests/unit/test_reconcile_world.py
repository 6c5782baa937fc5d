"""A small simulated cluster for the reconcile tests: one Work, its Jobs, and a clock.

``World`` plays the API server (resourceVersion checks on status writes, creates that
answer AlreadyExists, deletes) and the Job controller (tests set a Job's status).
``test_reconcile.py`` and ``test_reconcile_property.py`` drive it; the tests here check
the world itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.work.reconcile import (
    ApplyInstance,
    Decision,
    Requeue,
    StopInstance,
    WriteStatus,
    format_time,
    owner_of,
    reconcile,
)
from workqueue_core.work.reconcile_labels import group_instances, instance_index
from workqueue_core.work.resource import WorkMetadata, WorkResource, WorkSpec
from workqueue_kubernetes.job import JobWorkType

T0 = datetime(2030, 1, 1, tzinfo=UTC)
UID = "0b6b3c1e-5d7a-4d43-9a51-2f0c7a1e9e01"
NAMESPACE = "builds"
JOB_TYPE = JobWorkType()


def job_template(image: str = "busybox:1.36", **spec: Any) -> dict[str, Any]:
    """A valid batch/v1 Job template."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello", "labels": {"app": "hello"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": image, "command": ["true"]}],
                }
            },
            **spec,
        },
    }


def make_work(
    *,
    name: str = "wq-hello-1",
    max_retries: int = 2,
    claim_timeout: int = 3600,
    template: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> WorkResource:
    """A Work as the API server returns it right after its create."""
    return WorkResource(
        WorkMetadata(
            name=name,
            namespace=NAMESPACE,
            uid=UID,
            generation=1,
            resource_version="1",
            labels={"workqueue.dev/work-id": "w-1"},
            annotations=annotations,
            creation_timestamp=format_time(T0),
        ),
        WorkSpec(
            work_type="job",
            templates=template or job_template(),
            max_retries=max_retries,
            claim_timeout=claim_timeout,
        ),
    )


class Conflict(Exception):
    """A status write sent a stale resourceVersion."""


@dataclass
class World:
    """The truth of the simulated cluster."""

    work: WorkResource
    now: datetime = T0
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[tuple[int, datetime, int]] = field(default_factory=list)
    """Every Job created: (instance index, time, the Work's maxRetries then)."""
    requests: int = 0
    _rv: int = 1

    # --- the API server ----------------------------------------------------------

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def observe(self, hidden: frozenset[str] = frozenset()) -> dict[int, list[dict[str, Any]]]:
        """The Work's instance objects, by index (``hidden`` names left out: cache lag)."""
        visible = [copy.deepcopy(j) for n, j in self.jobs.items() if n not in hidden]
        grouped = group_instances(UID, visible)
        return {index: list(objects) for index, objects in grouped.items()}

    def create(self, obj: Mapping[str, Any]) -> bool:
        """Create an object; False when the name exists (AlreadyExists)."""
        self.requests += 1
        name = obj["metadata"]["name"]
        if name in self.jobs:
            return False
        stored = copy.deepcopy(dict(obj))
        stored["metadata"]["uid"] = f"job-uid-{len(self.created)}"
        stored["metadata"]["creationTimestamp"] = format_time(self.now)
        stored["metadata"]["resourceVersion"] = self._bump()
        self.jobs[name] = stored
        index = instance_index(stored)
        assert index is not None
        self.created.append((index, self.now, self.work.spec.max_retries))
        return True

    def delete(self, name: str, *, linger: bool = False) -> None:
        """Delete a Job (``linger``: it stays a while with a deletionTimestamp)."""
        self.requests += 1
        job = self.jobs.get(name)
        if job is None:
            return
        if linger:
            job["metadata"]["deletionTimestamp"] = format_time(self.now)
        else:
            del self.jobs[name]

    def collect_garbage(self) -> None:
        """Objects with a deletionTimestamp go away."""
        for name in [n for n, j in self.jobs.items() if "deletionTimestamp" in j["metadata"]]:
            del self.jobs[name]

    def write_status(self, action: WriteStatus) -> None:
        self.requests += 1
        if action.resource_version != self.work.metadata.resource_version:
            raise Conflict
        metadata = attrs.evolve(self.work.metadata, resource_version=self._bump())
        self.work = attrs.evolve(self.work, metadata=metadata, status=action.status)

    def change_spec(self, **changes: Any) -> None:
        """A spec update: generation + 1."""
        spec = attrs.evolve(self.work.spec, **changes)
        generation = (self.work.metadata.generation or 0) + 1
        metadata = attrs.evolve(
            self.work.metadata, generation=generation, resource_version=self._bump()
        )
        self.work = attrs.evolve(self.work, metadata=metadata, spec=spec)

    def touch(self) -> None:
        """Someone else updates the Work (a label): its resourceVersion moves."""
        metadata = attrs.evolve(self.work.metadata, resource_version=self._bump())
        self.work = attrs.evolve(self.work, metadata=metadata)

    def delete_work(self) -> None:
        """The Work is deleted but held by a finalizer: deletionTimestamp set."""
        metadata = attrs.evolve(
            self.work.metadata,
            deletion_timestamp=format_time(self.now),
            resource_version=self._bump(),
        )
        self.work = attrs.evolve(self.work, metadata=metadata)

    # --- the Job controller ------------------------------------------------------

    def set_job_status(
        self, index: int, status: Mapping[str, Any], *, ago: timedelta | None = None
    ) -> bool:
        """Set a Job's status as its controller would; a finished Job stays finished
        (False then).  With ``ago``, conditions without a ``lastTransitionTime`` get
        ``now - ago`` (the Job controller stamps them; ``ago`` > 0: a transition seen
        late); without, they stay without (an older object)."""
        job = self.job(index)
        assert job is not None, f"no Job of instance {index}"
        if JOB_TYPE.observe([job]).state.value in ("Succeeded", "Failed"):
            return False
        job["status"] = copy.deepcopy(dict(status))
        if ago is not None:
            for condition in job["status"].get("conditions", ()):
                condition.setdefault("lastTransitionTime", format_time(self.now - ago))
        return True

    def job(self, index: int) -> dict[str, Any] | None:
        return next(
            (j for j in self.jobs.values() if instance_index(j) == index),
            None,
        )

    def live_instances(self) -> list[int]:
        """Instances whose Job may still run pods."""
        live = []
        for job in self.jobs.values():
            if "deletionTimestamp" in job["metadata"]:
                continue
            state = JOB_TYPE.observe([job]).state.value
            if state in ("Pending", "Running"):
                index = instance_index(job)
                assert index is not None
                live.append(index)
        return live

    # --- the controller ----------------------------------------------------------

    def decide(self, policy: RetryPolicy, hidden: frozenset[str] = frozenset()) -> Decision:
        return reconcile(self.work, self.observe(hidden), self.now, JOB_TYPE, policy)

    def perform(
        self, decision: Decision, *, limit: int | None = None, linger: bool = False
    ) -> bool:
        """Perform the decision's actions in order, at most ``limit`` of them; False if it
        stopped early (the limit, or a conflict)."""
        for count, action in enumerate(decision.actions):
            if limit is not None and count >= limit:
                return False
            if isinstance(action, ApplyInstance):
                for obj in action.objects:
                    self.create(obj)
            elif isinstance(action, StopInstance):
                for step in action.steps:
                    assert step.patch is None and step.propagation == "Background"
                    self.delete(step.name, linger=linger)
            elif isinstance(action, WriteStatus):
                try:
                    self.write_status(action)
                except Conflict:
                    return False
            else:
                assert isinstance(action, Requeue)
        return True

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def completed(reason: str = "CompletionsReached") -> dict[str, Any]:
    """A Job status with Complete (and SuccessCriteriaMet) True."""
    return {
        "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": reason},
            {"type": "Complete", "status": "True", "reason": reason},
        ],
    }


def failed(reason: str = "BackoffLimitExceeded", message: str = "") -> dict[str, Any]:
    """A Job status with Failed True for ``reason``."""
    condition = {"type": "Failed", "status": "True", "reason": reason}
    if message:
        condition["message"] = message
    return {"failed": 1, "conditions": [condition]}


RUNNING: dict[str, Any] = {"active": 1, "ready": 1}


# --- the world itself ------------------------------------------------------------------


def test_a_create_of_an_existing_name_changes_nothing() -> None:
    world = World(make_work())
    job = JOB_TYPE.instance_objects(owner_of(world.work), world.work.spec.templates, 0)[0]
    assert world.create(job) is True
    assert world.create(job) is False
    assert [index for index, _, _ in world.created] == [0]
    assert list(world.observe()) == [0]


def test_a_finished_job_stays_finished() -> None:
    world = World(make_work())
    job = JOB_TYPE.instance_objects(owner_of(world.work), world.work.spec.templates, 0)[0]
    world.create(job)
    assert world.set_job_status(0, RUNNING) is True
    assert world.set_job_status(0, failed()) is True
    assert world.set_job_status(0, RUNNING) is False
    assert world.live_instances() == []


def test_a_job_status_set_with_ago_has_its_transition_times_in_the_past() -> None:
    world = World(make_work())
    job = JOB_TYPE.instance_objects(owner_of(world.work), world.work.spec.templates, 0)[0]
    world.create(job)
    world.advance(timedelta(hours=1))
    assert world.set_job_status(0, failed(), ago=timedelta(minutes=5)) is True
    stored = world.job(0)
    assert stored is not None
    [condition] = stored["status"]["conditions"]
    assert condition["lastTransitionTime"] == "2030-01-01T00:55:00Z"
    assert JOB_TYPE.observe([stored]).finished_at == T0 + timedelta(minutes=55)


def test_a_stale_status_write_is_a_conflict() -> None:
    world = World(make_work())
    decision = world.decide(RetryPolicy())
    world.touch()
    assert world.perform(decision) is False
    assert world.work.status.phase.value == "Pending"
    with pytest.raises(Conflict):
        world.write_status(WriteStatus(world.work.status, "1"))
