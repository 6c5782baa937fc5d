"""How a worker settles each attempt with the broker, and counts it.

A success goes to the ``CompletionReporter`` (batched, answered later); a failure is
reported with ``fail`` (retried); an attempt given up is released; an attempt whose
claim was lost reports nothing (the broker's state stands). A result the broker
refuses as invalid fails the attempt permanently instead. Every answer is counted
in the worker's ``WorkerStats``.
"""

from __future__ import annotations

import logging
from uuid import UUID

import anyio
from anyio.abc import TaskGroup

from workqueue_core.domain.errors import InvalidInput, LeaseLost, StoreUnavailable, WorkqueueError
from workqueue_core.domain.models import Completion, ExecutionRecord, Failure
from workqueue_core.executor.handlers import INVALID_RESULT, Outcome, Success, clean_failure
from workqueue_core.executor.options import WorkerStats
from workqueue_core.executor.reports import CompletionReporter, ReportPolicy, call_with_retries
from workqueue_core.executor.state import CANCELLED_REASON, Attempt, WorkerState
from workqueue_core.ports.agent import WorkSource

__all__ = ["Outcomes"]

log = logging.getLogger("workqueue.worker")


class Outcomes:
    """Reports the outcomes of a worker's attempts and counts the answers.

    ``task_group`` and ``agent_id`` are set while the worker runs: an answer to a
    queued completion that refuses the result starts the failure report there.
    """

    def __init__(
        self, source: WorkSource, policy: ReportPolicy, stats: WorkerStats, state: WorkerState
    ) -> None:
        self._source = source
        self._policy = policy
        self._stats = stats
        self._state = state
        self.reporter: CompletionReporter[Attempt] = CompletionReporter(
            source, policy, self.answered
        )
        self.task_group: TaskGroup | None = None
        self.agent_id: UUID | None = None

    async def interrupted(self, attempt: Attempt, agent_id: UUID) -> None:
        """Settle an attempt whose scope was cancelled: nothing when the claim was lost,
        the stop's failure when it was stopped for one, otherwise a release."""
        if attempt.lost is not None:
            self.count_lost(attempt)
        elif attempt.stop_failure is not None:
            await self.report(attempt, agent_id, attempt.stop_failure)
        else:
            state = self._state
            if state.stopping:
                # a claim call still in flight could take the item straight back once it
                # is PENDING (a long-poll wakes on the release): hand it back after that call
                await state.wait_until(lambda: not state.claiming)
            await self._release(attempt, agent_id, attempt.release_reason or CANCELLED_REASON)

    async def _release(self, attempt: Attempt, agent_id: UUID, reason: str) -> None:
        attempt.reported = True
        token = attempt.token
        source = self._source
        try:
            await call_with_retries(lambda: source.release(token, agent_id, reason), self._policy)
        except WorkqueueError as error:
            self._report_refused(attempt, error)
            return
        except Exception as error:
            log.exception("releasing %s failed", attempt.item.id)
            self._report_refused(attempt, StoreUnavailable(str(error)))
            return
        self._stats.released += 1

    def count_lost(self, attempt: Attempt) -> None:
        """Count an attempt cancelled because its claim was lost."""
        self._stats.lease_lost += 1
        log.info("claim on %s lost (%s); the handler was cancelled", attempt.item.id, attempt.lost)

    async def report(self, attempt: Attempt, agent_id: UUID, outcome: Outcome) -> None:
        """Report ``outcome`` now and wait for the answer (once per attempt)."""
        if attempt.reported:
            return
        attempt.reported = True
        if isinstance(outcome, Success):
            completion = Completion(
                attempt.token, agent_id, outcome.result, attempt.job.local_retries
            )
            [answer] = await self.reporter.send([completion])
            instead = self._settle(attempt, answer)
            if instead is None:
                return
            outcome = instead
        await self._report_failure(attempt, agent_id, outcome)

    def answered(self, attempt: Attempt, answer: WorkqueueError | None) -> None:
        """The reporter's answer to a queued completion: the attempt ends, or fails instead."""
        failing = False
        try:
            instead = self._settle(attempt, answer)
            if instead is not None and self.task_group is not None and self.agent_id is not None:
                self.task_group.start_soon(self._fail_instead, attempt, self.agent_id, instead)
                failing = True
        finally:
            if not failing:  # whatever happened, the attempt must not stay counted as running
                self._state.finish(attempt)

    async def _fail_instead(self, attempt: Attempt, agent_id: UUID, failure: Failure) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._report_failure(attempt, agent_id, failure)
        finally:
            self._state.finish(attempt)

    def _settle(self, attempt: Attempt, answer: WorkqueueError | None) -> Failure | None:
        """Count the answer to a completion (None: completed); a failure to report when the
        result was refused."""
        if answer is None:
            self._stats.succeeded += 1
            return None
        if not isinstance(answer, InvalidInput):
            self._report_refused(attempt, answer)
            return None
        # the broker refused the result itself: the attempt fails instead of staying claimed
        return Failure.permanent(INVALID_RESULT, str(answer))

    async def _report_failure(self, attempt: Attempt, agent_id: UUID, outcome: Failure) -> None:
        token = attempt.token
        local = attempt.job.local_retries
        failure = clean_failure(outcome)
        source = self._source
        try:
            state = await call_with_retries(
                lambda: source.fail(token, agent_id, failure, local), self._policy
            )
        except WorkqueueError as error:
            self._report_refused(attempt, error)
            return
        except Exception as error:
            log.exception("reporting the failure of %s failed", attempt.item.id)
            self._report_refused(attempt, StoreUnavailable(str(error)))
            return
        if isinstance(state, ExecutionRecord):
            self._stats.failed += 1
        else:
            self._stats.retried += 1

    def _report_refused(self, attempt: Attempt, error: WorkqueueError) -> None:
        if isinstance(error, LeaseLost):
            self._stats.lease_lost += 1
            log.info("report on %s refused: %s; the broker's state stands", attempt.item.id, error)
        else:
            self._stats.report_errors += 1
            log.warning("report on %s failed: %s", attempt.item.id, error)
