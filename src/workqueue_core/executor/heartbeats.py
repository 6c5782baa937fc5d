"""Lease heartbeats: one loop keeps every claim of a worker alive.

Each attempt is heartbeated at most every third of its lease (``heartbeat_period``).
The loop sleeps until the earliest due heartbeat, then sends those due (or due
within a tenth of their period) concurrently. A heartbeat the broker refuses
because the claim is gone cancels the attempt (``Attempt.lose``); one refused
because the budget is spent stops it with a retryable failure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from datetime import timedelta
from uuid import UUID

import anyio

from workqueue_core.domain.errors import BudgetSpent, LeaseLost, NotClaimOwner, UnknownWork
from workqueue_core.domain.models import BUDGET_SPENT, Failure
from workqueue_core.executor.state import Attempt
from workqueue_core.ports.agent import WorkSource

__all__ = ["HEARTBEAT_CONCURRENCY", "IDLE_HEARTBEAT_TICK", "Heartbeats", "heartbeat_period"]

log = logging.getLogger("workqueue.worker")

HEARTBEAT_CONCURRENCY = 16
"""Heartbeats a worker sends at once."""

IDLE_HEARTBEAT_TICK = 1.0
"""Longest sleep of the heartbeat loop (seconds)."""


def heartbeat_period(claim_timeout: timedelta, cap: float | None = None) -> float:
    """Seconds between heartbeats of a claim: a third of its lease, or ``cap`` if shorter."""
    third = claim_timeout.total_seconds() / 3
    return third if cap is None else min(cap, third)


class Heartbeats:
    """Heartbeats the attempts of ``attempts`` (the worker's, read live) when due."""

    def __init__(
        self, source: WorkSource, call_timeout: float, attempts: Collection[Attempt]
    ) -> None:
        self._source = source
        self._call_timeout = call_timeout
        self._attempts = attempts
        self._wake: anyio.Event | None = None
        self._wake_at = math.inf

    async def run(self, agent_id: UUID) -> None:
        """Heartbeat every claim in flight when it is due, until cancelled."""
        limiter = anyio.CapacityLimiter(HEARTBEAT_CONCURRENCY)
        async with anyio.create_task_group() as beats:
            while True:
                now = anyio.current_time()
                earliest = now + IDLE_HEARTBEAT_TICK
                for attempt in list(self._attempts):
                    if attempt.beating:
                        continue
                    if attempt.due <= now + attempt.period / 10:
                        attempt.beating = True
                        beats.start_soon(self._beat, attempt, agent_id, limiter)
                    else:
                        earliest = min(earliest, attempt.due)
                self._wake = anyio.Event()
                self._wake_at = earliest
                with anyio.move_on_after(max(0.0, earliest - now)):
                    await self._wake.wait()

    async def _beat(self, attempt: Attempt, agent_id: UUID, limiter: anyio.CapacityLimiter) -> None:
        try:
            async with limiter:
                # A claim is kept alive until its report is answered: a completion
                # waiting behind a slow broker call must not lose its lease meanwhile.
                if attempt.lost is not None:
                    return
                with anyio.move_on_after(self._call_timeout):
                    await self._source.heartbeat(attempt.token, agent_id, attempt.job.local_retries)
        except (LeaseLost, NotClaimOwner, UnknownWork) as error:
            if not attempt.reported:
                attempt.lose(error)
        except BudgetSpent as error:
            attempt.stop(Failure.retryable(BUDGET_SPENT, str(error)))
        except Exception as error:
            log.warning("heartbeat of %s failed: %s", attempt.item.id, error)
        finally:
            attempt.beating = False
            attempt.due = anyio.current_time() + attempt.period
            self.wake_by(attempt.due)

    def wake_by(self, due: float) -> None:
        """Make sure the loop wakes by ``due`` (anyio time): a heartbeat is due then."""
        if due < self._wake_at and self._wake is not None:
            self._wake.set()
