"""How one attempt runs: the ``Runner`` port of the executor, and its Python-handler runner.

A ``Worker`` claims, heartbeats, stops and reports; a ``Runner`` runs the claimed
attempt and says how it ended (``Success`` or a ``Failure``). Runners:

- ``HandlerRunner``: async Python handlers registered by work type (library mode);
- the local process runner of ``workqueue agent`` (``workqueue_agent.local``);
- ``workqueue_kubernetes.runner.KubernetesRunner``: a ``Work`` resource per claim.

The worker runs ``run`` in the claim's cancel scope: when the claim is lost or
cancelled, or the worker gives the attempt up, the scope is cancelled and the runner
must stop what it started (in a shielded cleanup) and let the cancellation through.
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio

from workqueue_core.domain.models import Failure
from workqueue_core.executor.handlers import (
    Classifier,
    Handlers,
    Job,
    Outcome,
    PermanentError,
    RetryableError,
    checked_result,
    clean_failure,
    default_classify,
)

__all__ = ["NO_HANDLER", "TIMEOUT", "HandlerRunner", "Runner"]

log = logging.getLogger("workqueue.worker")

TIMEOUT = "Timeout"
"""Reason of the retryable failure reported when an attempt outlives its timeout."""

NO_HANDLER = "NoHandler"
"""Reason of the permanent failure of an item no runner handles."""


class Runner(Protocol):
    """Runs claimed attempts of the work types it lists."""

    @property
    def work_types(self) -> list[str]:
        """The work types this runner runs (what the worker claims), sorted."""
        ...

    async def run(self, job: Job) -> Outcome:
        """Run one attempt to its end: ``Success(result)`` or a ``Failure`` with its class."""
        ...


class HandlerRunner:
    """Runs an item by calling the async Python handler registered for its work type.

    Each attempt is bounded by the handler's timeout (or ``default_timeout``); a
    handler's ``PermanentError`` / ``RetryableError`` give the class, any other
    exception goes through ``classify``.
    """

    __slots__ = ("classify", "default_timeout", "handlers")

    def __init__(
        self,
        handlers: Handlers,
        classify: Classifier = default_classify,
        default_timeout: float | None = None,
    ) -> None:
        self.handlers = handlers
        self.classify = classify
        self.default_timeout = default_timeout

    @property
    def work_types(self) -> list[str]:
        return self.handlers.work_types

    async def run(self, job: Job) -> Outcome:
        # one frame per attempt: this is the executor's hot path
        entry = self.handlers.get(job.item.work_type)
        if entry is None:
            return Failure.permanent(NO_HANDLER, f"no handler for {job.item.work_type!r}")
        timeout = entry.timeout if entry.timeout is not None else self.default_timeout
        try:
            if timeout is None:
                return checked_result(await entry.fn(job))
            with anyio.move_on_after(timeout):
                return checked_result(await entry.fn(job))
            return Failure.retryable(TIMEOUT, f"the attempt took longer than {timeout} s")
        except (PermanentError, RetryableError) as error:
            return error.failure
        except Exception as error:
            return self._classified(error)

    def _classified(self, error: Exception) -> Failure:
        try:
            failure: object = self.classify(error)
        except Exception:
            log.exception("the classify hook failed; treating the error as retryable")
            return default_classify(error)
        if not isinstance(failure, Failure):
            log.error("the classify hook returned %r, not a Failure", failure)
            return default_classify(error)
        return clean_failure(failure)
