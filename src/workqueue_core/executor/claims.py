"""The claim loop: a worker asks for as much work as it has free slots, until it stops.

Each claim is a long-poll (``claim_wait``) for at most ``min(free slots, batch)``
items; a full worker waits for a slot. An unavailable source is retried with a
doubling pause up to ``error_backoff``; an empty answer the broker did not hold
as a long-poll is followed by a short pause, not a tight loop.

Stopping: ``stop()`` cancels a claim call in flight only when the source declares its
``claim_next`` cancel-safe (``cancel_safe``): a cancelled call then claimed nothing.
Otherwise (an HTTP request cut mid-flight may still have claimed at the broker) the
call is waited for, and whatever it brings back after the stop began is handed to
``give_back``: released at once, never run.
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

__all__ = ["EMPTY_CLAIM_PAUSE", "cancel_safe", "claim_until_stopped"]

log = logging.getLogger("workqueue.worker")

EMPTY_CLAIM_PAUSE = 0.2
"""Seconds a worker waits before claiming again after an empty answer the broker did
not hold as a long-poll (``claim_wait`` 0, or a broker that is shutting down)."""


def cancel_safe(source: WorkSource) -> bool:
    """True when ``source`` has ``claim_cancel_safe = True``: a ``claim_next`` cancelled
    before it returns has claimed nothing (no source over a network can say so)."""
    return getattr(source, "claim_cancel_safe", False) is True


def _stopping(state: WorkerState) -> bool:
    return state.stopping


async def claim_until_stopped(
    source: WorkSource,
    options: WorkerOptions,
    state: WorkerState,
    start: Callable[[Sequence[WorkItem], UUID], None],
    give_back: Callable[[Sequence[WorkItem], UUID], None],
    agent_id: UUID,
    work_types: list[str],
) -> None:
    """Claim work for ``agent_id`` and ``start`` the items of each claim, until
    ``state.stopping``; the items of a claim that returns once stopping began go to
    ``give_back`` instead.

    ``state.claiming`` is cleared (and announced) when the loop ends, however it ends.
    """
    pause = 0.0
    cancellable = cancel_safe(source)
    try:
        while not state.stopping:
            free = options.concurrency - len(state.attempts)
            if free <= 0:
                await state.wait_until(
                    lambda: state.stopping or len(state.attempts) < options.concurrency
                )
                continue
            asked = anyio.current_time()
            items: list[WorkItem] = []
            try:
                with anyio.CancelScope() as scope:
                    if cancellable:
                        state.claim_scope = scope
                    items = await source.claim_next(
                        agent_id, work_types, min(free, options.batch), options.claim_wait
                    )
            except (StoreUnavailable, OSError) as error:
                pause = min(options.error_backoff, max(0.05, pause * 2))
                log.warning("claiming failed (%s); retrying in %.2f s", error, pause)
                with anyio.move_on_after(pause):
                    await state.wait_until(lambda: state.stopping)
                continue
            finally:
                state.claim_scope = None
            if _stopping(state):  # read again (mypy keeps the loop's narrowing across awaits)
                # claimed while the worker stops (the call was in flight, or cancelled but
                # answered anyway): hand it back unrun, so no attempt starts for it
                give_back(items, agent_id)
                break
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
