"""Kubernetes adapter: the ``ClusterClient`` port on kubernetes-asyncio, and an informer.

* ``port``: the ``ClusterClient`` Protocol, ``ResourceKind``, list/watch results, errors;
* ``client``: ``KubernetesClusterClient``, ``load_configuration``, ``open_cluster_client``;
* ``informer``: ``Informer`` (list + watch cache) and owner-reference helpers.
"""

from workqueue_kubernetes.client import (
    KubernetesClusterClient,
    error_from_status,
    load_configuration,
    open_cluster_client,
)
from workqueue_kubernetes.informer import (
    Backoff,
    CacheEvent,
    CacheEventType,
    Handler,
    Informer,
    controller_owner_key,
    owner_keys,
)
from workqueue_kubernetes.port import (
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
    "Backoff",
    "CacheEvent",
    "CacheEventType",
    "Cause",
    "ClusterClient",
    "ClusterError",
    "Conflict",
    "Gone",
    "Handler",
    "Informer",
    "Invalid",
    "KubernetesClusterClient",
    "NotFound",
    "ObjectList",
    "Preconditions",
    "PropagationPolicy",
    "ResourceKind",
    "Unavailable",
    "WatchEvent",
    "WatchEventType",
    "controller_owner_key",
    "error_from_status",
    "load_configuration",
    "object_key",
    "open_cluster_client",
    "owner_keys",
    "resource_version_of",
]
