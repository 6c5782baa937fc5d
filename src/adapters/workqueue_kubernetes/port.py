"""The ``ClusterClient`` port and its types, as the adapter's modules import them.

They are defined in ``workqueue_core.ports.cluster`` (the core's port); this module
re-exports them for the adapter's own use.
"""

from workqueue_core.ports.cluster import (
    JOBS,
    LEASES,
    WORKS,
    AlreadyExists,
    Cause,
    ClusterClient,
    ClusterError,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    ObjectList,
    Preconditions,
    PropagationPolicy,
    ResourceKind,
    Unavailable,
    WatchEvent,
    WatchEventType,
    object_key,
    resource_version_of,
)

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
