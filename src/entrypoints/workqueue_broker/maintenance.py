"""The broker's maintenance: sweep expired leases, prune the log, deliver callbacks.

All three run in the broker process on their own intervals. Each pass works in
batches until a batch comes back short, so its cost follows the number of
expired or prunable rows, not the queue size. A failing pass (the database is
briefly unreachable) is logged and retried at the next interval; it never stops
the broker. Several brokers may run maintenance against one PostgreSQL at once:
the store's sweep and prune are atomic and safe to overlap, and due callbacks are
taken under a lease, so two brokers do not post the same attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import anyio
import attrs
import structlog
from prometheus_client import CollectorRegistry, Counter

from workqueue_core.domain.callbacks import CallbackPolicy, Outcome
from workqueue_core.domain.models import ExecutionRecord, WorkItem
from workqueue_core.ports.callbacks import CallbackPoster, RecordEncoder
from workqueue_core.service.broker import BrokerService
from workqueue_core.service.callbacks import deliver_due

log = structlog.get_logger("workqueue.maintenance")

SweepObserver = Callable[[Sequence[WorkItem | ExecutionRecord]], None]
"""Told what each sweep batch did (the HTTP metrics count expirations, retries, dead letters)."""

SWEEP_BATCH = 1000
PRUNE_BATCH = 10_000
CALLBACK_BATCH = 100
MAX_BATCHES_PER_PASS = 100


@attrs.frozen
class MaintenancePlan:
    """How often to sweep and prune, and how long the log is kept."""

    sweep_interval: float = 5.0
    prune_interval: float = 3600.0
    retention: timedelta = timedelta(days=30)
    callback_interval: float = 2.0


@attrs.frozen
class CallbackDelivery:
    """What callback delivery needs beyond the service: a poster, a policy, the body."""

    poster: CallbackPoster
    encode: RecordEncoder
    policy: CallbackPolicy = attrs.field(factory=CallbackPolicy)


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
        self.callbacks = Counter(
            "workqueue_callback_attempts",
            "Completion callback delivery attempts, by outcome (delivered, failed, abandoned)",
            ["outcome"],
            **kwargs,
        )

    def observe_callback(self, outcome: Outcome) -> None:
        """Count and log one delivery attempt (never its URL: it may hold credentials)."""
        if outcome.delivered:
            kind = "delivered"
        elif outcome.retry_at is None:
            kind = "abandoned"
        else:
            kind = "failed"
        self.callbacks.labels(kind).inc()
        report = log.info if outcome.delivered else log.warning
        report(
            f"callback {kind}",
            work_id=str(outcome.work_id),
            attempt=outcome.attempt,
            detail=outcome.detail,
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


async def deliver_callbacks_once(
    service: BrokerService,
    delivery: CallbackDelivery,
    observe: Callable[[Outcome], None] | None = None,
) -> int:
    """Post every callback due now, a batch at a time; returns how many attempts were made."""
    total = 0
    for _ in range(MAX_BATCHES_PER_PASS):
        made = await deliver_due(
            service.store,
            delivery.poster,
            service.clock,
            delivery.policy,
            delivery.encode,
            CALLBACK_BATCH,
            observe,
        )
        total += made
        if made < CALLBACK_BATCH:
            break
    return total


async def _callback_loop(
    service: BrokerService,
    plan: MaintenancePlan,
    metrics: MaintenanceMetrics,
    delivery: CallbackDelivery,
) -> None:
    while True:
        try:
            await deliver_callbacks_once(service, delivery, metrics.observe_callback)
        except Exception:
            metrics.passes.labels("callbacks", "error").inc()
            log.exception("callback delivery failed; retrying at the next interval")
        else:
            metrics.passes.labels("callbacks", "ok").inc()
        await anyio.sleep(plan.callback_interval)


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
    callbacks: CallbackDelivery | None = None,
) -> None:
    """Sweep, prune and (given ``callbacks``) deliver callbacks forever, until cancelled."""
    async with anyio.create_task_group() as group:
        group.start_soon(_sweep_loop, service, plan, metrics, observe_sweep)
        group.start_soon(_prune_loop, service, plan, metrics)
        if callbacks is not None:
            group.start_soon(_callback_loop, service, plan, metrics, callbacks)
