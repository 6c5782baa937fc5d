"""Invariants 6 and 7 over generated histories: the retry budget is never exceeded, and a
retried item is never claimable before its ``not_before``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import event, given, settings
from hypothesis import strategies as st

from workqueue_core.domain.errors import BudgetSpent, NotClaimable, WorkqueueError
from workqueue_core.domain.models import (
    Agent,
    ClaimToken,
    Event,
    ExecutionRecord,
    Failure,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.testing.clock import EPOCH

AGENTS = (UUID(int=0xA), UUID(int=0xB))
CLAIMED = WorkStatus.CLAIMED


def seconds(values: list[int]) -> st.SearchStrategy[timedelta]:
    return st.sampled_from(values).map(lambda s: timedelta(seconds=s))


@st.composite
def policies(draw: st.DrawFn, min_retries: int = 0) -> RetryPolicy:
    base = draw(seconds([0, 0, 1, 5, 60]))
    return RetryPolicy(
        max_retries=draw(st.integers(min_retries, 5)),
        base_delay=base,
        multiplier=draw(st.sampled_from([1.0, 2.0, 3.0])),
        max_delay=base + draw(seconds([0, 30, 600])),
        jitter=draw(st.sampled_from(list(Jitter))),
    )


@st.composite
def items(draw: st.DrawFn, index: int) -> WorkItem:
    return WorkItem(
        id=UUID(int=index + 1),
        work_type="job",
        spec="{}",
        targeting=Targeting.everyone(),
        created_at=EPOCH,
        retry_policy=draw(policies()),
        claim_timeout=draw(seconds([10, 60, 300])),
        priority=draw(st.integers(-1, 1)),
    )


@st.composite
def item_lists(draw: st.DrawFn) -> list[WorkItem]:
    count = draw(st.integers(1, 3))
    return [draw(items(i)) for i in range(count)]


token_index = st.integers(0, 3)  # counted from the most recent claim
local = st.integers(0, 3)
by_holder = st.sampled_from([True, True, True, False])

operations = st.one_of(
    st.tuples(st.just("claim"), st.integers(0, 1)),
    st.tuples(st.just("claim"), st.integers(0, 1)),
    st.tuples(st.just("fail"), token_index, st.booleans(), local, by_holder),
    st.tuples(st.just("fail"), token_index, st.just(True), local, by_holder),
    st.tuples(st.just("heartbeat"), token_index, local, by_holder),
    st.tuples(st.just("complete"), token_index, local, by_holder),
    st.tuples(st.just("release"), token_index, st.just(0), by_holder),
    st.tuples(st.just("advance"), st.sampled_from([0, 1, 5, 30, 61, 120, 600, 3600])),
    st.tuples(st.just("sweep")),
)


@dataclass
class Budget:
    """What the test itself has seen of one item: claims, releases (refunded) and
    accepted local retries."""

    limit: int
    claims: int = 0
    released: int = 0
    local_total: int = 0
    local_current: int = 0

    @property
    def executions(self) -> int:
        return self.claims - self.released + self.local_total

    def would_overspend(self, reported: int) -> bool:
        return reported > self.local_current and (
            self.executions + reported - self.local_current > self.limit
        )

    def report(self, reported: int) -> None:
        if reported > self.local_current:
            self.local_total += reported - self.local_current
            self.local_current = reported


@dataclass
class History:
    qs: ReferenceStore
    now: datetime = EPOCH
    budgets: dict[UUID, Budget] = field(default_factory=dict)
    tokens: list[tuple[ClaimToken, UUID]] = field(default_factory=list)


def current(qs: ReferenceStore, work_id: UUID) -> WorkItem:
    item = qs.get(work_id)
    record = qs.get_record(work_id)
    assert (item is None) != (record is None), f"{work_id} must be in exactly one of queue/log"
    if item is not None:
        return item
    assert record is not None
    return record.item


def snapshot(qs: ReferenceStore, ids: list[UUID]) -> list[object]:
    return [(qs.get(i), qs.get_record(i), qs.events(i)) for i in ids]


def charged_from_events(events: list[Event]) -> tuple[int, int, int]:
    """(claims, local retries, releases) read from a timeline without requeues."""
    assert events[0].from_status is None
    claims = local_retries = releases = 0
    previous = events[0].executions
    assert previous == 0
    for step_event in events[1:]:
        executions = step_event.executions
        if step_event.from_status is WorkStatus.PENDING and step_event.to_status is CLAIMED:
            claims += 1
            assert executions == previous + 1, "a claim charges exactly one execution"
        elif step_event.detail.startswith("released"):
            releases += 1
            assert step_event.to_status is WorkStatus.PENDING
            assert executions == previous - 1, "a release refunds exactly the interrupted run"
        else:
            assert executions >= previous, "only a requeue lowers executions"
            local_retries += executions - previous
        previous = executions
    return claims, local_retries, releases


def check_invariants(h: History) -> None:
    for work_id, budget in h.budgets.items():
        state = current(h.qs, work_id)
        limit = state.retry_policy.max_retries + 1
        assert budget.limit == limit
        assert state.executions <= limit
        assert state.attempt - budget.released <= limit  # released claims are not charged
        assert state.executions == budget.executions
        assert state.attempt == budget.claims
        claims, local_retries, releases = charged_from_events(h.qs.events(work_id))
        assert claims - releases + local_retries <= limit
        assert (claims, local_retries, releases) == (
            budget.claims,
            budget.local_total,
            budget.released,
        )
        if state.status is WorkStatus.FAILED and state.executions == limit:
            event("an item failed with its budget spent")
            for agent_id in AGENTS:
                assert work_id not in [
                    i.id for i in h.qs.pending_for(agent_id, h.now + timedelta(days=365))
                ]
                try:
                    h.qs.claim(work_id, agent_id, h.now + timedelta(days=365))
                except NotClaimable:
                    pass
                else:
                    raise AssertionError(f"{work_id} was claimed after its budget was spent")


def step(h: History, op: tuple[Any, ...]) -> None:
    qs = h.qs
    kind = op[0]
    if kind == "advance":
        h.now += timedelta(seconds=op[1])
        return
    if kind == "claim":
        agent_id = AGENTS[op[1]]
        for item in qs.claim_next(agent_id, h.now):
            assert item.status is WorkStatus.CLAIMED
            assert item.not_before is None or item.not_before <= h.now
            budget = h.budgets[item.id]
            if budget.claims:
                event("a retried item was claimed again")
            budget.claims += 1
            budget.local_current = 0
            h.tokens.append((item.token, agent_id))
        return
    if kind == "sweep":
        swept = qs.sweep(h.now)
        for state in swept:
            item = state.item if isinstance(state, ExecutionRecord) else state
            assert item.last_error is not None
            assert qs.events(item.id)[-1].actor == "sweeper"
        return
    if not h.tokens:
        return
    token, holder = h.tokens[-1 - op[1] % len(h.tokens)]
    agent_id = holder if op[-1] else next(a for a in AGENTS if a != holder)
    reported: int = op[-2]
    budget = h.budgets[token.work_id]
    # Only a heartbeat refuses an overspending report; complete and fail clamp it.
    overspend = budget.would_overspend(reported) and kind == "heartbeat"
    ids = list(h.budgets)
    before = snapshot(qs, ids)
    finished = qs.get_record(token.work_id) is not None
    try:
        if kind == "heartbeat":
            qs.heartbeat(token, agent_id, h.now, local_retries=reported)
        elif kind == "complete":
            qs.complete(token, agent_id, h.now, local_retries=reported)
        elif kind == "release":
            qs.release(token, agent_id, h.now, "shutdown")
        else:
            failure = Failure.retryable("Timeout") if op[2] else Failure.permanent("Invalid")
            qs.fail(token, agent_id, h.now, failure, local_retries=reported)
    except BudgetSpent:
        event("report refused: BudgetSpent")
        assert overspend, "BudgetSpent raised although the report fits the budget"
        assert snapshot(qs, ids) == before, "a refused report changes nothing"
    except WorkqueueError:
        assert snapshot(qs, ids) == before, "a refused report changes nothing"
    else:
        if kind == "release":
            event("a claim was released")
            budget.released += 1
            budget.local_current = 0
        elif finished:  # a repeated terminal report: answered from the log
            assert snapshot(qs, ids) == before
        else:
            assert not overspend, "a report beyond the budget was accepted"
            budget.report(min(reported, budget.local_current + budget.limit - budget.executions))


@settings(max_examples=500, deadline=None)
@given(
    work=item_lists(),
    ops=st.lists(operations, min_size=5, max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_no_item_ever_exceeds_its_budget(
    work: list[WorkItem], ops: list[tuple[Any, ...]], seed: int
) -> None:
    rng = random.Random(seed)
    h = History(ReferenceStore(random_source=rng.random))
    for i, agent_id in enumerate(AGENTS):
        h.qs.register_agent(Agent(id=agent_id, name=f"agent-{i}", registered_at=EPOCH))
    for item in work:
        h.qs.submit(item, "user", EPOCH)
        h.budgets[item.id] = Budget(item.max_executions)
    check_invariants(h)
    for op in ops:
        step(h, op)
        check_invariants(h)


# --- invariant 7 -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(min_retries=1),
    sample=st.floats(0.0, 1.0, exclude_max=True),
    claim_timeout=seconds([10, 60, 300]),
    reported=st.integers(0, 3),
    fail_after=st.integers(0, 500),
    fraction=st.floats(0.0, 1.0, exclude_max=True),
    swept=st.booleans(),
)
def test_retried_item_is_not_claimable_before_not_before(
    policy: RetryPolicy,
    sample: float,
    claim_timeout: timedelta,
    reported: int,
    fail_after: int,
    fraction: float,
    swept: bool,
) -> None:
    qs = ReferenceStore(random_source=lambda: sample)
    for i, agent_id in enumerate(AGENTS):
        qs.register_agent(Agent(id=agent_id, name=f"agent-{i}", registered_at=EPOCH))
    work = WorkItem(
        id=UUID(int=1),
        work_type="job",
        spec="{}",
        targeting=Targeting.everyone(),
        created_at=EPOCH,
        retry_policy=policy,
        claim_timeout=claim_timeout,
    )
    qs.submit(work, "user", EPOCH)
    (claimed,) = qs.claim_next(AGENTS[0], EPOCH)
    reported = min(reported, policy.max_retries - 1)  # leave budget for one more run
    if swept:
        qs.heartbeat(claimed.token, AGENTS[0], EPOCH, local_retries=reported)
        failed_at = EPOCH + claim_timeout + timedelta(seconds=fail_after)
        (retried,) = qs.sweep(failed_at)
    else:
        failed_at = EPOCH + timedelta(seconds=fail_after)
        retried = qs.fail(
            claimed.token, AGENTS[0], failed_at, Failure.retryable("Timeout"), reported
        )
    assert isinstance(retried, WorkItem)
    assert retried.status is WorkStatus.PENDING
    assert retried.executions == 1 + reported
    assert retried.not_before == failed_at + policy.delay(retried.executions, sample)
    not_before = retried.not_before

    wait_us = (not_before - failed_at) // timedelta(microseconds=1)
    if wait_us > 0:
        probes = {
            failed_at + timedelta(microseconds=int(wait_us * fraction)),
            not_before - timedelta(microseconds=1),
        }
        for probe in sorted(probes):
            assert probe < not_before
            for agent_id in AGENTS:
                assert qs.pending_for(agent_id, probe) == []
                assert qs.claim_next(agent_id, probe) == []
                try:
                    qs.claim(work.id, agent_id, probe)
                except NotClaimable:
                    pass
                else:
                    raise AssertionError(f"claimed at {probe} before not_before {not_before}")
        assert qs.get(work.id) == retried

    (again,) = qs.claim_next(AGENTS[1], not_before)
    assert again.id == work.id
    assert again.attempt == 2
    assert again.executions == retried.executions + 1
    assert again.claimed_by == AGENTS[1]
