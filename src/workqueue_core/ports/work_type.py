"""``WorkType``: what one kind of Kubernetes work knows, implemented in its adapter.

The core keeps the generic parts (the ``Work`` resource, generic template checks, the
reconcile decision); a work type adds what only it knows: how its templates must look,
which objects make up instance *n*, how their status reads as an outcome, and how to
cancel them. ``workqueue_kubernetes`` implements ``job`` (a batch/v1 Job) and
``workqueue_shipwright`` implements ``build`` (a Shipwright Build and BuildRun); the
composition roots (broker, agent, controller) register them in a
``workqueue_core.work.registry.WorkTypes``.

Objects are plain JSON mappings, as the Kubernetes API reads and writes them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs

from workqueue_core.domain.models import Failure
from workqueue_core.ports.cluster import ResourceKind

__all__ = ["InstanceState", "InstanceStatus", "Owner", "StopStep", "WorkType"]


@attrs.frozen
class Owner:
    """The ``Work`` that owns the objects of an instance (their ``ownerReference``)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str] = attrs.field(factory=dict)


class InstanceState(enum.Enum):
    """Where one instance of a Work's template stands."""

    PENDING = "Pending"
    """Created, not yet running (or not yet seen by its controller)."""
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@attrs.frozen
class InstanceStatus:
    """An instance's status as its work type reads it.

    ``failure`` is set exactly when ``state`` is FAILED: its class decides whether the
    Work retries. ``results`` are what a succeeded instance produced (an image digest, a
    commit), written to the Work's ``status.results``.

    ``finished_at`` is when a finished instance (SUCCEEDED or FAILED) finished, as its
    objects record it (for a Job, its terminal condition's ``lastTransitionTime``):
    timezone-aware, and None while it runs or when the objects do not say (older objects,
    a work type that cannot tell).  A retry's backoff counts from it; without it, from
    the decision that sees the failure.
    """

    state: InstanceState
    reason: str = ""
    message: str = ""
    failure: Failure | None = None
    results: Mapping[str, str] = attrs.field(factory=dict)
    finished_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        if (self.failure is not None) != (self.state is InstanceState.FAILED):
            raise ValueError("an instance has a failure exactly when it failed")
        if self.finished_at is None:
            return
        if self.state not in (InstanceState.SUCCEEDED, InstanceState.FAILED):
            raise ValueError("only a finished instance has a finish time")
        if self.finished_at.tzinfo is None or self.finished_at.utcoffset() is None:
            raise ValueError("an instance's finish time must be timezone-aware")


@attrs.frozen
class StopStep:
    """One API call that stops a running instance: a patch of an object, or its deletion.

    ``patch`` None deletes the object with ``propagation`` (``Background`` by default).
    """

    kind: ResourceKind
    name: str
    patch: Mapping[str, Any] | None = None
    propagation: str = "Background"


class WorkType(Protocol):
    """One kind of Kubernetes work (``job``, ``build``)."""

    @property
    def name(self) -> str:
        """The work type's name: ``spec.workType`` of its Works and the items' work type."""
        ...

    @property
    def kinds(self) -> Sequence[ResourceKind]:
        """The resource kinds an instance is made of (the controller watches them)."""
        ...

    def validate(self, templates: Sequence[Mapping[str, Any]]) -> None:
        """Check the Work's templates (after the generic checks) against the real upstream
        schemas and the type's own rules; raise ``SpecError`` naming the path
        (``[1].spec.output.image``: ``[i]`` is the template's index)."""
        ...

    def instance_objects(
        self, owner: Owner, templates: Sequence[Mapping[str, Any]], index: int
    ) -> list[dict[str, Any]]:
        """The objects of instance ``index`` (0 for the first run, 1 for the first retry …):
        named deterministically from the owner and ``index``, each with a controller
        ``ownerReference`` to ``owner`` and the owner's labels."""
        ...

    def observe(self, objects: Sequence[Mapping[str, Any]]) -> InstanceStatus:
        """Read the observed objects of one instance (as ``instance_objects`` named them;
        some may be missing) into a status."""
        ...

    def stop(self, objects: Sequence[Mapping[str, Any]]) -> list[StopStep]:
        """The calls that stop the instance (cancel, or the Work deleted)."""
        ...
