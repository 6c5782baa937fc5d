"""The state machine of a work item, as pure functions.

Each function takes the current state and the caller's ``now`` and returns the next
state and the event that records the step, or raises the typed error of DESIGN §2.
Stores call these inside their atomic operation, or (when they decide in SQL) must
agree with them; the conformance suite checks that they do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import attrs

from workqueue_core.domain.errors import (
    BudgetSpent,
    InvalidTransition,
    LeaseLost,
    NotClaimable,
    NotClaimOwner,
    NotEligible,
    UnknownAgent,
    UnknownWork,
    WorkCancelled,
)
from workqueue_core.domain.models import (
    BUDGET_SPENT,
    LEASE_EXPIRED,
    Agent,
    AgentStatus,
    ClaimToken,
    Event,
    ExecutionRecord,
    Failure,
    FailureClass,
    WorkItem,
    WorkStatus,
)

SWEEPER = "sweeper"


def agent_actor(agent_id: UUID) -> str:
    """The actor string recorded for an agent's own steps."""
    return f"agent:{agent_id}"


def _event(
    before: WorkItem | None,
    after: WorkItem,
    actor: str,
    now: datetime,
    detail: str = "",
) -> Event:
    return Event(
        work_id=after.id,
        from_status=before.status if before is not None else None,
        to_status=after.status,
        actor=actor,
        at=now,
        attempt=after.attempt,
        executions=after.executions,
        claimed_by=after.claimed_by,
        correlation_id=after.correlation_id,
        detail=detail,
    )


def submitted(item: WorkItem, actor: str, now: datetime) -> Event:
    """The first event of a newly stored item (PENDING or HELD)."""
    if item.status not in (WorkStatus.PENDING, WorkStatus.HELD):
        raise InvalidTransition(item.id, item.status.value, "submit")
    return _event(None, item, actor, now, "submitted")


def approve(item: WorkItem, actor: str, now: datetime) -> tuple[WorkItem, Event]:
    """HELD → PENDING."""
    if item.status is not WorkStatus.HELD:
        raise InvalidTransition(item.id, item.status.value, "approve")
    after = attrs.evolve(item, status=WorkStatus.PENDING)
    return after, _event(item, after, actor, now, "approved")


def check_claim(
    item: WorkItem | None,
    work_id: UUID,
    agent: Agent | None,
    agent_id: UUID,
    now: datetime,
    finished: bool = False,
) -> WorkItem:
    """Raise the error a claim of ``work_id`` by ``agent`` must fail with, if any.

    The checks run in a fixed order so every store reports the same error:
    unknown agent, unknown item, not PENDING, agent not ACTIVE, targeting, ``not_before``.
    """
    if agent is None:
        raise UnknownAgent(agent_id)
    if item is None:
        if finished:
            raise NotClaimable(work_id, "it has finished")
        raise UnknownWork(work_id)
    if item.status is not WorkStatus.PENDING:
        raise NotClaimable(work_id, f"it is {item.status.value}")
    if item.executions >= item.max_executions:
        raise NotClaimable(work_id, "its retry budget is spent")
    if agent.status is not AgentStatus.ACTIVE:
        raise NotEligible(work_id, agent.id, f"the agent is {agent.status.value}")
    if not item.targeting.matches(agent.id, agent.labels):
        raise NotEligible(work_id, agent.id, "the agent does not match the targeting")
    if item.not_before is not None and item.not_before > now:
        raise NotClaimable(work_id, f"it is not due before {item.not_before.isoformat()}")
    return item


def claimable_by(item: WorkItem, agent: Agent, now: datetime) -> bool:
    """True when ``agent`` may claim ``item`` at ``now``."""
    return (
        item.status is WorkStatus.PENDING
        and item.executions < item.max_executions
        and agent.eligible_for(item.targeting)
        and (item.not_before is None or item.not_before <= now)
    )


def claim(item: WorkItem, agent: Agent, now: datetime) -> tuple[WorkItem, Event]:
    """PENDING → CLAIMED by an eligible agent; opens a lease and charges one execution."""
    check_claim(item, item.id, agent, agent.id, now)
    after = attrs.evolve(
        item,
        status=WorkStatus.CLAIMED,
        attempt=item.attempt + 1,
        executions=item.executions + 1,
        local_retries=0,
        claimed_by=agent.id,
        claimed_at=now,
        lease_expires_at=now + item.claim_timeout,
    )
    return after, _event(item, after, agent_actor(agent.id), now, "claimed")


