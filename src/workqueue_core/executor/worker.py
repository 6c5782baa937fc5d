"""The in-process executor: a ``Worker`` runs claimed work with Python handlers (DESIGN §9).

A worker talks to a ``WorkSource``: the agent side of the broker. ``BrokerService``
over any store satisfies it, and so does the HTTP broker client, so the same
worker runs against a store in the process or a broker across the network.

One worker::

    worker = Worker(broker, name="resizer-1", labels={"pool": "images"})

    @worker.handler("resize", timeout=60)
    async def resize(job: Job) -> str | None:
        ...
        return "done"            # the log record's result

    await worker.run()           # until worker.stop() or cancellation

It registers itself as an agent (or uses ``agent_id``), claims in batches sized by
its free concurrency slots with a long-poll ``wait``, heartbeats every claim at
most every third of its lease, bounds each attempt by a timeout, cancels a handler
whose claim is lost or cancelled (the broker's state then stands), and reports
each outcome: the return value as the result, ``PermanentError`` /
``RetryableError`` by their class, other exceptions through ``classify``. The
store's ``fail`` applies the item's single retry budget and backoff.

How an attempt runs is the worker's ``Runner`` (``executor.runner``): by default a
``HandlerRunner`` over the worker's handlers; ``workqueue agent`` passes its local
process runner instead.

``stop()`` is graceful: no new claims, running handlers get ``grace_period``
seconds to finish, the rest are cancelled and **released** (``WorkSource.release``):
PENDING again at once, the interrupted run not charged to the item's budget.
Cancelling ``run()`` stops at once: handlers are cancelled and their claims released
in a shielded scope, so nothing stays claimed by a worker that left (a process that
dies without cleanup leaves its claims to the sweep, which charges them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from uuid import UUID

import anyio
from anyio.abc import TaskStatus

from workqueue_core.domain.errors import InvalidInput
from workqueue_core.domain.models import WorkItem
from workqueue_core.executor.claims import claim_until_stopped
from workqueue_core.executor.execution import Execution
from workqueue_core.executor.handlers import (
    INVALID_RESULT,
    Classifier,
    Handler,
    Handlers,
    Job,
    PermanentError,
    RetryableError,
    default_classify,
)
from workqueue_core.executor.heartbeats import Heartbeats, heartbeat_period
from workqueue_core.executor.options import WorkerOptions, WorkerStats
from workqueue_core.executor.outcomes import Outcomes
from workqueue_core.executor.runner import NO_HANDLER, TIMEOUT, HandlerRunner, Runner
from workqueue_core.executor.state import SHUTDOWN, SHUTDOWN_REASON, WorkerState
from workqueue_core.executor.tasks import HandlerTasks, require_asyncio
from workqueue_core.ports.agent import WorkSource

__all__ = [
    "INVALID_RESULT",
    "NO_HANDLER",
    "SHUTDOWN",
    "TIMEOUT",
    "Handlers",
    "Job",
    "PermanentError",
    "RetryableError",
    "Runner",
    "Worker",
    "WorkerOptions",
    "WorkerStats",
    "heartbeat_period",
]

log = logging.getLogger("workqueue.worker")


class Worker:
    """Claims work of its handlers' types from a ``WorkSource`` and runs it.

    The parts, each in a module of its own: ``claims`` (the claim loop),
    ``execution`` (an attempt's task), ``heartbeats`` (lease heartbeats),
    ``outcomes`` (reports to the broker), all sharing one ``state.WorkerState``;
    ``run`` wires them and carries out the shutdown.
    """

    def __init__(
        self,
        source: WorkSource,
        *,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        agent_id: UUID | None = None,
        handlers: Handlers | None = None,
        classify: Classifier = default_classify,
        options: WorkerOptions | None = None,
        runner: Runner | None = None,
    ) -> None:
        """``runner`` runs the attempts; by default a ``HandlerRunner`` over ``handlers``
        (with ``classify`` and ``options.default_timeout``)."""
        self.source = source
        self.name = name
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.handlers = handlers if handlers is not None else Handlers()
        self.classify = classify
        self.options = options or WorkerOptions()
        self.stats = WorkerStats()
        self.runner: Runner = (
            runner
            if runner is not None
            else HandlerRunner(self.handlers, classify, self.options.default_timeout)
        )
        self._agent_id = agent_id
        self._state = WorkerState()
        self._outcomes = Outcomes(source, self.options.report, self.stats, self._state)
        self._heartbeats = Heartbeats(
            source, self.options.report.call_timeout, self._state.attempts
        )
        self._execution = Execution(
            self.runner, self.options, self.stats, self._state, self._outcomes, self._heartbeats
        )
        self._started = False
        self._resumed: list[WorkItem] = []

    # --- handlers --------------------------------------------------------------------

    def handler(
        self, work_type: str, *, timeout: float | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator: run the decorated coroutine function for items of ``work_type``."""
        return self.handlers.handler(work_type, timeout=timeout)

    def register(self, work_type: str, fn: Handler, *, timeout: float | None = None) -> None:
        """Run ``fn`` for items of ``work_type``."""
        self.handlers.register(work_type, fn, timeout=timeout)

    # --- state -----------------------------------------------------------------------

    @property
    def agent_id(self) -> UUID | None:
        """The agent this worker claims as (known once ``run`` has registered it)."""
        return self._agent_id

    @property
    def running(self) -> int:
        """Attempts in flight (claimed and not yet reported)."""
        return len(self._state.attempts)

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called."""
        return self._state.stopping

    def resume(self, items: Sequence[WorkItem]) -> None:
        """Run ``items``, claims this worker's agent already holds, as soon as ``run`` starts.

        For an agent restarted while its work went on elsewhere (the Kubernetes agent's
        Works): each item runs as if just claimed with its current token, heartbeated and
        reported once. An item whose claim is gone meanwhile is lost at its first
        heartbeat, as any other. Call before ``run``.
        """
        if self._started:
            raise RuntimeError("resume() must be called before run()")
        self._resumed.extend(items)

    def stop(self) -> None:
        """Stop gracefully: no new claims; running handlers get the grace period.

        A claim call in flight is cancelled if the source says that is safe
        (``claims.cancel_safe``); otherwise what it brings back is released unrun."""
        self._state.stop()

    # --- running ---------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[UUID] = anyio.TASK_STATUS_IGNORED) -> None:
        """Register (if needed), then claim and run work until ``stop()`` or cancellation.

        With ``task_group.start(worker.run)`` the agent id is returned once the
        worker is registered and claiming.
        """
        if self._started:
            raise RuntimeError("a Worker runs once; create a new one")
        work_types = self.runner.work_types
        if not work_types:
            raise InvalidInput("register at least one handler before running the worker")
        require_asyncio()
        state = self._state
        execution = self._execution
        # anyio.CancelScope() looks the event loop's backend up on every call; the
        # backend's own class, called directly, makes the same scope five times faster
        execution.new_scope = type(anyio.CancelScope())
        self._started = True
        state.open()
        agent_id = await self._ensure_agent()
        crashes: list[BaseException] = []
        try:
            async with anyio.create_task_group() as tg:
                self._outcomes.task_group = tg
                self._outcomes.agent_id = agent_id
                execution.tasks = HandlerTasks(on_crash=tg.cancel_scope.cancel)
                tg.start_soon(self._cancel_handlers_on_exit)
                tg.start_soon(self._outcomes.reporter.run)
                tg.start_soon(self._agent_loop, agent_id)
                tg.start_soon(self._heartbeats.run, agent_id)
                if self._resumed:
                    execution.start(self._resumed, agent_id)
                    self._resumed = []
                state.claiming = True
                tg.start_soon(
                    claim_until_stopped,
                    self.source,
                    self.options,
                    state,
                    execution.start,
                    execution.give_back,
                    agent_id,
                    work_types,
                )
                task_status.started(agent_id)
                await state.wait_until(lambda: state.stopping)
                with anyio.move_on_after(self.options.grace_period):
                    await state.wait_until(state.drained)
                state.grace_over = True
                for attempt in list(state.attempts):
                    attempt.release(SHUTDOWN_REASON)
                await state.wait_until(state.drained)
                tg.cancel_scope.cancel()
        finally:
            # the handlers' tasks are not the task group's: wait for them here
            crashes = await execution.tasks.close()
        if crashes:
            raise BaseExceptionGroup("a worker's handler task crashed", crashes)

    async def _cancel_handlers_on_exit(self) -> None:
        """Cancel the handlers as soon as the task group is cancelled, as its own tasks are."""
        try:
            await anyio.sleep_forever()
        finally:
            self._execution.tasks.cancel_all()

    async def _ensure_agent(self) -> UUID:
        if self._agent_id is None:
            issued = await self.source.register_agent(self.name, self.labels, self.annotations)
            self._agent_id = issued.agent.id
            log.info("worker %s registered as agent %s", self.name, self._agent_id)
        return self._agent_id

    async def _agent_loop(self, agent_id: UUID) -> None:
        while True:
            try:
                with anyio.move_on_after(self.options.report.call_timeout):
                    await self.source.agent_heartbeat(agent_id)
            except Exception as error:
                log.warning("agent heartbeat of %s failed: %s", agent_id, error)
            await anyio.sleep(self.options.agent_heartbeat_interval)
