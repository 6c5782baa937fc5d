"""What a running worker holds: its attempts in flight and the flags of its shutdown.

Every part of the worker (claiming, heartbeats, execution, reports) reads and
changes one ``WorkerState``; a change that someone may wait for is announced with
``notify()``, and ``wait_until(condition)`` sleeps until the condition holds.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import attrs

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import ClaimToken, Failure, WorkItem
from workqueue_core.executor.handlers import Job

__all__ = ["CANCELLED_REASON", "SHUTDOWN", "SHUTDOWN_REASON", "Attempt", "WorkerState"]

SHUTDOWN = "Shutdown"
"""Reason recorded when a stopping worker releases the attempts it gives up."""

SHUTDOWN_REASON = f"{SHUTDOWN}: the worker stopped before the attempt ended"
CANCELLED_REASON = f"{SHUTDOWN}: the worker was cancelled"


@attrs.define(eq=False)
class Attempt:
    """One claimed attempt in flight, and when its next heartbeat is due (anyio time).

    Compared and hashed by identity: a re-claim of the same item is a new attempt."""

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


class WorkerState:
    """The attempts in flight and the stop flags."""

    def __init__(self) -> None:
        self.attempts: set[Attempt] = set()
        self.stopping = False
        """``stop()`` was called: no new claims."""
        self.claiming = False
        """The claim loop runs (a claim may still bring attempts)."""
        self.grace_over = False
        """The grace period ended: attempts still claimed are released."""
        self.claim_scope: anyio.CancelScope | None = None
        """The scope of a claim call that ``stop()`` may cancel (a cancel-safe source's)."""
        self._changed: anyio.Event | None = None

    def open(self) -> None:
        """Start announcing changes (inside the event loop that runs the worker)."""
        self._changed = anyio.Event()

    def stop(self) -> None:
        """No new claims: a claim call that may be cancelled is, the others are waited for."""
        self.stopping = True
        if self.claim_scope is not None:
            self.claim_scope.cancel()
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits on a change."""
        if self._changed is not None:
            self._changed.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, checking it after each change."""
        # One event serves every waiter until it is set; the first waiter to find it set
        # replaces it, then checks again (nothing runs between that check and the wait).
        while not condition():
            assert self._changed is not None
            if self._changed.is_set():
                self._changed = anyio.Event()
                continue
            await self._changed.wait()

    def drained(self) -> bool:
        """Nothing is claimed, and no claim is on its way."""
        return not self.claiming and not self.attempts

    def finish(self, attempt: Attempt) -> None:
        """The attempt is over: it no longer counts as running."""
        self.attempts.remove(attempt)
        self.notify()
