"""Ports: what the core needs from the outside world, as Protocols, split by who uses them.

- ``store``: the stores, by user: ``ClaimStore`` (agents), ``AdminStore`` (producers and
  admins), ``MaintenanceStore``, ``QueryStore``; ``WorkStore`` is all four, ``Store`` adds
  the ``AgentRegistry``.
- ``batch``: ``BatchSubmitStore``, an optional bulk submit a store may offer.
- ``agent``: ``WorkSource``, the broker as an agent sees it (``BrokerService`` in-process,
  ``BrokerClient`` over HTTP).
- ``clock``: ``Clock`` and the id, token and random sources.
- ``notifier``: ``Notifier``, wake-ups for waiting claimers.
- ``callbacks``: ``CallbackPoster``, how completion callbacks leave the process.
- ``work_type``: ``WorkType``, what one kind of Kubernetes work knows.
- ``cluster``: ``ResourceKind`` (and ``ClusterClient``, the Kubernetes API as the
  controller uses it).

Each Protocol is defined once, in its module; this package re-exports them.
"""

from workqueue_core.ports.agent import WorkSource
from workqueue_core.ports.batch import BatchSubmitStore
from workqueue_core.ports.callbacks import CallbackPoster, RecordEncoder
from workqueue_core.ports.clock import Clock, IdSource, RandomSource, TokenSource
from workqueue_core.ports.cluster import ResourceKind
from workqueue_core.ports.notifier import Notifier
from workqueue_core.ports.store import (
    AdminStore,
    AgentRegistry,
    ClaimStore,
    MaintenanceStore,
    QueryStore,
    Store,
    WorkStore,
)
from workqueue_core.ports.work_type import InstanceState, InstanceStatus, Owner, StopStep, WorkType

__all__ = [
    "AdminStore",
    "AgentRegistry",
    "BatchSubmitStore",
    "CallbackPoster",
    "ClaimStore",
    "Clock",
    "IdSource",
    "InstanceState",
    "InstanceStatus",
    "MaintenanceStore",
    "Notifier",
    "Owner",
    "QueryStore",
    "RandomSource",
    "RecordEncoder",
    "ResourceKind",
    "StopStep",
    "Store",
    "TokenSource",
    "WorkSource",
    "WorkStore",
    "WorkType",
]