def check_token(
    item: WorkItem | None,
    record: ExecutionRecord | None,
    token: ClaimToken,
    agent_id: UUID,
) -> WorkItem:
    """Return the item the token holds, or raise why it holds nothing.

    A stale token (swept, re-claimed, finished) raises LeaseLost; one whose item was
    cancelled raises WorkCancelled; a current token shown by another agent raises
    NotClaimOwner.
    """
    if item is not None:
        if item.status is WorkStatus.CLAIMED and item.attempt == token.attempt:
            if item.claimed_by != agent_id:
                raise NotClaimOwner(token.work_id, agent_id)
            return item
        raise LeaseLost(token.work_id, token.attempt)
    if record is not None:
        if record.status is WorkStatus.CANCELED and record.item.attempt == token.attempt:
            raise WorkCancelled(token.work_id, token.attempt)
        raise LeaseLost(token.work_id, token.attempt, "the work item has finished")
    raise UnknownWork(token.work_id)


def repeated_report(
    record: ExecutionRecord | None, token: ClaimToken, agent_id: UUID, status: WorkStatus
) -> ExecutionRecord | None:
    """The record a repeated terminal report with the same token returns, if it is one."""
    if (
        record is not None
        and record.item.attempt == token.attempt
        and record.status is status
        and record.finished_by == agent_actor(agent_id)
    ):
        return record
    return None


def _require_claimed(item: WorkItem, event: str) -> None:
    if item.status is not WorkStatus.CLAIMED:
        raise InvalidTransition(item.id, item.status.value, event)


def _charge_local_retries(item: WorkItem, local_retries: int, *, clamp: bool = False) -> WorkItem:
    """Add newly reported local retries to the executions charged to the budget.

    A heartbeat that reports more than the budget allows is refused (``BudgetSpent``)
    so the agent stops; a final report (complete or fail) is clamped to the budget
    instead, because refusing it would leave the item claimed until its lease expires
    and let a finished run start again.
    """
    if local_retries <= item.local_retries:
        return item
    executions = item.executions + (local_retries - item.local_retries)
    if executions > item.max_executions:
        if not clamp:
            raise BudgetSpent(item.id, item.max_executions)
        local_retries -= executions - item.max_executions
        executions = item.max_executions
    return attrs.evolve(item, executions=executions, local_retries=local_retries)


def heartbeat(
    item: WorkItem, agent_id: UUID, now: datetime, local_retries: int = 0
) -> tuple[WorkItem, Event | None]:
    """CLAIMED → CLAIMED with the lease extended; an event only when local retries grew."""
    _require_claimed(item, "heartbeat")
    charged = _charge_local_retries(item, local_retries)
    after = attrs.evolve(charged, lease_expires_at=now + item.claim_timeout)
    if charged.local_retries != item.local_retries:
        detail = f"local retries reported: {charged.local_retries}"
        return after, _event(item, after, agent_actor(agent_id), now, detail)
    return after, None


def complete(
    item: WorkItem,
    agent_id: UUID,
    now: datetime,
    result: str | None = None,
    local_retries: int = 0,
) -> tuple[ExecutionRecord, Event]:
    """CLAIMED → SUCCEEDED, moved to the execution log."""
    _require_claimed(item, "complete")
    charged = _charge_local_retries(item, local_retries, clamp=True)
    after = attrs.evolve(charged, status=WorkStatus.SUCCEEDED, lease_expires_at=None)
    actor = agent_actor(agent_id)
    record = ExecutionRecord(after, finished_at=now, finished_by=actor, result=result)
    return record, _event(item, after, actor, now, "succeeded")


