"""The transition table of DESIGN §2: every edge, every refused pair and its typed error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workqueue_core.domain import transitions
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
    WorkqueueError,
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
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.clock import EPOCH

A = UUID(int=0xA)
B = UUID(int=0xB)
WID = UUID(int=1)
T0 = EPOCH
TIMEOUT = timedelta(seconds=60)
POLICY = RetryPolicy(
    max_retries=2,
    base_delay=timedelta(seconds=10),
    multiplier=2.0,
    max_delay=timedelta(seconds=300),
)

HELD = WorkStatus.HELD
PENDING = WorkStatus.PENDING
CLAIMED = WorkStatus.CLAIMED
SUCCEEDED = WorkStatus.SUCCEEDED
FAILED = WorkStatus.FAILED
CANCELED = WorkStatus.CANCELED


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_agent(
    agent_id: UUID = A,
    status: AgentStatus = AgentStatus.ACTIVE,
    labels: dict[str, str] | None = None,
    name: str | None = None,
) -> Agent:
    return Agent(
        id=agent_id,
        name=name or f"agent-{agent_id.int}",
        registered_at=T0,
        labels=labels or {},
        status=status,
    )


def make_item(**overrides: Any) -> WorkItem:
    fields: dict[str, Any] = {
        "id": WID,
        "work_type": "job",
        "spec": "{}",
        "targeting": Targeting.everyone(),
        "created_at": T0,
        "retry_policy": POLICY,
        "claim_timeout": TIMEOUT,
        "correlation_id": "corr-1",
    }
    fields.update(overrides)
    return WorkItem(**fields)


def claimed_item(**overrides: Any) -> WorkItem:
    """A PENDING item claimed by agent A at T0 (attempt 1, executions 1)."""
    item, _ = transitions.claim(make_item(**overrides), make_agent(A), T0)
    return item


def assert_event(
    event: Event,
    before: WorkItem | None,
    after: WorkItem,
    actor: str,
    now: datetime,
) -> None:
    """The event records exactly the step from ``before`` to ``after``."""
    assert event.work_id == after.id
    assert event.from_status is (before.status if before is not None else None)
    assert event.to_status is after.status
    assert event.attempt == after.attempt
    assert event.executions == after.executions
    assert event.claimed_by == after.claimed_by
    assert event.correlation_id == after.correlation_id
    assert event.actor == actor
    assert event.at == now


# --- submit and approve ------------------------------------------------------------------


@pytest.mark.parametrize("status", [PENDING, HELD])
def test_submit_starts_a_timeline(status: WorkStatus) -> None:
    item = make_item(status=status)
    event = transitions.submitted(item, "user", T0)
    assert_event(event, None, item, "user", T0)
    assert event.attempt == 0
    assert event.executions == 0


@pytest.mark.parametrize("status", [CLAIMED, SUCCEEDED, FAILED, CANCELED])
def test_submit_in_any_other_state_is_refused(status: WorkStatus) -> None:
    with pytest.raises(InvalidTransition) as info:
        transitions.submitted(make_item(status=status), "user", T0)
    assert info.value.event == "submit"
    assert info.value.status == status.value


def test_approve_moves_held_to_pending() -> None:
    item = make_item(status=HELD)
    after, event = transitions.approve(item, "admin", at(5))
    assert after.status is PENDING
    assert after == attrs.evolve(item, status=PENDING)
    assert_event(event, item, after, "admin", at(5))


@pytest.mark.parametrize("status", [PENDING, CLAIMED, SUCCEEDED, FAILED, CANCELED])
def test_approve_from_any_other_state_is_refused(status: WorkStatus) -> None:
    with pytest.raises(InvalidTransition) as info:
        transitions.approve(make_item(status=status), "admin", T0)
    assert info.value.event == "approve"
    assert info.value.status == status.value
    assert info.value.work_id == WID


# --- claim -------------------------------------------------------------------------------


def test_claim_opens_a_lease_and_charges_one_execution() -> None:
    item = make_item(attempt=2, executions=1, local_retries=3, claim_timeout=timedelta(minutes=7))
    after, event = transitions.claim(item, make_agent(A), at(30))
    assert after.status is CLAIMED
    assert after.attempt == 3
    assert after.executions == 2
    assert after.local_retries == 0
    assert after.claimed_by == A
    assert after.claimed_at == at(30)
    assert after.lease_expires_at == at(30) + timedelta(minutes=7)
    assert after.token == ClaimToken(WID, 3)
    assert_event(event, item, after, transitions.agent_actor(A), at(30))
    assert event.actor == f"agent:{A}"


def test_claim_is_allowed_exactly_at_not_before() -> None:
    item = make_item(not_before=at(10))
    after, _ = transitions.claim(item, make_agent(A), at(10))
    assert after.status is CLAIMED


def test_claim_before_not_before_is_refused() -> None:
    item = make_item(not_before=at(10))
    with pytest.raises(NotClaimable):
        transitions.claim(item, make_agent(A), at(10) - timedelta(microseconds=1))


@pytest.mark.parametrize("status", [HELD, CLAIMED, SUCCEEDED, FAILED, CANCELED])
def test_claim_of_a_non_pending_item_is_not_claimable(status: WorkStatus) -> None:
    with pytest.raises(NotClaimable):
        transitions.claim(make_item(status=status), make_agent(A), T0)


@pytest.mark.parametrize("status", [AgentStatus.DRAINING, AgentStatus.INACTIVE])
def test_claim_by_a_non_active_agent_is_not_eligible(status: AgentStatus) -> None:
    with pytest.raises(NotEligible) as info:
        transitions.claim(make_item(), make_agent(A, status=status), T0)
    assert info.value.agent_id == A
    # Even when it is listed by id.
    with pytest.raises(NotEligible):
        transitions.claim(
            make_item(targeting=Targeting.agents(A)), make_agent(A, status=status), T0
        )


def test_claim_by_a_non_matching_agent_is_not_eligible() -> None:
    item = make_item(targeting=Targeting.labels("gpu=true"))
    with pytest.raises(NotEligible):
        transitions.claim(item, make_agent(A, labels={"gpu": "false"}), T0)
    with pytest.raises(NotEligible):
        transitions.claim(make_item(targeting=Targeting.agents(B)), make_agent(A), T0)
    # The selector or the id list suffices.
    after, _ = transitions.claim(item, make_agent(A, labels={"gpu": "true"}), T0)
    assert after.claimed_by == A
    listed = make_item(targeting=Targeting(agent_ids=frozenset({A}), selector=None))
    after, _ = transitions.claim(listed, make_agent(A, labels={"gpu": "false"}), T0)
    assert after.claimed_by == A


@pytest.mark.parametrize(
    ("item", "agent", "finished", "error"),
    [
        (None, None, False, UnknownAgent),
        (make_item(status=HELD), None, False, UnknownAgent),
        (None, make_agent(A), False, UnknownWork),
        (None, make_agent(A), True, NotClaimable),
        # Item state is checked before the agent's state and targeting ...
        (make_item(status=HELD), make_agent(A, status=AgentStatus.DRAINING), False, NotClaimable),
        # ... and the agent before not_before.
        (
            make_item(not_before=at(60)),
            make_agent(A, status=AgentStatus.DRAINING),
            False,
            NotEligible,
        ),
        (
            make_item(not_before=at(60), targeting=Targeting.agents(B)),
            make_agent(A),
            False,
            NotEligible,
        ),
        (make_item(not_before=at(60)), make_agent(A), False, NotClaimable),
    ],
)
def test_check_claim_reports_errors_in_a_fixed_order(
    item: WorkItem | None, agent: Agent | None, finished: bool, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        transitions.check_claim(item, WID, agent, A, T0, finished=finished)
    assert type(info.value) is error


@settings(max_examples=200)
@given(
    item=wst.work_items(WID, T0, agent_ids=[A, B]),
    agent=wst.agents(A, "agent-a"),
    offset=st.sampled_from([0, 29, 30, 31, 119, 120, 500]),
)
def test_claimable_by_agrees_with_check_claim(item: WorkItem, agent: Agent, offset: int) -> None:
    now = at(offset)
    try:
        transitions.check_claim(item, item.id, agent, agent.id, now)
    except (NotClaimable, NotEligible):
        allowed = False
    else:
        allowed = True
    assert transitions.claimable_by(item, agent, now) is allowed
    expected = (
        item.status is PENDING
        and agent.status is AgentStatus.ACTIVE
        and item.targeting.matches(agent.id, agent.labels)
        and (item.not_before is None or item.not_before <= now)
    )
    assert allowed is expected


# --- heartbeat -----------------------------------------------------------------------------


def test_heartbeat_extends_the_lease_without_an_event() -> None:
    item = claimed_item()
    after, event = transitions.heartbeat(item, A, at(45))
    assert event is None
    assert after.lease_expires_at == at(45) + TIMEOUT
    assert after == attrs.evolve(item, lease_expires_at=at(45) + TIMEOUT)


def test_heartbeat_charges_new_local_retries_to_executions() -> None:
    item = claimed_item()
    after, event = transitions.heartbeat(item, A, at(10), local_retries=2)
    assert after.executions == 3
    assert after.local_retries == 2
    assert after.lease_expires_at == at(10) + TIMEOUT
    assert event is not None
    assert_event(event, item, after, transitions.agent_actor(A), at(10))
    assert event.from_status is CLAIMED
    assert "local retries reported: 2" in event.detail
    # Repeating (or lowering) the count charges nothing and records nothing.
    for reported in (2, 1, 0):
        again, none = transitions.heartbeat(after, A, at(20), local_retries=reported)
        assert none is None
        assert again.executions == 3
        assert again.local_retries == 2
        assert again.lease_expires_at == at(20) + TIMEOUT


def test_heartbeat_local_retries_beyond_the_budget_are_refused() -> None:
    item = claimed_item()  # max_retries 2: at most 3 executions; 1 used by the claim
    after, _ = transitions.heartbeat(item, A, at(1), local_retries=2)
    assert after.executions == 3 == after.max_executions
    with pytest.raises(BudgetSpent) as info:
        transitions.heartbeat(item, A, at(1), local_retries=3)
    assert info.value.limit == 3
    assert info.value.work_id == WID


# --- complete --------------------------------------------------------------------------------


def test_complete_moves_the_item_to_the_log_as_succeeded() -> None:
    item = claimed_item()
    record, event = transitions.complete(item, A, at(20), result="done", local_retries=1)
    assert isinstance(record, ExecutionRecord)
    assert record.status is SUCCEEDED
    assert record.success
    assert record.result == "done"
    assert record.finished_at == at(20)
    assert record.finished_by == transitions.agent_actor(A)
    assert record.item.executions == 2
    assert record.item.attempt == 1
    assert record.item.lease_expires_at is None
    assert_event(event, item, record.item, transitions.agent_actor(A), at(20))


def test_complete_with_too_many_local_retries_is_clamped_to_the_budget() -> None:
    item = claimed_item()  # 3 executions allowed, 1 used by the claim
    record, _ = transitions.complete(item, A, at(20), local_retries=7)
    assert record.status is SUCCEEDED
    assert record.item.executions == 3 == record.item.max_executions
    assert record.item.local_retries == 2


# --- fail --------------------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", list(Jitter))
@pytest.mark.parametrize("sample", [0.0, 0.3, 0.99])
def test_retryable_failure_with_budget_left_goes_back_to_pending(
    jitter: Jitter, sample: float
) -> None:
    policy = attrs.evolve(POLICY, jitter=jitter)
    item = claimed_item(retry_policy=policy)
    failure = Failure.retryable("Timeout", "too slow")
    after, event = transitions.fail(item, failure, "agent:x", at(40), jitter_sample=sample)
    assert isinstance(after, WorkItem)
    assert after.status is PENDING
    assert after.not_before == at(40) + policy.delay(1, sample)
    low, high = policy.delay_bounds(1)
    assert at(40) + low <= after.not_before <= at(40) + high
    assert after.claimed_by is None
    assert after.claimed_at is None
    assert after.lease_expires_at is None
    assert after.last_error == failure
    assert after.attempt == 1
    assert after.executions == 1
    assert_event(event, item, after, "agent:x", at(40))
    assert event.detail.startswith("retryable failure: Timeout: too slow")


def test_retry_delay_follows_the_executions_charged() -> None:
    """Local retries move the backoff on: the delay is that of retry number ``executions``."""
    item = claimed_item()
    after, _ = transitions.fail(
        item, Failure.retryable("Timeout"), "agent:x", at(40), local_retries=1
    )
    assert isinstance(after, WorkItem)
    assert after.executions == 2
    assert after.not_before == at(40) + POLICY.delay(2)
    assert after.not_before == at(60)


def test_permanent_failure_goes_to_the_log_even_with_budget_left() -> None:
    item = claimed_item()
    failure = Failure.permanent("InvalidImage", "no such image")
    record, event = transitions.fail(item, failure, "agent:x", at(40))
    assert isinstance(record, ExecutionRecord)
    assert record.status is FAILED
    assert not record.success
    assert record.item.last_error == failure
    assert record.item.executions == 1
    assert record.item.lease_expires_at is None
    assert record.finished_by == "agent:x"
    assert record.finished_at == at(40)
    assert_event(event, item, record.item, "agent:x", at(40))
    assert event.detail.startswith("permanent failure: InvalidImage")
    assert BUDGET_SPENT not in event.detail


def test_retryable_failure_with_budget_spent_goes_to_the_log() -> None:
    item = claimed_item(retry_policy=attrs.evolve(POLICY, max_retries=0))
    record, event = transitions.fail(item, Failure.retryable("Timeout"), "agent:x", at(40))
    assert isinstance(record, ExecutionRecord)
    assert record.status is FAILED
    assert record.item.executions == 1 == record.item.max_executions
    assert_event(event, item, record.item, "agent:x", at(40))
    assert BUDGET_SPENT in event.detail
    assert "retryable failure: Timeout" in event.detail


def test_local_retries_reported_on_failure_can_spend_the_budget() -> None:
    item = claimed_item()  # 3 executions allowed
    record, event = transitions.fail(
        item, Failure.retryable("Timeout"), "agent:x", at(40), local_retries=2
    )
    assert isinstance(record, ExecutionRecord)
    assert record.status is FAILED
    assert record.item.executions == 3
    assert BUDGET_SPENT in event.detail
    over, _ = transitions.fail(
        item, Failure.retryable("Timeout"), "agent:x", at(40), local_retries=9
    )
    assert isinstance(over, ExecutionRecord)
    assert over.status is FAILED
    assert (over.item.executions, over.item.local_retries) == (3, 2)


# --- lease expiry ----------------------------------------------------------------------------


def test_release_hands_the_claim_back_uncharged_at_once() -> None:
    item = claimed_item(not_before=T0)
    after, event = transitions.release(item, A, at(30), "shutdown")
    assert after.status is PENDING
    assert after.executions == 0  # the budget is as before the claim
    assert after.attempt == item.attempt == 1  # the released token stays stale
    assert (after.claimed_by, after.claimed_at, after.lease_expires_at) == (None, None, None)
    assert after.not_before is None  # claimable again at once
    assert_event(event, item, after, transitions.agent_actor(A), at(30))
    assert event.detail == "released: shutdown"


def test_release_keeps_local_retries_charged_and_only_refunds_the_interrupted_run() -> None:
    item, _ = transitions.heartbeat(claimed_item(), A, at(10), local_retries=2)
    assert item.executions == 3
    after, event = transitions.release(item, A, at(20))
    assert after.executions == 2
    assert after.local_retries == 0
    assert event.detail == "released"


def test_a_released_token_is_stale_and_the_next_claim_gets_a_fresh_one() -> None:
    item = claimed_item()
    old = item.token
    released, _ = transitions.release(item, A, at(5))
    with pytest.raises(LeaseLost):
        transitions.check_token(released, None, old, A)
    again, _ = transitions.claim(released, make_agent(B), at(6))
    assert again.token != old
    assert again.attempt == 2 and again.executions == 1
    with pytest.raises(LeaseLost):
        transitions.check_token(again, None, old, A)
    assert transitions.check_token(again, None, again.token, B) == again


@pytest.mark.parametrize("status", [HELD, PENDING, SUCCEEDED, FAILED, CANCELED])
def test_release_of_a_non_claimed_item_is_an_invalid_transition(status: WorkStatus) -> None:
    with pytest.raises(InvalidTransition):
        transitions.release(make_item(status=status), A, T0)


def test_released_runs_do_not_count_towards_the_budget() -> None:
    """Four graceful releases of a one-retry item then two real failures: FAILED only then."""
    qs = new_state()
    qs.submit(make_item(retry_policy=attrs.evolve(POLICY, max_retries=1)), "user", T0)
    now = T0
    for _ in range(4):
        claimed = qs.claim(WID, A, now)
        qs.release(claimed.token, A, now, "shutdown")
    assert stored(qs).executions == 0
    claimed = qs.claim(WID, A, now)
    qs.fail(claimed.token, A, now, Failure.retryable("Timeout"))
    now += timedelta(hours=1)
    claimed = qs.claim(WID, A, now)
    assert claimed.attempt == 6
    qs.fail(claimed.token, A, now, Failure.retryable("Timeout"))
    assert stored(qs).status is FAILED
    assert stored(qs).executions == 2


def test_lease_expired_is_inclusive_of_the_deadline() -> None:
    item = claimed_item()
    assert item.lease_expires_at == at(60)
    assert not transitions.lease_expired(item, at(60) - timedelta(microseconds=1))
    assert transitions.lease_expired(item, at(60))
    assert transitions.lease_expired(item, at(600))
    assert not transitions.lease_expired(make_item(), at(600))


def test_expire_is_a_retryable_failure_by_the_sweeper() -> None:
    item = claimed_item()
    after, event = transitions.expire(item, at(60))
    assert isinstance(after, WorkItem)
    assert after.status is PENDING
    assert after.not_before == at(60) + POLICY.delay(1)
    assert after.last_error is not None
    assert after.last_error.failure_class is FailureClass.RETRYABLE
    assert after.last_error.reason == LEASE_EXPIRED
    assert str(A) in after.last_error.message
    assert_event(event, item, after, transitions.SWEEPER, at(60))
    assert event.actor == "sweeper"
    assert LEASE_EXPIRED in event.detail


def test_expire_with_budget_spent_fails_the_item() -> None:
    item = claimed_item(retry_policy=attrs.evolve(POLICY, max_retries=0))
    record, event = transitions.expire(item, at(60))
    assert isinstance(record, ExecutionRecord)
    assert record.status is FAILED
    assert record.finished_by == "sweeper"
    assert BUDGET_SPENT in event.detail
    assert LEASE_EXPIRED in event.detail


# --- cancel and requeue ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [HELD, PENDING, CLAIMED])
def test_cancel_moves_a_queued_item_to_the_log(status: WorkStatus) -> None:
    item = claimed_item() if status is CLAIMED else make_item(status=status)
    record, event = transitions.cancel(item, "admin", at(3), reason="not needed")
    assert record.status is CANCELED
    assert record.result == "not needed"
    assert record.finished_by == "admin"
    assert record.item.lease_expires_at is None
    assert record.item.attempt == item.attempt
    assert_event(event, item, record.item, "admin", at(3))
    assert event.detail == "cancelled: not needed"


@pytest.mark.parametrize("status", [SUCCEEDED, FAILED, CANCELED])
def test_cancel_of_a_finished_item_is_refused(status: WorkStatus) -> None:
    with pytest.raises(InvalidTransition) as info:
        transitions.cancel(make_item(status=status), "admin", T0)
    assert info.value.event == "cancel"


def test_requeue_gives_a_fresh_budget_but_keeps_counting_attempts() -> None:
    claimed = claimed_item(retry_policy=attrs.evolve(POLICY, max_retries=0))
    record, _ = transitions.fail(claimed, Failure.retryable("Timeout"), "agent:x", at(10))
    assert isinstance(record, ExecutionRecord)
    after, event = transitions.requeue(record, "admin", at(20))
    assert after.status is PENDING
    assert after.executions == 0
    assert after.local_retries == 0
    assert after.attempt == record.item.attempt == 1
    assert after.not_before is None
    assert after.claimed_by is None
    assert after.claimed_at is None
    assert after.lease_expires_at is None
    assert_event(event, record.item, after, "admin", at(20))
    assert event.from_status is FAILED
    # The next claim is attempt 2, so the token of attempt 1 stays stale.
    reclaimed, _ = transitions.claim(after, make_agent(B), at(21))
    assert reclaimed.attempt == 2
    assert reclaimed.executions == 1


@pytest.mark.parametrize("status", [SUCCEEDED, CANCELED])
def test_requeue_of_anything_but_failed_is_refused(status: WorkStatus) -> None:
    record = ExecutionRecord(make_item(status=status), finished_at=T0, finished_by="x")
    with pytest.raises(InvalidTransition) as info:
        transitions.requeue(record, "admin", T0)
    assert info.value.event == "requeue"


# --- reports by a holder on an item that is not claimed -------------------------------------

HOLDER_REPORTS: dict[str, Callable[[WorkItem], object]] = {
    "heartbeat": lambda item: transitions.heartbeat(item, A, at(5)),
    "complete": lambda item: transitions.complete(item, A, at(5), "done"),
    "fail": lambda item: transitions.fail(item, Failure.permanent("Broken"), "agent:a", at(5)),
}


@pytest.mark.parametrize("event", sorted(HOLDER_REPORTS))
@pytest.mark.parametrize("status", [HELD, PENDING, SUCCEEDED, FAILED, CANCELED])
def test_holder_reports_on_an_item_that_is_not_claimed_are_refused(
    status: WorkStatus, event: str
) -> None:
    """The pure transitions guard the status themselves, not only the stores' token checks.

    The item looks like one A claimed before (attempt 1, A as the last holder), so only
    the status tells the transition that no claim is held.
    """
    item = make_item(status=status, attempt=1, executions=1, claimed_by=A, claimed_at=T0)
    with pytest.raises(InvalidTransition) as info:
        HOLDER_REPORTS[event](item)
    assert info.value.event == event
    assert info.value.status == status.value
    assert info.value.work_id == WID


# --- claim tokens ------------------------------------------------------------------------------


def test_check_token_returns_the_held_item() -> None:
    item = claimed_item()
    assert transitions.check_token(item, None, ClaimToken(WID, 1), A) is item


def test_check_token_by_another_agent_is_not_the_owner() -> None:
    with pytest.raises(NotClaimOwner) as info:
        transitions.check_token(claimed_item(), None, ClaimToken(WID, 1), B)
    assert info.value.agent_id == B


@pytest.mark.parametrize("attempt", [0, 2, 7])
def test_check_token_with_another_attempt_is_stale(attempt: int) -> None:
    with pytest.raises(LeaseLost) as info:
        transitions.check_token(claimed_item(), None, ClaimToken(WID, attempt), A)
    assert type(info.value) is LeaseLost
    assert info.value.attempt == attempt


def test_check_token_of_a_retried_item_is_stale() -> None:
    pending, _ = transitions.fail(claimed_item(), Failure.retryable("x"), "agent:x", at(1))
    assert isinstance(pending, WorkItem)
    with pytest.raises(LeaseLost) as info:
        transitions.check_token(pending, None, ClaimToken(WID, 1), A)
    assert type(info.value) is LeaseLost


def test_check_token_of_a_cancelled_claim_is_work_cancelled() -> None:
    record, _ = transitions.cancel(claimed_item(), "admin", at(1))
    with pytest.raises(WorkCancelled):
        transitions.check_token(None, record, ClaimToken(WID, 1), A)
    with pytest.raises(LeaseLost) as info:
        transitions.check_token(None, record, ClaimToken(WID, 0), A)
    assert type(info.value) is LeaseLost


def test_check_token_of_a_finished_item_is_stale_and_unknown_ids_are_unknown() -> None:
    record, _ = transitions.complete(claimed_item(), A, at(1))
    with pytest.raises(LeaseLost) as info:
        transitions.check_token(None, record, ClaimToken(WID, 1), A)
    assert type(info.value) is LeaseLost
    with pytest.raises(UnknownWork):
        transitions.check_token(None, None, ClaimToken(WID, 1), A)


# --- the table, end to end through ReferenceStore ------------------------------------------------

T1 = at(120)  # after the first claim's lease ran out (T0 + 60 s)

EVENTS = [
    "approve",
    "claim",
    "heartbeat",
    "complete",
    "fail_retryable",
    "fail_permanent",
    "sweep",
    "cancel",
    "requeue",
    "release",
]
TOKEN_EVENTS = {"heartbeat", "complete", "fail_retryable", "fail_permanent", "release"}

LEGAL: dict[tuple[WorkStatus, str], WorkStatus] = {
    (HELD, "approve"): PENDING,
    (HELD, "cancel"): CANCELED,
    (PENDING, "claim"): CLAIMED,
    (PENDING, "cancel"): CANCELED,
    (CLAIMED, "heartbeat"): CLAIMED,
    (CLAIMED, "complete"): SUCCEEDED,
    (CLAIMED, "fail_retryable"): PENDING,
    (CLAIMED, "fail_permanent"): FAILED,
    (CLAIMED, "sweep"): PENDING,
    (CLAIMED, "cancel"): CANCELED,
    (CLAIMED, "release"): PENDING,
    (FAILED, "requeue"): PENDING,
}
# The same terminal report repeated with the same token returns the same record.
REPEATS = {(SUCCEEDED, "complete"), (FAILED, "fail_permanent"), (FAILED, "fail_retryable")}


def refusal(status: WorkStatus, event: str) -> type[WorkqueueError] | None:
    """The error a pair outside the table raises (None: the step is a no-op)."""
    if event == "sweep":
        return None
    if event in TOKEN_EVENTS:
        return WorkCancelled if status is CANCELED else LeaseLost
    return {
        "approve": InvalidTransition,
        "claim": NotClaimable,
        "cancel": InvalidTransition,
        "requeue": InvalidTransition,
    }[event]


def new_state() -> ReferenceStore:
    qs = ReferenceStore(random_source=lambda: 0.0)
    qs.register_agent(make_agent(A))
    qs.register_agent(make_agent(B))
    return qs


def queue_in(status: WorkStatus) -> tuple[ReferenceStore, ClaimToken]:
    """A queue holding item WID in ``status``, and the token of its last claim (by A)."""
    qs = new_state()
    qs.submit(make_item(status=HELD if status is HELD else PENDING), "user", T0)
    if status in (HELD, PENDING):
        return qs, ClaimToken(WID, 0)
    qs.claim(WID, A, T0)
    token = ClaimToken(WID, 1)
    if status is SUCCEEDED:
        qs.complete(token, A, T0)
    elif status is FAILED:
        qs.fail(token, A, T0, Failure.permanent("InvalidImage"))
    elif status is CANCELED:
        qs.cancel(WID, "admin", T0)
    return qs, token


def perform(qs: ReferenceStore, event: str, token: ClaimToken) -> object:
    actions: dict[str, Callable[[], object]] = {
        "approve": lambda: qs.approve(WID, "admin", T1),
        "claim": lambda: qs.claim(WID, B, T1),
        "heartbeat": lambda: qs.heartbeat(token, A, T1),
        "complete": lambda: qs.complete(token, A, T1, result="ok"),
        "fail_retryable": lambda: qs.fail(token, A, T1, Failure.retryable("Timeout")),
        "fail_permanent": lambda: qs.fail(token, A, T1, Failure.permanent("InvalidImage")),
        "sweep": lambda: qs.sweep(T1),
        "cancel": lambda: qs.cancel(WID, "admin", T1),
        "requeue": lambda: qs.requeue(WID, "admin", T1),
        "release": lambda: qs.release(token, A, T1, "shutdown"),
    }
    return actions[event]()


Snapshot = tuple[WorkItem | None, ExecutionRecord | None, list[Event]]


def snapshot(qs: ReferenceStore) -> Snapshot:
    return (qs.get(WID), qs.get_record(WID), qs.events(WID))


def stored(qs: ReferenceStore) -> WorkItem:
    item = qs.get(WID)
    record = qs.get_record(WID)
    assert (item is None) != (record is None), "exactly one of queue or log holds the item"
    if item is not None:
        return item
    assert record is not None
    return record.item


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("status", list(WorkStatus))
def test_transition_table(status: WorkStatus, event: str) -> None:
    qs, token = queue_in(status)
    assert stored(qs).status is status
    before = snapshot(qs)
    before_item = stored(qs)

    if (status, event) in LEGAL:
        perform(qs, event, token)
        after = stored(qs)
        expected = LEGAL[(status, event)]
        assert after.status is expected
        assert (qs.get(WID) is None) is expected.is_terminal
        events = qs.events(WID)
        if event == "heartbeat":
            assert events == before[2]  # no local retries: no event
            assert after.lease_expires_at == T1 + TIMEOUT
            return
        assert len(events) == len(before[2]) + 1
        last = events[-1]
        assert last.from_status is status
        assert last.to_status is expected
        assert last.attempt == after.attempt
        assert last.executions == after.executions
        assert last.at == T1
        assert last.seq > before[2][-1].seq
        if event == "claim":
            assert after.attempt == before_item.attempt + 1
            assert after.claimed_by == B
        if event == "release":
            assert after.attempt == before_item.attempt
            assert after.executions == before_item.executions - 1
            assert last.detail == "released: shutdown"
        return

    if (status, event) in REPEATS:
        record = perform(qs, event, token)
        assert record == before[1]
        assert snapshot(qs) == before
        return

    error = refusal(status, event)
    if error is None:
        assert perform(qs, event, token) == []
    else:
        with pytest.raises(error) as info:
            perform(qs, event, token)
        assert type(info.value) is error
    assert snapshot(qs) == before, "a refused step changes nothing"


# --- typed errors through ReferenceStore -------------------------------------------------------


def test_unknown_ids_raise_unknown_work_and_unknown_agent() -> None:
    qs = new_state()
    ghost = UUID(int=999)
    with pytest.raises(UnknownAgent):
        qs.claim(WID, ghost, T0)
    with pytest.raises(UnknownAgent):
        qs.claim_next(ghost, T0)
    with pytest.raises(UnknownWork):
        qs.claim(ghost, A, T0)
    for action in (qs.cancel, qs.approve, qs.requeue):
        with pytest.raises(UnknownWork):
            action(ghost, "admin", T0)
    with pytest.raises(UnknownWork):
        qs.heartbeat(ClaimToken(ghost, 1), A, T0)
    with pytest.raises(UnknownWork):
        qs.complete(ClaimToken(ghost, 1), A, T0)
    with pytest.raises(UnknownWork):
        qs.fail(ClaimToken(ghost, 1), A, T0, Failure.retryable("x"))


def test_claim_of_a_finished_item_is_not_claimable() -> None:
    qs, _ = queue_in(SUCCEEDED)
    with pytest.raises(NotClaimable):
        qs.claim(WID, B, T1)
    assert qs.claim_next(B, T1) == []


@pytest.mark.parametrize("status", [AgentStatus.DRAINING, AgentStatus.INACTIVE])
def test_non_active_agents_claim_nothing(status: AgentStatus) -> None:
    qs = new_state()
    qs.submit(make_item(), "user", T0)
    qs.update_agent(A, status=status)
    before = snapshot(qs)
    with pytest.raises(NotEligible):
        qs.claim(WID, A, T0)
    assert qs.claim_next(A, T0) == []
    assert qs.pending_for(A, T0) == []
    assert snapshot(qs) == before
    assert [i.id for i in qs.claim_next(B, T0)] == [WID]


def test_non_matching_selector_is_not_eligible() -> None:
    qs = new_state()
    qs.submit(make_item(targeting=Targeting.labels("zone=a")), "user", T0)
    with pytest.raises(NotEligible):
        qs.claim(WID, A, T0)
    assert qs.claim_next(A, T0) == []
    qs.update_agent(A, labels={"zone": "a"})
    assert qs.claim(WID, A, T0).claimed_by == A


def test_another_agents_use_of_a_current_token_changes_nothing() -> None:
    qs, token = queue_in(CLAIMED)
    before = snapshot(qs)
    actions: list[Callable[[], object]] = [
        lambda: qs.heartbeat(token, B, T1),
        lambda: qs.complete(token, B, T1),
        lambda: qs.fail(token, B, T1, Failure.permanent("x")),
    ]
    for action in actions:
        with pytest.raises(NotClaimOwner):
            action()
        assert snapshot(qs) == before


def test_stale_token_after_a_sweep_and_a_new_claim_is_lease_lost() -> None:
    qs, old = queue_in(CLAIMED)
    assert qs.sweep(at(60))
    assert [i.attempt for i in qs.claim_next(B, at(60) + POLICY.delay(1))] == [2]
    before = snapshot(qs)
    for agent_id in (A, B):
        with pytest.raises(LeaseLost) as info:
            qs.heartbeat(old, agent_id, at(75))
        assert type(info.value) is LeaseLost
        with pytest.raises(LeaseLost):
            qs.complete(old, agent_id, at(75))
    assert snapshot(qs) == before
    assert qs.complete(ClaimToken(WID, 2), B, at(75)).status is SUCCEEDED


def test_repeated_completion_returns_the_same_record() -> None:
    qs, token = queue_in(CLAIMED)
    first = qs.complete(token, A, at(5), result="r")
    events = qs.events(WID)
    assert qs.complete(token, A, at(9), result="other") == first
    assert qs.events(WID) == events
    # Another agent repeating it is refused.
    with pytest.raises(LeaseLost):
        qs.complete(token, B, at(9))


# --- scenarios -----------------------------------------------------------------------------


def test_retry_waits_for_not_before_then_budget_spent_fails_for_good() -> None:
    qs = new_state()
    qs.submit(make_item(retry_policy=attrs.evolve(POLICY, max_retries=1)), "user", T0)
    (first,) = qs.claim_next(A, T0)
    assert (first.attempt, first.executions) == (1, 1)

    retried = qs.fail(first.token, A, at(5), Failure.retryable("Timeout"))
    assert isinstance(retried, WorkItem)
    assert retried.status is PENDING
    assert retried.not_before == at(5) + POLICY.delay(1) == at(15)
    assert qs.claim_next(A, at(15) - timedelta(microseconds=1)) == []
    with pytest.raises(NotClaimable):
        qs.claim(WID, A, at(14))

    (second,) = qs.claim_next(B, at(15))
    assert (second.attempt, second.executions, second.claimed_by) == (2, 2, B)

    record = qs.fail(second.token, B, at(20), Failure.retryable("Timeout"))
    assert isinstance(record, ExecutionRecord)
    assert record.status is FAILED
    assert record.item.executions == 2 == record.item.max_executions
    assert qs.get(WID) is None
    assert BUDGET_SPENT in qs.events(WID)[-1].detail
    for agent_id in (A, B):
        assert qs.claim_next(agent_id, at(10_000)) == []
        with pytest.raises(NotClaimable):
            qs.claim(WID, agent_id, at(10_000))

    requeued = qs.requeue(WID, "admin", at(30))
    assert (requeued.status, requeued.attempt, requeued.executions) == (PENDING, 2, 0)
    (third,) = qs.claim_next(A, at(30))
    assert (third.attempt, third.executions) == (3, 1)
    with pytest.raises(LeaseLost):
        qs.heartbeat(second.token, B, at(31))


def test_local_retries_reported_by_heartbeat_are_charged_once() -> None:
    qs = new_state()
    qs.submit(make_item(retry_policy=attrs.evolve(POLICY, max_retries=3)), "user", T0)
    (item,) = qs.claim_next(A, T0)
    hb = qs.heartbeat(item.token, A, at(10), local_retries=2)
    assert (hb.executions, hb.local_retries) == (3, 2)
    assert hb.lease_expires_at == at(10) + TIMEOUT
    last = qs.events(WID)[-1]
    assert (last.from_status, last.to_status, last.executions) == (CLAIMED, CLAIMED, 3)
    n_events = len(qs.events(WID))

    again = qs.heartbeat(item.token, A, at(20), local_retries=2)
    assert again.executions == 3
    assert len(qs.events(WID)) == n_events

    before = snapshot(qs)
    with pytest.raises(BudgetSpent) as info:
        qs.heartbeat(item.token, A, at(30), local_retries=4)
    assert info.value.limit == 4
    assert snapshot(qs) == before

    record = qs.complete(item.token, A, at(40), local_retries=3)
    assert record.item.executions == 4
    assert qs.events(WID)[-1].executions == 4


def test_sweep_expires_only_leases_that_ran_out() -> None:
    qs = new_state()
    qs.submit(make_item(), "user", T0)
    (item,) = qs.claim_next(A, T0)
    assert item.lease_expires_at == at(60)
    assert qs.sweep(at(59)) == []
    qs.heartbeat(item.token, A, at(30))
    assert qs.sweep(at(60)) == []
    (swept,) = qs.sweep(at(90))
    assert isinstance(swept, WorkItem)
    assert swept.status is PENDING
    assert swept.not_before == at(90) + POLICY.delay(1)
    assert swept.last_error is not None
    assert swept.last_error.reason == LEASE_EXPIRED
    last = qs.events(WID)[-1]
    assert last.actor == transitions.SWEEPER
    assert (last.from_status, last.to_status, last.attempt, last.executions) == (
        CLAIMED,
        PENDING,
        1,
        1,
    )
    with pytest.raises(LeaseLost):
        qs.heartbeat(item.token, A, at(91))


def test_cancelled_claim_tells_the_agent_to_stop() -> None:
    qs, token = queue_in(CLAIMED)
    record = qs.cancel(WID, "admin", at(5), reason="changed my mind")
    assert record.status is CANCELED
    assert record.result == "changed my mind"
    actions: list[Callable[[], object]] = [
        lambda: qs.heartbeat(token, A, at(6)),
        lambda: qs.complete(token, A, at(6)),
        lambda: qs.fail(token, A, at(6), Failure.retryable("x")),
    ]
    for action in actions:
        with pytest.raises(WorkCancelled):
            action()
    assert qs.get_record(WID) == record


def test_events_carry_increasing_sequence_numbers() -> None:
    qs, token = queue_in(CLAIMED)
    qs.heartbeat(token, A, at(1), local_retries=1)
    qs.fail(token, A, at(2), Failure.retryable("x"))
    events = qs.events(WID)
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, PENDING),
        (PENDING, CLAIMED),
        (CLAIMED, CLAIMED),
        (CLAIMED, PENDING),
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert [e.executions for e in events] == [0, 1, 2, 2]
