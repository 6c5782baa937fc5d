"""Completion callback delivery: post due callbacks and record each attempt on the timeline.

The state rules (when a delivery is due, retried or abandoned) are pure and live in
``workqueue_core.domain.callbacks``; this is the loop the broker's maintenance runs.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from workqueue_core.domain.callbacks import (
    CallbackPolicy,
    CallbackTransportError,
    Outcome,
    callback_headers,
    delivery_attempts,
    outcome_of,
)
from workqueue_core.domain.errors import NotFound, StateConflict
from workqueue_core.domain.models import ExecutionRecord
from workqueue_core.ports.callbacks import CallbackPoster, RecordEncoder
from workqueue_core.ports.clock import Clock
from workqueue_core.ports.store import WorkStore

__all__ = ["deliver_due", "deliver_one"]


async def deliver_one(
    store: WorkStore,
    poster: CallbackPoster,
    clock: Clock,
    policy: CallbackPolicy,
    encode: RecordEncoder,
    record: ExecutionRecord,
) -> Outcome | None:
    """POST one record once and record the outcome; None if the item moved on meanwhile."""
    url = record.item.callback_url
    if url is None:  # pragma: no cover - the store returns only records with a URL
        return None
    attempt = delivery_attempts(await store.events(record.id)) + 1
    status: int | None = None
    error = ""
    try:
        status = await poster.post(
            url, encode(record), callback_headers(record, attempt), policy.timeout
        )
    except CallbackTransportError as failure:
        error = str(failure)
    now = clock.now()
    outcome = outcome_of(record, attempt, status, error, policy, now)
    try:
        await store.record_callback(
            record.id,
            now,
            delivered=outcome.delivered,
            detail=outcome.detail,
            retry_at=outcome.retry_at,
            finished_at=record.finished_at,
        )
    except (StateConflict, NotFound):
        return None  # requeued, pruned or recorded by another broker since it was taken
    return outcome


async def deliver_due(
    store: WorkStore,
    poster: CallbackPoster,
    clock: Clock,
    policy: CallbackPolicy,
    encode: RecordEncoder,
    limit: int = 100,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> int:
    """Post due callbacks once each (up to ``limit``), ``policy.concurrency`` at a time.

    Records are taken (leased) only as many at a time as are posted at once, so a
    slow receiver never keeps a taken record waiting past its lease for a free
    slot. Returns how many attempts were made. Each outcome is recorded on the
    item's timeline and, when ``on_outcome`` is given, reported to it (logs, metrics).
    """

    async def one(record: ExecutionRecord) -> None:
        outcome = await deliver_one(store, poster, clock, policy, encode, record)
        if outcome is not None and on_outcome is not None:
            on_outcome(outcome)

    attempted = 0
    while attempted < limit:
        chunk = min(policy.concurrency, limit - attempted)
        records = await store.callbacks_due(clock.now(), chunk, policy.lease)
        async with anyio.create_task_group() as group:
            for record in records:
                group.start_soon(one, record)
        attempted += len(records)
        if len(records) < chunk:
            break
    return attempted
