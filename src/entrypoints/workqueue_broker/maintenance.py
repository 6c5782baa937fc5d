"""The broker's maintenance: sweep expired leases, prune the execution log.

Both run in the broker process on their own intervals. Each pass works in
batches until a batch comes back short, so its cost follows the number of
expired or prunable rows, not the queue size. A failing pass (the database is
briefly unreachable) is logged and retried at the next interval; it never stops
the broker. Several brokers may run maintenance against one PostgreSQL at once:
the store's sweep and prune are atomic and safe to overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import anyio
import attrs
import structlog
from prometheus_client import CollectorRegistry, Counter

from workqueue_core.models import ExecutionRecord, WorkItem
from workqueue_core.service import BrokerService

log = structlog.get_logger("workqueue.maintenance")

SweepObserver = Callable[[Sequence[WorkItem | ExecutionRecord]], None]
"""Told what each sweep batch did (the HTTP metrics count expirations, retries, dead letters)."""

SWEEP_BATCH = 1000
PRUNE_BATCH = 10_000
MAX_BATCHES_PER_PASS = 100


@attrs.frozen
class MaintenancePlan:
    """How often to sweep and prune, and how long the log is kept."""

    sweep_interval: float = 5.0
    prune_interval: float = 3600.0
    retention: timedelta = timedelta(days=30)


class MaintenanceMetrics:
    """Prometheus counters of the maintenance passes."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        kwargs: dict[str, Any] = {"registry": registry}
        self.passes = Counter(
            "workqueue_maintenance_passes",
            "Maintenance passes run, by task and outcome",
            ["task", "outcome"],
            **kwargs,
        )
        self.swept = Counter(
            "workqueue_maintenance_swept_leases",
            "Expired leases turned into retryable failures by the sweep",
            **kwargs,
        )
        self.pruned = Counter(
            "workqueue_maintenance_pruned_records",
            "Execution-log records deleted after the retention period",
            **kwargs,
        )


async def sweep_once(service: BrokerService, observe: SweepObserver | None = None) -> int:
    """Sweep every expired lease now; returns how many were swept."""
    total = 0
    for _ in range(MAX_BATCHES_PER_PASS):
        swept = await service.sweep(SWEEP_BATCH)
        total += len(swept)
        if observe is not None and swept:
            observe(swept)
        if len(swept) < SWEEP_BATCH:
            break
    return total


async def prune_once(service: BrokerService, retention: timedelta) -> int:
    """Delete log records older than ``retention`` now; returns how many."""
    total = 0
    for _ in range(MAX_BATCHES_PER_PASS):
        pruned = await service.prune(retention, PRUNE_BATCH)
        total += pruned
        if pruned < PRUNE_BATCH:
            break
    return total


async def _sweep_loop(
    service: BrokerService,
    plan: MaintenancePlan,
    metrics: MaintenanceMetrics,
    observe: SweepObserver | None,
) -> None:
    while True:
        try:
            swept = await sweep_once(service, observe)
        except Exception:
            metrics.passes.labels("sweep", "error").inc()
            log.exception("sweep failed; retrying at the next interval")
        else:
            metrics.passes.labels("sweep", "ok").inc()
            metrics.swept.inc(swept)
            if swept:
                log.info("swept expired leases", count=swept)
        await anyio.sleep(plan.sweep_interval)


async def _prune_loop(
    service: BrokerService, plan: MaintenancePlan, metrics: MaintenanceMetrics
) -> None:
    while True:
        try:
            pruned = await prune_once(service, plan.retention)
        except Exception:
            metrics.passes.labels("prune", "error").inc()
            log.exception("prune failed; retrying at the next interval")
        else:
            metrics.passes.labels("prune", "ok").inc()
            metrics.pruned.inc(pruned)
            if pruned:
                log.info(
                    "pruned the execution log",
                    count=pruned,
                    retention_seconds=plan.retention.total_seconds(),
                )
        await anyio.sleep(plan.prune_interval)


async def run_maintenance(
    service: BrokerService,
    plan: MaintenancePlan,
    metrics: MaintenanceMetrics,
    observe_sweep: SweepObserver | None = None,
) -> None:
    """Sweep and prune forever, until cancelled."""
    async with anyio.create_task_group() as group:
        group.start_soon(_sweep_loop, service, plan, metrics, observe_sweep)
        group.start_soon(_prune_loop, service, plan, metrics)
