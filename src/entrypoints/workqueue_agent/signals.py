"""Signals for a worker process: the first SIGTERM/SIGINT drains, a second stops at once."""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from uuid import UUID

import anyio
from anyio.abc import TaskStatus

from workqueue_core.executor.worker import Worker

__all__ = ["run_until_signalled"]

log = logging.getLogger("workqueue.worker")


async def run_until_signalled(
    worker: Worker,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    *,
    task_status: TaskStatus[UUID] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``worker`` in a process: the first signal stops it gracefully, a second at once.

    For the entrypoint of a worker process (it installs signal handlers, so it
    must run in the main thread). With ``task_group.start`` it returns the agent
    id once the signal handlers are in place and the worker is claiming.
    """
    async with anyio.create_task_group() as tg:

        async def watch(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            with anyio.open_signal_receiver(*signals) as received:
                task_status.started()
                async for signum in received:
                    if worker.stopping:
                        log.warning("signal %s again: stopping at once", signum)
                        tg.cancel_scope.cancel()
                        return
                    log.info("signal %s: stopping gracefully", signum)
                    worker.stop()

        async def run(*, task_status: TaskStatus[UUID] = anyio.TASK_STATUS_IGNORED) -> None:
            try:
                await worker.run(task_status=task_status)
            finally:
                tg.cancel_scope.cancel()

        await tg.start(watch)
        agent_id = await tg.start(run)
        task_status.started(agent_id)
