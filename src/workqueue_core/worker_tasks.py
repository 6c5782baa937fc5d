"""The worker's handler tasks: one plain asyncio task per claimed item.

A worker starts a task for every item it claims, so the cost of starting one is
paid per item. anyio's ``TaskGroup.start_soon`` costs about three times
``loop.create_task`` (and a third of the executor's client CPU per no-op item), so
the handlers run in plain asyncio tasks and ``HandlerTasks`` keeps the task group's
promises for them itself:

- ``close()`` cancels the tasks still running and waits for them, shielded, so a
  cancelled worker still reports their claims before ``run()`` ends; a task is
  cancelled only once it has started (as anyio does), so its own clean-up runs;
- the first exception a task raises (a bug: the worker catches every outcome of a
  handler) calls ``on_crash`` and is raised again by ``close()``.

Each task still runs its handler in a cancel scope of its own and with a copy of the
context variables, as a task group's task would. The worker therefore needs the
asyncio backend of anyio (it is the only one workqueue runs on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel

__all__ = ["HandlerTasks"]


class HandlerTasks:
    """Starts handler tasks and, on ``close()``, cancels and awaits those left."""

    def __init__(self, on_crash: Callable[[], None]) -> None:
        self._on_crash = on_crash
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` in a task of its own, from the next turn of the event loop."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self._error is None:
            self._error = error
            self._on_crash()

    async def close(self) -> None:
        """Cancel the tasks still running, wait for every one, then raise a task's crash."""
        with anyio.CancelScope(shield=True):
            # every task takes its first step before it is cancelled: a coroutine
            # cancelled before it starts runs none of its body, not even its finally
            await anyio.lowlevel.checkpoint()
            for task in self._tasks:
                if not task.done():
                    task.cancel()
            while self._tasks:
                await asyncio.wait(set(self._tasks))
                await anyio.lowlevel.checkpoint()  # let the done callbacks run
        if self._error is not None:
            error, self._error = self._error, None
            raise error
