"""``/healthz``, ``/readyz`` and ``/metrics`` of the controller process: a small ASGI app.

* ``/healthz``: 200 while the process's event loop answers;
* ``/readyz``: 200 once this replica's caches have synced and it reconciles, or while it
  stands by for the Lease as a follower (a follower is ready to take over); 503 before;
* ``/metrics``: Prometheus text: reconciles, errors, conflicts, created instances,
  status writes, queue depth, Works by phase, and whether this replica leads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workqueue_kubernetes.controller import WorkController

__all__ = ["ControllerCollector", "HealthApp", "ReplicaState"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


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


class HealthApp:
    """The ASGI application of the health port."""

    def __init__(self, state: ReplicaState) -> None:
        self._state = state
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(ControllerCollector(state))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if scope.get("method") not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n")
        elif path == "/healthz":
            await _answer(send, 200, b"ok\n")
        elif path == "/readyz":
            ready = self._state.ready
            await _answer(send, 200 if ready else 503, b"ready\n" if ready else b"not ready\n")
        elif path == "/metrics":
            await _answer(
                send,
                200,
                generate_latest(self._registry),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        else:
            await _answer(send, 404, b"not found\n")


async def _answer(
    send: Send, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
