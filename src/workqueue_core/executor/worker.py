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
import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from uuid import UUID

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus

from workqueue_core.domain.errors import (
    BudgetSpent,
    InvalidInput,
    LeaseLost,
    NotClaimOwner,
    StoreUnavailable,
    UnknownWork,
    WorkqueueError,
)
from workqueue_core.domain.limits import MAX_BATCH
from workqueue_core.domain.models import (
    BUDGET_SPENT,
    ClaimToken,
    Completion,
    ExecutionRecord,
    Failure,
    WorkItem,
)
from workqueue_core.executor.handlers import (
    INVALID_RESULT,
    Classifier,
    Handler,
    Handlers,
    Job,
    Outcome,
    PermanentError,
    RetryableError,
    Success,
    clean_failure,
    default_classify,
)
from workqueue_core.executor.reports import CompletionReporter, ReportPolicy, call_with_retries
from workqueue_core.executor.runner import NO_HANDLER, TIMEOUT, HandlerRunner, Runner
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

SHUTDOWN = "Shutdown"
"""Reason recorded when a stopping worker releases the attempts it gives up."""

HEARTBEAT_CONCURRENCY = 16
"""Heartbeats a worker sends at once."""

IDLE_HEARTBEAT_TICK = 1.0
"""Longest sleep of the heartbeat loop (seconds)."""

EMPTY_CLAIM_PAUSE = 0.2
"""Seconds a worker waits before claiming again after an empty answer the broker did
not hold as a long-poll (``claim_wait`` 0, or a broker that is shutting down)."""


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not value > 0:
        raise InvalidInput(f"{attribute.name} must be positive, got {value!r}")


