"""``/healthz``, ``/readyz`` and ``/metrics`` of the controller process (served by
``workqueue_broker.probes``).

* ``/healthz``: 200 while the process's event loop answers;
* ``/readyz``: 200 once this replica's caches have synced and it reconciles, or while it
  stands by for the Lease as a follower (a follower is ready to take over); 503 before;
* ``/metrics``: Prometheus text: reconciles, errors, conflicts, created instances,
  status writes, queue depth, Works by phase, and whether this replica leads.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workqueue_broker.probes import HealthApp
from workqueue_kubernetes.controller import WorkController

__all__ = ["ControllerCollector", "ReplicaState", "controller_health_app"]


@attrs.define
class ReplicaState:
    """What the health endpoints report: the controller, and the replica's role."""

    controller: WorkController
    leader_election: bool = False
    leading: bool = False

    @property
    def ready(self) -> bool:
        if self.leader_election and not self.leading:
            return True  # a follower stands by; its caches start when it leads
        return self.controller.ready


class ControllerCollector(Collector):
    """Reads the controller's counts when Prometheus scrapes."""

    def __init__(self, state: ReplicaState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        controller = self._state.controller
        stats = controller.stats
        counters = (
            ("reconciles", "Reconciles run.", stats.reconciles),
            ("reconcile_errors", "Reconciles that failed and were retried.", stats.errors),
            ("conflicts", "Writes refused with 409 Conflict (stale cache).", stats.conflicts),
            ("instances_created", "Instance objects created.", stats.created),
            ("status_writes", "Work status writes stored.", stats.status_writes),
            (
                "status_writes_held",
                "Progress statuses held back to be written later or replaced.",
                stats.status_writes_held,
            ),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(f"workqueue_controller_{name}", doc, value=value)
        outcomes = CounterMetricFamily(
            "workqueue_controller_outcomes", "Works driven to a terminal phase.", labels=["phase"]
        )
        for phase, count in sorted(stats.outcomes.items()):
            outcomes.add_metric([phase], count)
        yield outcomes
        yield GaugeMetricFamily(
            "workqueue_controller_queue_depth",
            "Work keys waiting to be reconciled now.",
            value=len(controller.queue),
        )
        yield GaugeMetricFamily(
            "workqueue_controller_queue_delayed",
            "Work keys waiting for a delay (retry backoff, timeout check).",
            value=controller.queue.delayed,
        )
        phases = GaugeMetricFamily(
            "workqueue_controller_works", "Works in the cache by phase.", labels=["phase"]
        )
        for phase, count in sorted(controller.phase_counts().items()):
            phases.add_metric([phase], count)
        yield phases
        leading = self._state.leading or not self._state.leader_election
        yield GaugeMetricFamily(
            "workqueue_controller_leader", "1 while this replica reconciles.", value=int(leading)
        )


def controller_health_app(state: ReplicaState) -> HealthApp:
    """The health app of the controller: its readiness, and its counts as ``/metrics``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ControllerCollector(state))
    return HealthApp(lambda: state.ready, registry)
