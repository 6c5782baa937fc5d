"""Prometheus metrics of the broker API.

Queue depth and log sizes are read from ``BrokerService.stats()`` at scrape time;
claims, retries and dead letters are counted as the API serves them; lease
expirations, retries and dead letters of the maintenance sweep are counted when
the broker's maintenance loop hands its results to ``observe_sweep``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from workqueue_core.domain.models import (
    LEASE_EXPIRED,
    QUEUE_STATES,
    ExecutionRecord,
    Stats,
    WorkItem,
    WorkStatus,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class BrokerMetrics:
    """The broker's metrics, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "workqueue_queue_depth",
            "Items in the queue, by work type and state (HELD, PENDING, CLAIMED).",
            ["work_type", "status"],
            registry=r,
        )
        self.log_records = Gauge(
            "workqueue_log_records",
            "Records in the execution log, by work type and final state.",
            ["work_type", "status"],
            registry=r,
        )
        self.claims = Counter(
            "workqueue_claims", "Items claimed through the API.", ["work_type"], registry=r
        )
        self.completions = Counter(
            "workqueue_completions", "Items completed through the API.", ["work_type"], registry=r
        )
        self.retries = Counter(
            "workqueue_retries",
            "Failed attempts sent back to PENDING for a retry.",
            ["work_type"],
            registry=r,
        )
        self.dead_letters = Counter(
            "workqueue_dead_letters",
            "Items that ended FAILED (permanent failure or budget spent).",
            ["work_type"],
            registry=r,
        )
        self.lease_expirations = Counter(
            "workqueue_lease_expirations",
            "Claims whose lease expired (reported by the maintenance sweep).",
            ["work_type"],
            registry=r,
        )
        self.request_latency = Histogram(
            "workqueue_http_request_duration_seconds",
            "HTTP request latency, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def observe_claims(self, items: Iterable[WorkItem]) -> None:
        """Count items a claim took."""
        for item in items:
            self.claims.labels(item.work_type).inc()

    def observe_completions(self, records: Iterable[ExecutionRecord]) -> None:
        """Count completed items."""
        for record in records:
            self.completions.labels(record.item.work_type).inc()

    def observe_failure(self, outcome: WorkItem | ExecutionRecord) -> None:
        """Count the outcome of a failed attempt: a retry or a dead letter."""
        if isinstance(outcome, ExecutionRecord):
            if outcome.status is WorkStatus.FAILED:
                self.dead_letters.labels(outcome.item.work_type).inc()
        else:
            self.retries.labels(outcome.work_type).inc()

    def observe_sweep(self, outcomes: Sequence[WorkItem | ExecutionRecord]) -> None:
        """Count what a maintenance sweep did: expirations, and their retries or dead letters."""
        for outcome in outcomes:
            item = outcome.item if isinstance(outcome, ExecutionRecord) else outcome
            if item.last_error is not None and item.last_error.reason == LEASE_EXPIRED:
                self.lease_expirations.labels(item.work_type).inc()
            self.observe_failure(outcome)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one served request."""
        self.request_latency.labels(method, route, str(status)).observe(seconds)

    def set_stats(self, stats: Stats) -> None:
        """Replace the depth gauges with the counts of ``stats``."""
        self.queue_depth.clear()
        self.log_records.clear()
        for (work_type, status), count in stats.counts.items():
            gauge = self.queue_depth if status in QUEUE_STATES else self.log_records
            gauge.labels(work_type, status.value).set(count)

    def render(self) -> bytes:
        """The text exposition format of every metric in the registry."""
        return generate_latest(self.registry)
