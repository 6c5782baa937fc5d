"""Attempt execution: each claimed item runs as in a task of its own, in its claim's scope.

``start`` registers a claim's attempts, schedules their first heartbeats and starts
them together (``HandlerTasks.start_many``: attempts whose handler ends without
suspending share one task); a task runs the ``Runner`` and hands a success to the batched reporter
(whose answer ends the attempt) or reports any other outcome itself. When the claim's
cancel scope is cancelled (claim lost, stopped, released, or the worker cancelled),
the attempt is settled in a shielded scope before the cancellation goes on.

``give_back`` takes the items of a claim that answered after the worker began to stop:
each is an attempt that never runs (no ``Runner`` call) and is released once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

import anyio

from workqueue_core.domain.models import Completion, Failure, WorkItem
from workqueue_core.executor.handlers import Job, Success
from workqueue_core.executor.heartbeats import Heartbeats, heartbeat_period
from workqueue_core.executor.options import WorkerOptions, WorkerStats
from workqueue_core.executor.outcomes import Outcomes
from workqueue_core.executor.runner import TIMEOUT, Runner
from workqueue_core.executor.state import SHUTDOWN_REASON, Attempt, WorkerState
from workqueue_core.executor.tasks import Entry, HandlerTasks

__all__ = ["Execution"]


class Execution:
    """Starts and runs a worker's attempts.

    ``tasks`` and ``new_scope`` are replaced when the worker runs (the tasks' crash
    hook and the event loop's own cancel scope class are known only then).
    """

    def __init__(
        self,
        runner: Runner,
        options: WorkerOptions,
        stats: WorkerStats,
        state: WorkerState,
        outcomes: Outcomes,
        heartbeats: Heartbeats,
    ) -> None:
        self._runner = runner
        self._options = options
        self._stats = stats
        self._state = state
        self._outcomes = outcomes
        self._heartbeats = heartbeats
        self.tasks = HandlerTasks(on_crash=lambda: None)
        self.new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope
        self._names: dict[str, str] = {}  # a task's name by work type

    def start(self, items: Sequence[WorkItem], agent_id: UUID) -> None:
        """Run each claimed item as in a task of its own (``HandlerTasks.start_many``).

        This runs once per claimed item: the clock is read once per claim, and a
        claim's items, which almost always share one lease, share one heartbeat period.
        """
        if not items:
            return
        now = anyio.current_time()
        cap = self._options.heartbeat_interval
        state = self._state
        attempts = state.attempts
        new_scope = self.new_scope
        execute = self._execute
        names = self._names
        entries: list[Entry] = []
        lease = None
        period = earliest = 0.0
        for item in items:
            if item.claim_timeout != lease:
                lease = item.claim_timeout
                period = heartbeat_period(lease, cap)
            due = now + period
            attempt = Attempt(item, item.token, Job(item), period, due, new_scope())
            if state.grace_over:
                attempt.release(SHUTDOWN_REASON)
            attempts.add(attempt)
            name = names.get(item.work_type)
            if name is None:
                name = names[item.work_type] = f"workqueue {item.work_type}"
            entries.append((execute(attempt, agent_id), attempt.scope, name))
            earliest = due if earliest == 0.0 else min(earliest, due)
        self.tasks.start_many(entries)
        self._stats.claimed += len(items)
        self._heartbeats.wake_by(earliest)

    def give_back(self, items: Sequence[WorkItem], agent_id: UUID) -> None:
        """Release ``items``, claimed after the worker began to stop, without running them.

        Each counts as an attempt in flight until its release is answered, so ``run()``
        ends only once nothing is claimed."""
        if not items:
            return
        now = anyio.current_time()
        cap = self._options.heartbeat_interval
        entries: list[Entry] = []
        for item in items:
            period = heartbeat_period(item.claim_timeout, cap)
            attempt = Attempt(item, item.token, Job(item), period, now + period, self.new_scope())
            attempt.release(SHUTDOWN_REASON)
            self._state.attempts.add(attempt)
            entries.append((self._release(attempt, agent_id), attempt.scope, "workqueue release"))
        self.tasks.start_many(entries)
        self._stats.claimed += len(items)

    async def _release(self, attempt: Attempt, agent_id: UUID) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._outcomes.interrupted(attempt, agent_id)
        finally:
            self._state.finish(attempt)

    async def _execute(self, attempt: Attempt, agent_id: UUID) -> None:
        """Run the attempt in the claim's cancel scope (its task's own, ``start``) and hand
        its outcome on; a cancellation that stops it is settled here."""
        handed_over = False  # a queued completion: the reporter's answer ends the attempt
        outcomes = self._outcomes
        try:
            outcome = await self._runner.run(attempt.job)
            if attempt.lost is not None:  # the handler absorbed the cancellation and returned
                outcomes.count_lost(attempt)
            elif isinstance(outcome, Success):
                if outcomes.reporter.put(
                    attempt,
                    Completion(attempt.token, agent_id, outcome.result, attempt.job.local_retries),
                ):
                    attempt.reported = handed_over = True
                else:
                    with anyio.CancelScope(shield=True):
                        await outcomes.report(attempt, agent_id, outcome)
            else:
                if type(outcome) is Failure and outcome.reason == TIMEOUT:
                    self._stats.timeouts += 1
                with anyio.CancelScope(shield=True):
                    await outcomes.report(attempt, agent_id, outcome)
        except anyio.get_cancelled_exc_class():
            # attempt.scope (the task's own) was cancelled: the claim was lost, the attempt
            # was stopped, or the worker is being cancelled; or something outside cancelled
            # this task itself (a plain task.cancel(), reported like the worker's)
            if not attempt.reported:
                with anyio.CancelScope(shield=True):
                    await outcomes.interrupted(attempt, agent_id)
            raise
        finally:
            if not handed_over:
                self._state.finish(attempt)
