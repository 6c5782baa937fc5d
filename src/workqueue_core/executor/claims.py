"""The claim loop: a worker asks for as much work as it has free slots, until it stops.

Each claim is a long-poll (``claim_wait``) for at most ``min(free slots, batch)``
items; a full worker waits for a slot. An unavailable source is retried with a
doubling pause up to ``error_backoff``; an empty answer the broker did not hold
as a long-poll is followed by a short pause, not a tight loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from uuid import UUID

import anyio

from workqueue_core.domain.errors import StoreUnavailable
from workqueue_core.domain.models import WorkItem
from workqueue_core.executor.options import WorkerOptions
from workqueue_core.executor.state import WorkerState
from workqueue_core.ports.agent import WorkSource

__all__ = ["EMPTY_CLAIM_PAUSE", "claim_until_stopped"]

log = logging.getLogger("workqueue.worker")

EMPTY_CLAIM_PAUSE = 0.2
"""Seconds a worker waits before claiming again after an empty answer the broker did
not hold as a long-poll (``claim_wait`` 0, or a broker that is shutting down)."""


async def claim_until_stopped(
    source: WorkSource,
    options: WorkerOptions,
    state: WorkerState,
    start: Callable[[Sequence[WorkItem], UUID], None],
    agent_id: UUID,
    work_types: list[str],
) -> None:
    """Claim work for ``agent_id`` and ``start`` the items of each claim, until
    ``state.stopping``.

    ``state.claiming`` is cleared (and announced) when the loop ends, however it ends.
    """
    pause = 0.0
    try:
        while not state.stopping:
            free = options.concurrency - len(state.attempts)
            if free <= 0:
                await state.wait_until(
                    lambda: state.stopping or len(state.attempts) < options.concurrency
                )
                continue
            asked = anyio.current_time()
            try:
                items = await source.claim_next(
                    agent_id, work_types, min(free, options.batch), options.claim_wait
                )
            except (StoreUnavailable, OSError) as error:
                pause = min(options.error_backoff, max(0.05, pause * 2))
                log.warning("claiming failed (%s); retrying in %.2f s", error, pause)
                with anyio.move_on_after(pause):
                    await state.wait_until(lambda: state.stopping)
                continue
            pause = 0.0
            start(items, agent_id)
            quick = anyio.current_time() - asked < options.claim_wait / 2
            if not items and (options.claim_wait == 0 or quick):
                # Nothing, and the broker did not hold the claim (no long-poll asked,
                # or a broker shutting down): do not ask again in a tight loop.
                with anyio.move_on_after(EMPTY_CLAIM_PAUSE):
                    await state.wait_until(lambda: state.stopping)
    finally:
        state.claiming = False
        state.notify()
