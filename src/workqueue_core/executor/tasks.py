"""The worker's handler tasks: one plain asyncio task per claimed item.

A worker starts a task for every item it claims, so the cost of starting one is
paid per item. anyio's ``TaskGroup.start_soon`` costs about twice what an asyncio
task in a cancel scope of its own costs, so the handlers run in such tasks and
``HandlerTasks`` keeps the task group's promises for them itself:

- every task runs in an anyio ``CancelScope``: ``cancel_all()`` cancels them the way
  a task group does, so shielded sections (a report on the way out) finish, and a
  cancellation a task absorbs is delivered again at its next checkpoint;
- ``close()`` cancels what is left and waits for every task, shielded, even through
  a second cancellation of its own task (raised once everything has ended);
- an exception a task raises (a bug: the worker catches every outcome of a handler;
  or a ``BaseException`` such as a test's ``pytest.fail``), and a task cancelled from
  outside before it ran, are logged, call ``on_crash`` and are returned by
  ``close()``; ``KeyboardInterrupt`` and ``SystemExit`` stop the event loop as usual.

A task still gets a copy of the starter's context variables, as a task group's does;
it does not see the deadlines of scopes around the worker (``cancel_all()`` stands
in for them). The worker therefore needs anyio's asyncio backend, the one
workqueue runs on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

__all__ = ["HandlerTasks", "require_asyncio"]

log = logging.getLogger("workqueue.worker")


def require_asyncio() -> None:
    """Raise unless an asyncio event loop runs this task (the worker needs one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("the Worker runs on asyncio only (anyio's asyncio backend)") from None


class HandlerTasks:
    """Starts handler tasks, each in a cancel scope of its own; cancels and awaits them."""

    def __init__(self, on_crash: Callable[[], None]) -> None:
        self._on_crash = on_crash
        self._tasks: dict[
            asyncio.Task[None], tuple[anyio.CancelScope, Coroutine[Any, Any, None]]
        ] = {}
        self._crashes: list[BaseException] = []
        self._cancelled = False

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self,
        coro: Coroutine[Any, Any, None],
        name: str,
        scope: anyio.CancelScope | None = None,
    ) -> None:
        """Run ``coro`` in a task of its own (at once with an eager task factory), in
        ``scope`` (a new one when None), which ``cancel_all()`` cancels; the caller may
        cancel it too, to stop that task alone."""
        if scope is None:
            scope = anyio.CancelScope()
        if self._cancelled:
            scope.cancel()
        task = asyncio.get_running_loop().create_task(self._run(coro, scope), name=name)
        self._tasks[task] = (scope, coro)
        task.add_done_callback(self._ended)

    async def _run(self, coro: Coroutine[Any, Any, None], scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await coro
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise  # not the task's own fault: the loop or its owner is stopping
        except BaseException as error:
            self._crashed(error)

    def _ended(self, task: asyncio.Task[None]) -> None:
        _, coro = self._tasks.pop(task)
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            # created but never started: cancelled from outside before its first step,
            # so none of it ran, not even the report; the worker cannot account for
            # that claim any more
            coro.close()
            self._crashed(RuntimeError(f"task {task.get_name()!r} was cancelled before it ran"))

    def _crashed(self, error: BaseException) -> None:
        log.error("a worker task crashed", exc_info=error)
        self._crashes.append(error)
        self._on_crash()

    def cancel_all(self) -> None:
        """Cancel every task, and every task started from now on."""
        self._cancelled = True
        for scope, _ in self._tasks.values():
            scope.cancel()

    async def close(self) -> list[BaseException]:
        """Cancel the tasks left, wait until every one has ended; return their crashes."""
        self.cancel_all()
        interrupted = False
        with anyio.CancelScope(shield=True):
            while self._tasks:
                try:
                    # each task's own done callback (``_ended``) runs before wait()
                    # returns, so every task waited for has left ``_tasks`` by then
                    await asyncio.wait(list(self._tasks))
                except asyncio.CancelledError:
                    interrupted = True  # a plain task.cancel() passes any shield: wait on
        if interrupted:
            raise asyncio.CancelledError
        crashes, self._crashes = self._crashes, []
        return crashes