def fail(
    item: WorkItem,
    failure: Failure,
    actor: str,
    now: datetime,
    jitter_sample: float = 0.0,
    local_retries: int = 0,
) -> tuple[WorkItem | ExecutionRecord, Event]:
    """CLAIMED → PENDING after backoff (retryable, budget left) or → FAILED in the log."""
    _require_claimed(item, "fail")
    charged = _charge_local_retries(item, local_retries, clamp=True)
    detail = f"{failure.failure_class.value.lower()} failure: {failure.reason}"
    if failure.message:
        detail += f": {failure.message}"
    if (
        failure.failure_class is FailureClass.RETRYABLE
        and charged.executions < charged.max_executions
    ):
        delay = charged.retry_policy.delay(charged.executions, jitter_sample)
        after = attrs.evolve(
            charged,
            status=WorkStatus.PENDING,
            not_before=_later(now, delay),
            claimed_by=None,
            claimed_at=None,
            lease_expires_at=None,
            last_error=failure,
        )
        return after, _event(item, after, actor, now, f"{detail}; retry after {delay}")
    if failure.failure_class is FailureClass.RETRYABLE:
        detail = f"{BUDGET_SPENT} after {charged.executions} runs; {detail}"
    ended = attrs.evolve(
        charged, status=WorkStatus.FAILED, lease_expires_at=None, last_error=failure
    )
    record = ExecutionRecord(ended, finished_at=now, finished_by=actor, result=None)
    return record, _event(item, ended, actor, now, detail)


def release(
    item: WorkItem, agent_id: UUID, now: datetime, reason: str = ""
) -> tuple[WorkItem, Event]:
    """CLAIMED → PENDING at once, handed back by its holder without charging the budget.

    The run the claim started is refunded (``executions - 1``); local retries reported
    during the claim were real runs and stay charged. ``attempt`` is kept, so the
    released token stays stale and the next claim's token (``attempt + 1``) is fresh.
    """
    _require_claimed(item, "release")
    after = attrs.evolve(
        item,
        status=WorkStatus.PENDING,
        executions=item.executions - 1,
        local_retries=0,
        not_before=None,
        claimed_by=None,
        claimed_at=None,
        lease_expires_at=None,
    )
    detail = f"released{': ' + reason if reason else ''}"
    return after, _event(item, after, agent_actor(agent_id), now, detail)


def _later(now: datetime, delay: timedelta) -> datetime:
    """``now + delay``, saturating at the latest representable time instead of overflowing."""
    try:
        return now + delay
    except OverflowError:
        return datetime.max.replace(tzinfo=now.tzinfo)


def lease_expired(item: WorkItem, now: datetime) -> bool:
    """True when a claimed item's lease has run out at ``now``."""
    return (
        item.status is WorkStatus.CLAIMED
        and item.lease_expires_at is not None
        and item.lease_expires_at <= now
    )


def expire(
    item: WorkItem, now: datetime, jitter_sample: float = 0.0
) -> tuple[WorkItem | ExecutionRecord, Event]:
    """A swept lease: a retryable failure recorded by the sweeper."""
    failure = Failure.retryable(LEASE_EXPIRED, f"no heartbeat from agent {item.claimed_by}")
    return fail(item, failure, SWEEPER, now, jitter_sample)


def cancel(
    item: WorkItem, actor: str, now: datetime, reason: str = ""
) -> tuple[ExecutionRecord, Event]:
    """HELD/PENDING/CLAIMED → CANCELED, moved to the execution log."""
    if item.status.is_terminal:
        raise InvalidTransition(item.id, item.status.value, "cancel")
    after = attrs.evolve(item, status=WorkStatus.CANCELED, lease_expires_at=None)
    record = ExecutionRecord(after, finished_at=now, finished_by=actor, result=reason or None)
    return record, _event(item, after, actor, now, f"cancelled{': ' + reason if reason else ''}")


def requeue(record: ExecutionRecord, actor: str, now: datetime) -> tuple[WorkItem, Event]:
    """FAILED (in the log) → PENDING with a fresh budget.

    Attempts keep counting, so tokens of earlier claims stay stale.
    """
    if record.status is not WorkStatus.FAILED:
        raise InvalidTransition(record.id, record.status.value, "requeue")
    before = record.item
    after = attrs.evolve(
        before,
        status=WorkStatus.PENDING,
        executions=0,
        local_retries=0,
        not_before=None,
        claimed_by=None,
        claimed_at=None,
        lease_expires_at=None,
    )
    return after, _event(before, after, actor, now, "requeued with a fresh budget")
