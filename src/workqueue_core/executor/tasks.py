"""The worker's handler tasks: plain asyncio tasks, one per claimed item that suspends.

A worker runs every item it claims in a task of its own as far as anyone can tell,
so the cost of starting one is paid per item. anyio's ``TaskGroup.start_soon``
costs about twice what an asyncio task in a cancel scope of its own costs, so the
handlers run in such tasks and ``HandlerTasks`` keeps the task group's promises for
them itself. A claim's items start together (``start_many``): one task runs them in
turn, each in its own cancel scope and its own copy of the starter's context, for as
long as each ends without suspending (a handler that does not wait for anything);
when one suspends, that task carries on with it alone and every item after it gets a
task of its own at once. Only a coroutine that never suspended shares a task, so
everything bound to a task (a cancel scope, ``asyncio.timeout``, a task group)
stays in the task it was entered in. The promises:

- every coroutine runs in an anyio ``CancelScope``: ``cancel_all()`` cancels them the way
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
import contextvars
import inspect
import logging
import types
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import Any, TypeAlias

import anyio

__all__ = ["Entry", "HandlerTasks", "require_asyncio"]

log = logging.getLogger("workqueue.worker")

Entry: TypeAlias = tuple[Coroutine[Any, Any, None], anyio.CancelScope, str]
"""A coroutine to run, the cancel scope to run it in, and the name of its task."""


def require_asyncio() -> None:
    """Raise unless an asyncio event loop runs this task (the worker needs one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("the Worker runs on asyncio only (anyio's asyncio backend)") from None


class HandlerTasks:
    """Starts handler coroutines, each in a cancel scope of its own; cancels and awaits them."""

    def __init__(self, on_crash: Callable[[], None]) -> None:
        self._on_crash = on_crash
        # each task, the entries it was started with, and its own coroutine
        self._tasks: dict[
            asyncio.Task[None], tuple[Sequence[Entry], Coroutine[Any, Any, None]]
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
        """Run ``coro`` in a task of its own, in ``scope`` (a new one when None), which
        ``cancel_all()`` cancels; the caller may cancel it too, to stop that task alone."""
        self.start_many([(coro, scope if scope is not None else anyio.CancelScope(), name)])

    def start_many(self, entries: Sequence[Entry]) -> None:
        """Run each coroutine of ``entries`` in its scope, as if each had a task of its own.

        One task runs them in turn while each ends without suspending; the first that
        suspends keeps that task, and each entry after it gets a task of its own then.
        """
        if not entries:
            return
        if self._cancelled:
            for _, scope, _ in entries:
                scope.cancel()
        self._spawn(entries)

    def _spawn(self, entries: Sequence[Entry]) -> None:
        runner = self._run(entries)
        task = asyncio.get_running_loop().create_task(runner, name=entries[0][2])
        self._tasks[task] = (entries, runner)
        task.add_done_callback(self._ended)

    async def _run(self, entries: Sequence[Entry]) -> None:
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        handed_on = len(entries)  # entries from here on are (or will be) other tasks' own
        index = 0
        try:
            while index < handed_on:
                if task.cancelling() != cancelling:
                    # an entry cancelled its own task (task.cancel()) and ended: a task
                    # of its own would end cancelled, so this one does, and the entries
                    # left get their own (in ``finally``) rather than that cancellation
                    break
                coro, scope, _ = entries[index]
                index += 1
                context = contextvars.copy_context()  # as a task of its own would get
                try:
                    with scope:
                        try:
                            step = context.run(coro.send, None)
                        except StopIteration:
                            continue  # ended without suspending: on to the next entry
                        # it suspended: it keeps this task; the entries after it get their own
                        for rest in entries[index:handed_on]:
                            self._spawn([rest])
                        handed_on = index
                        self._keep_only(entries[index - 1])
                        await _resumed(coro, step, context)
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise  # not the task's own fault: the loop or its owner is stopping
                except BaseException as error:
                    self._crashed(error)
        finally:
            # only reached with entries left when one raised, or cancelled this task,
            # before suspending
            for rest in entries[index:handed_on]:
                self._spawn([rest])

    def _keep_only(self, entry: Entry) -> None:
        """The running task now runs ``entry`` alone: forget the entries that ended in it."""
        task = asyncio.current_task()
        if task in self._tasks:
            self._tasks[task] = ((entry,), self._tasks[task][1])

    def _ended(self, task: asyncio.Task[None]) -> None:
        entries, runner = self._tasks.pop(task)
        if inspect.getcoroutinestate(entries[0][0]) == inspect.CORO_CREATED:
            # the task's first step starts its first entry: it was cancelled from outside
            # before that step, so none of its entries ran, not even their reports; the
            # worker cannot account for those claims any more
            runner.close()
            for coro, _, _ in entries:
                coro.close()
                self._crashed(RuntimeError(f"task {task.get_name()!r} was cancelled before it ran"))

    def _crashed(self, error: BaseException) -> None:
        log.error("a worker task crashed", exc_info=error)
        self._crashes.append(error)
        self._on_crash()

    def cancel_all(self) -> None:
        """Cancel every task, and every task started from now on."""
        self._cancelled = True
        for entries, _ in list(self._tasks.values()):
            for _, scope, _ in entries:
                scope.cancel()  # an entry that has ended already is not affected

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


@types.coroutine
def _resumed(
    coro: Coroutine[Any, Any, None], step: Any, context: contextvars.Context
) -> Generator[Any, Any, None]:
    """Carry on running ``coro``, which suspended on ``step``, in ``context``: what its
    task would do. The task waits on what ``coro`` waits on, and passes its wake-ups and
    cancellations on."""
    while True:
        try:
            sent = yield step
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as error:
            try:
                step = context.run(coro.throw, error)
            except StopIteration:
                return
        else:
            try:
                step = context.run(coro.send, sent)
            except StopIteration:
                return
