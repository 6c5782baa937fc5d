"""``ClusterClient``: the Kubernetes API as the controller and the agent use it.

Kept free of any Kubernetes client library: objects are plain JSON mappings, and the
small classes here name resource kinds, list results, watch events and errors. The
``workqueue_kubernetes`` adapter implements it on kubernetes-asyncio.

Optimistic concurrency: ``replace``/``replace_status`` send the object's
``metadata.resourceVersion``, and ``merge_patch``/``patch_status`` send
``resource_version`` when given; a stale version raises ``Conflict``, and the caller
re-reads and decides again (never a blind overwrite).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, Protocol

import attrs

__all__ = [
    "JOBS",
    "LEASES",
    "WORKS",
    "AlreadyExists",
    "Cause",
    "ClusterClient",
    "ClusterError",
    "Conflict",
    "Gone",
    "Invalid",
    "NotFound",
    "ObjectList",
    "Preconditions",
    "PropagationPolicy",
    "ResourceKind",
    "Unavailable",
    "WatchEvent",
    "WatchEventType",
    "object_key",
    "resource_version_of",
]


@attrs.frozen
class ResourceKind:
    """A served resource: ``group`` is ``""`` for the core group (Pods, Events)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` alone for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version


WORKS: Final = ResourceKind("brokkr.io", "v1alpha1", "works", "Work")
JOBS: Final = ResourceKind("batch", "v1", "jobs", "Job")
LEASES: Final = ResourceKind("coordination.k8s.io", "v1", "leases", "Lease")


class PropagationPolicy(enum.Enum):
    """How a delete treats the objects the deleted one owns."""

    BACKGROUND = "Background"
    FOREGROUND = "Foreground"
    ORPHAN = "Orphan"


@attrs.frozen
class Preconditions:
    """A delete happens only if the object still has this uid and/or resourceVersion."""

    uid: str | None = None
    resource_version: str | None = None


@attrs.frozen
class ObjectList:
    """One list answer: the items and the version to watch from."""

    items: tuple[Mapping[str, Any], ...]
    resource_version: str


class WatchEventType(enum.Enum):
    """The watch event types a client sees (``ERROR`` is raised as an exception)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


@attrs.frozen
class WatchEvent:
    """One watch event; a BOOKMARK's object carries only ``metadata.resourceVersion``."""

    type: WatchEventType
    object: Mapping[str, Any]

    @property
    def resource_version(self) -> str:
        return resource_version_of(self.object)


def resource_version_of(obj: Mapping[str, Any]) -> str:
    """``metadata.resourceVersion`` of an object ("" when absent)."""
    metadata = obj.get("metadata") or {}
    return str(metadata.get("resourceVersion") or "")


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object (client-go's key)."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


# --- errors -----------------------------------------------------------------------


@attrs.frozen
class Cause:
    """One invalid field of an ``Invalid`` answer."""

    field: str
    message: str
    reason: str = ""


class ClusterError(Exception):
    """An error answer of the API server (``status`` is the HTTP status, 0 for none)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


class NotFound(ClusterError):
    """404: the object (or the resource) does not exist."""


class AlreadyExists(ClusterError):
    """409 AlreadyExists: a create of a name that is taken."""


class Conflict(ClusterError):
    """409 Conflict: a stale resourceVersion or a failed precondition; re-read and decide."""


class Gone(ClusterError):
    """410: the resourceVersion is too old (HTTP 410, or an ERROR event in a watch)."""


class Invalid(ClusterError):
    """422: the object failed validation; ``causes`` name the fields."""

    def __init__(
        self, message: str, *, status: int = 422, reason: str = "", causes: tuple[Cause, ...] = ()
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        self.causes = causes


class Unavailable(ClusterError):
    """The server could not be reached, or answered 429 or 5xx: retry with backoff."""


# --- the port -----------------------------------------------------------------------


class ClusterClient(Protocol):
    """Kubernetes API operations on any resource kind, with plain JSON objects.

    ``namespace`` defaults to the object's ``metadata.namespace`` where an object is
    given; for namespaced kinds ``None`` in ``list``/``watch`` means all namespaces.
    """

    async def create(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        """Create; ``AlreadyExists`` when the name is taken."""
        ...

    async def get(
        self, kind: ResourceKind, name: str, *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        """Read one object; ``NotFound`` when it does not exist."""
        ...

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        """Every matching object (all pages) and the list's resourceVersion."""
        ...

    async def replace(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        """PUT the whole object (its status is ignored where status is a subresource)."""
        ...

    async def merge_patch(
        self,
        kind: ResourceKind,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Mapping[str, Any]:
        """A JSON merge patch (RFC 7386) of the object; ``None`` values delete fields."""
        ...

    async def delete(
        self,
        kind: ResourceKind,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: PropagationPolicy = PropagationPolicy.BACKGROUND,
        preconditions: Preconditions | None = None,
    ) -> Mapping[str, Any] | None:
        """Delete; returns the object while finalizers hold it, else None."""
        ...

    async def replace_status(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        """PUT to the status subresource: only ``status`` changes."""
        ...

    async def patch_status(
        self,
        kind: ResourceKind,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Mapping[str, Any]:
        """A merge patch of the status subresource (``{"status": {...}}``)."""
        ...

    def watch(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the stream.

        An ERROR event raises (``Gone`` for 410); close the iterator to stop early.
        """
        ...
