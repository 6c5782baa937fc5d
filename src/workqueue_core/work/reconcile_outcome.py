"""What a finished Work means for its item: the reading of the status ``reconcile`` writes.

The agent reports a Work's terminal status to the broker once; ``work_outcome`` turns it
into a success with its result, or a ``Failure`` whose class decides whether the broker
may retry the item (``Retryable`` condition; a Work without one counts as retryable, like
any failure of unknown kind), plus the local retries the Work used.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from workqueue_core.domain.models import Failure, FailureClass
from workqueue_core.work.reconcile import CONDITION_RETRYABLE
from workqueue_core.work.resource import (
    CONDITION_TEMPLATE_SUCCEEDED,
    WorkPhase,
    WorkResourceStatus,
)

__all__ = ["WorkOutcome", "work_outcome"]


@attrs.frozen
class WorkOutcome:
    """A finished Work: ``failure`` None means it succeeded with ``result``."""

    retries: int
    result: Mapping[str, str] = attrs.field(factory=dict)
    failure: Failure | None = None

    @property
    def succeeded(self) -> bool:
        """True when the Work succeeded."""
        return self.failure is None


def work_outcome(status: WorkResourceStatus) -> WorkOutcome | None:
    """The outcome of a Work in a terminal phase; None while it is not finished."""
    if status.phase is WorkPhase.SUCCEEDED:
        return WorkOutcome(retries=status.retries, result=dict(status.result))
    if status.phase is not WorkPhase.FAILED:
        return None
    succeeded = status.condition(CONDITION_TEMPLATE_SUCCEEDED)
    retryable = status.condition(CONDITION_RETRYABLE)
    permanent = retryable is not None and retryable.status == "False"
    reason = succeeded.reason if succeeded is not None and succeeded.reason else "Failed"
    failure = Failure(
        FailureClass.PERMANENT if permanent else FailureClass.RETRYABLE, reason, status.message
    )
    return WorkOutcome(retries=status.retries, failure=failure)