def _positive_or_none(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and (isinstance(value, bool) or not value > 0):
        raise InvalidInput(f"{attribute.name} must be positive or None, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not value >= 0:
        raise InvalidInput(f"{attribute.name} must not be negative, got {value!r}")


def _count(limit: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise InvalidInput(f"{attribute.name} must be an integer in 1..{limit}, got {value!r}")

    return check


@attrs.frozen
class WorkerOptions:
    """How a worker runs. Durations are seconds.

    ``concurrency``: handlers running at once (claims held at once).
    ``batch``: most items one claim asks for (also bounded by free slots).
    ``claim_wait``: long-poll of each claim (0..30); a stop waits for it to return.
    ``heartbeat_interval``: cap on the heartbeat period; the period is at most a
    third of each item's lease in any case.
    ``default_timeout``: per-attempt bound for handlers registered without one.
    ``grace_period``: how long ``stop()`` lets running handlers finish.
    ``agent_heartbeat_interval``: how often the agent itself is touched.
    ``error_backoff``: longest pause between claims while the source is unavailable.
    """

    concurrency: int = attrs.field(default=10, validator=_count(10_000))
    batch: int = attrs.field(default=10, validator=_count(MAX_BATCH))
    claim_wait: float = attrs.field(default=2.0, validator=_non_negative)
    heartbeat_interval: float | None = attrs.field(default=None, validator=_positive_or_none)
    default_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    grace_period: float = attrs.field(default=30.0, validator=_non_negative)
    agent_heartbeat_interval: float = attrs.field(default=30.0, validator=_positive)
    error_backoff: float = attrs.field(default=5.0, validator=_positive)
    report: ReportPolicy = attrs.field(factory=ReportPolicy)

    def __attrs_post_init__(self) -> None:
        if self.claim_wait > 30:
            raise InvalidInput(f"claim_wait must be in 0..30 seconds, got {self.claim_wait}")


@attrs.define
class WorkerStats:
    """What a worker has done so far (counts of attempts by how they ended)."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    timeouts: int = 0
    lease_lost: int = 0
    released: int = 0
    report_errors: int = 0


@attrs.define
class _Run:
    """One claimed attempt in flight, and when its next heartbeat is due (anyio time)."""

    item: WorkItem
    token: ClaimToken
    job: Job
    period: float
    due: float
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    lost: WorkqueueError | None = None
    stop_failure: Failure | None = None
    release_reason: str | None = None
    reported: bool = False
    beating: bool = False

    def lose(self, error: WorkqueueError) -> None:
        """The broker no longer holds this claim for us: stop the handler, report nothing."""
        self.lost = error
        self.scope.cancel()

    def stop(self, failure: Failure) -> None:
        """Stop the handler and report ``failure`` for the attempt."""
        if self.stop_failure is None:
            self.stop_failure = failure
        self.scope.cancel()

    def release(self, reason: str) -> None:
        """Stop the handler and hand the claim back unfinished (not charged)."""
        if self.release_reason is None:
            self.release_reason = reason
        self.scope.cancel()


class Worker:
    """Claims work of its handlers' types from a ``WorkSource`` and runs it."""

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
        self._reporter: CompletionReporter[_Run] = CompletionReporter(
            source, self.options.report, self._answered
        )
        self._task_group: TaskGroup | None = None
        self._handler_tasks = HandlerTasks(on_crash=lambda: None)
        self._new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope
        self._running: dict[ClaimToken, _Run] = {}  # by token: a re-claim is a new run
        self._stopping = False
        self._started = False
        self._claiming = False
        self._grace_over = False
        self._beat_wake: anyio.Event | None = None
        self._beat_wake_at = math.inf
        self._changed: anyio.Event | None = None

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
        return len(self._running)

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stopping

    def stop(self) -> None:
        """Stop gracefully: no new claims; running handlers get the grace period."""
        self._stopping = True
        self._notify()

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
        # anyio.CancelScope() looks the event loop's backend up on every call; the
        # backend's own class, called directly, makes the same scope five times faster
        self._new_scope = type(anyio.CancelScope())
        self._started = True
        self._changed = anyio.Event()
        agent_id = await self._ensure_agent()
        crashes: list[BaseException] = []
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                self._handler_tasks = HandlerTasks(on_crash=tg.cancel_scope.cancel)
                tg.start_soon(self._cancel_handlers_on_exit)
                tg.start_soon(self._reporter.run)
                tg.start_soon(self._agent_loop, agent_id)
                tg.start_soon(self._heartbeat_loop, agent_id)
                self._claiming = True
                tg.start_soon(self._claim_loop, agent_id, work_types)
                task_status.started(agent_id)
                await self._wait_until(lambda: self._stopping)
                with anyio.move_on_after(self.options.grace_period):
                    await self._wait_until(self._drained)
                self._grace_over = True
                for run in list(self._running.values()):
                    run.release(_SHUTDOWN_REASON)
                await self._wait_until(self._drained)
                tg.cancel_scope.cancel()
        finally:
            # the handlers' tasks are not the task group's: wait for them here
            crashes = await self._handler_tasks.close()
        if crashes:
            raise BaseExceptionGroup("a worker's handler task crashed", crashes)

    async def _cancel_handlers_on_exit(self) -> None:
        """Cancel the handlers as soon as the task group is cancelled, as its own tasks are."""
        try:
            await anyio.sleep_forever()
        finally:
            self._handler_tasks.cancel_all()

    async def _ensure_agent(self) -> UUID:
        if self._agent_id is None:
            issued = await self.source.register_agent(self.name, self.labels, self.annotations)
            self._agent_id = issued.agent.id
            log.info("worker %s registered as agent %s", self.name, self._agent_id)
        return self._agent_id

    def _drained(self) -> bool:
        return not self._claiming and not self._running

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        # One event serves every waiter until it is set; the first waiter to find it set
        # replaces it, then checks again (nothing runs between that check and the wait).
        while not condition():
            assert self._changed is not None
            if self._changed.is_set():
                self._changed = anyio.Event()
                continue
            await self._changed.wait()

    async def _agent_loop(self, agent_id: UUID) -> None:
        while True:
            try:
                with anyio.move_on_after(self.options.report.call_timeout):
                    await self.source.agent_heartbeat(agent_id)
            except Exception as error:
                log.warning("agent heartbeat of %s failed: %s", agent_id, error)
            await anyio.sleep(self.options.agent_heartbeat_interval)

    async def _claim_loop(self, agent_id: UUID, work_types: list[str]) -> None:
        options = self.options
        pause = 0.0
        try:
            while not self._stopping:
                free = options.concurrency - len(self._running)
                if free <= 0:
                    await self._wait_until(
                        lambda: self._stopping or len(self._running) < options.concurrency
                    )
                    continue
                asked = anyio.current_time()
                try:
                    items = await self.source.claim_next(
                        agent_id, work_types, min(free, options.batch), options.claim_wait
                    )
                except (StoreUnavailable, OSError) as error:
                    pause = min(options.error_backoff, max(0.05, pause * 2))
                    log.warning("claiming failed (%s); retrying in %.2f s", error, pause)
                    with anyio.move_on_after(pause):
                        await self._wait_until(lambda: self._stopping)
                    continue
                pause = 0.0
                for item in items:
                    self._start(item, agent_id)
                quick = anyio.current_time() - asked < options.claim_wait / 2
                if not items and (options.claim_wait == 0 or quick):
                    # Nothing, and the broker did not hold the claim (no long-poll asked,
                    # or a broker shutting down): do not ask again in a tight loop.
                    with anyio.move_on_after(EMPTY_CLAIM_PAUSE):
                        await self._wait_until(lambda: self._stopping)
        finally:
            self._claiming = False
            self._notify()

    def _start(self, item: WorkItem, agent_id: UUID) -> None:
        period = heartbeat_period(item.claim_timeout, self.options.heartbeat_interval)
        due = anyio.current_time() + period
        run = _Run(item, item.token, Job(item), period, due, self._new_scope())
        self._wake_heartbeats_by(due)
        if self._grace_over:
            run.release(_SHUTDOWN_REASON)
        self._running[run.token] = run
        self.stats.claimed += 1
        self._handler_tasks.start(
            self._execute(run, agent_id), f"workqueue {item.work_type}", run.scope
        )

    async def _execute(self, run: _Run, agent_id: UUID) -> None:
        handed_over = False  # a queued completion: the reporter's answer ends the run
        try:
            outcome = await self._attempt(run)
            if isinstance(outcome, Success) and self._reporter.put(
                run, Completion(run.token, agent_id, outcome.result, run.job.local_retries)
            ):
                run.reported = handed_over = True
            elif outcome is not None:
                with anyio.CancelScope(shield=True):
                    await self._report(run, agent_id, outcome)
        except anyio.get_cancelled_exc_class():
            # run.scope (the task's own) was cancelled: the claim was lost, the run was
            # stopped, or the worker is being cancelled; or something outside cancelled
            # this task itself (a plain task.cancel(), reported like the worker's)
            if not run.reported:
                with anyio.CancelScope(shield=True):
                    await self._interrupted(run, agent_id)
            raise
        finally:
            if not handed_over:
                self._finish(run)

    def _finish(self, run: _Run) -> None:
        del self._running[run.token]
        self._notify()

    async def _attempt(self, run: _Run) -> Outcome | None:
        """Run the attempt; None when the claim was lost while it ran.

        It runs in the claim's cancel scope, which is its task's own (``_start``): a
        cancellation that stops it ends the task through ``_execute``.
        """
        outcome = await self.runner.run(run.job)
        if run.lost is not None:  # the handler absorbed the cancellation and returned
            self._count_lost(run)
            return None
        if type(outcome) is Failure and outcome.reason == TIMEOUT:
            self.stats.timeouts += 1
        return outcome

    async def _interrupted(self, run: _Run, agent_id: UUID) -> None:
        """Settle an attempt whose scope was cancelled: nothing when the claim was lost,
        the stop's failure when it was stopped for one, otherwise a release."""
        if run.lost is not None:
            self._count_lost(run)
        elif run.stop_failure is not None:
            await self._report(run, agent_id, run.stop_failure)
        else:
            await self._release(run, agent_id, run.release_reason or _CANCELLED_REASON)

    async def _release(self, run: _Run, agent_id: UUID, reason: str) -> None:
        run.reported = True
        token = run.token
        source = self.source
        try:
            await call_with_retries(
                lambda: source.release(token, agent_id, reason), self.options.report
            )
        except WorkqueueError as error:
            self._report_refused(run, error)
            return
        except Exception as error:
            log.exception("releasing %s failed", run.item.id)
            self._report_refused(run, StoreUnavailable(str(error)))
            return
        self.stats.released += 1

    def _count_lost(self, run: _Run) -> None:
        self.stats.lease_lost += 1
        log.info("claim on %s lost (%s); the handler was cancelled", run.item.id, run.lost)

    async def _heartbeat_loop(self, agent_id: UUID) -> None:
        """Heartbeat every claim in flight when it is due (at most a third of its lease).

        One loop serves every claim: it sleeps until the earliest due heartbeat,
        then sends those due (or due within a tenth of their period) concurrently.
        """
        limiter = anyio.CapacityLimiter(HEARTBEAT_CONCURRENCY)
        async with anyio.create_task_group() as beats:
            while True:
                now = anyio.current_time()
                earliest = now + IDLE_HEARTBEAT_TICK
                for run in list(self._running.values()):
                    if run.beating:
                        continue
                    if run.due <= now + run.period / 10:
                        run.beating = True
                        beats.start_soon(self._beat, run, agent_id, limiter)
                    else:
                        earliest = min(earliest, run.due)
                self._beat_wake = anyio.Event()
                self._beat_wake_at = earliest
                with anyio.move_on_after(max(0.0, earliest - now)):
                    await self._beat_wake.wait()

    async def _beat(self, run: _Run, agent_id: UUID, limiter: anyio.CapacityLimiter) -> None:
        try:
            async with limiter:
                # A claim is kept alive until its report is answered: a completion
                # waiting behind a slow broker call must not lose its lease meanwhile.
                if run.lost is not None:
                    return
                with anyio.move_on_after(self.options.report.call_timeout):
                    await self.source.heartbeat(run.token, agent_id, run.job.local_retries)
        except (LeaseLost, NotClaimOwner, UnknownWork) as error:
            if not run.reported:
                run.lose(error)
        except BudgetSpent as error:
            run.stop(Failure.retryable(BUDGET_SPENT, str(error)))
        except Exception as error:
            log.warning("heartbeat of %s failed: %s", run.item.id, error)
        finally:
            run.beating = False
            run.due = anyio.current_time() + run.period
            self._wake_heartbeats_by(run.due)

    def _wake_heartbeats_by(self, due: float) -> None:
        if due < self._beat_wake_at and self._beat_wake is not None:
            self._beat_wake.set()

    async def _report(self, run: _Run, agent_id: UUID, outcome: Outcome) -> None:
        if run.reported:
            return
        run.reported = True
        if isinstance(outcome, Success):
            completion = Completion(run.token, agent_id, outcome.result, run.job.local_retries)
            [answer] = await self._reporter.send([completion])
            instead = self._settle(run, answer)
            if instead is None:
                return
            outcome = instead
        await self._report_failure(run, agent_id, outcome)

    def _answered(self, run: _Run, answer: WorkqueueError | None) -> None:
        """The reporter's answer to a queued completion: the run ends, or fails instead."""
        failing = False
        try:
            instead = self._settle(run, answer)
            if instead is not None and self._task_group is not None and self._agent_id is not None:
                self._task_group.start_soon(self._fail_instead, run, self._agent_id, instead)
                failing = True
        finally:
            if not failing:  # whatever happened, the run must not stay counted as running
                self._finish(run)

    async def _fail_instead(self, run: _Run, agent_id: UUID, failure: Failure) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._report_failure(run, agent_id, failure)
        finally:
            self._finish(run)

    def _settle(self, run: _Run, answer: WorkqueueError | None) -> Failure | None:
        """Count the answer to a completion (None: completed); a failure to report when the
        result was refused."""
        if answer is None:
            self.stats.succeeded += 1
            return None
        if not isinstance(answer, InvalidInput):
            self._report_refused(run, answer)
            return None
        # the broker refused the result itself: the attempt fails instead of staying claimed
        return Failure.permanent(INVALID_RESULT, str(answer))

    async def _report_failure(self, run: _Run, agent_id: UUID, outcome: Failure) -> None:
        token = run.token
        local = run.job.local_retries
        failure = clean_failure(outcome)
        source = self.source
        try:
            state = await call_with_retries(
                lambda: source.fail(token, agent_id, failure, local), self.options.report
            )
        except WorkqueueError as error:
            self._report_refused(run, error)
            return
        except Exception as error:
            log.exception("reporting the failure of %s failed", run.item.id)
            self._report_refused(run, StoreUnavailable(str(error)))
            return
        if isinstance(state, ExecutionRecord):
            self.stats.failed += 1
        else:
            self.stats.retried += 1

    def _report_refused(self, run: _Run, error: WorkqueueError) -> None:
        if isinstance(error, LeaseLost):
            self.stats.lease_lost += 1
            log.info("report on %s refused: %s; the broker's state stands", run.item.id, error)
        else:
            self.stats.report_errors += 1
            log.warning("report on %s failed: %s", run.item.id, error)


def heartbeat_period(claim_timeout: timedelta, cap: float | None = None) -> float:
    """Seconds between heartbeats of a claim: a third of its lease, or ``cap`` if shorter."""
    third = claim_timeout.total_seconds() / 3
    return third if cap is None else min(cap, third)


_SHUTDOWN_REASON = f"{SHUTDOWN}: the worker stopped before the attempt ended"
_CANCELLED_REASON = f"{SHUTDOWN}: the worker was cancelled"
