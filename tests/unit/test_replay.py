"""Invariant 9: an item's event timeline replays to its stored state; broken ones are refused."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any
from uuid import UUID

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workqueue_core.domain.errors import WorkqueueError
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
from workqueue_core.domain.replay import ReplayedState, ReplayError, agrees, replay
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.testing.clock import EPOCH

AGENTS = (UUID(int=0xA), UUID(int=0xB))
PENDING = WorkStatus.PENDING
CLAIMED = WorkStatus.CLAIMED


# --- generated histories --------------------------------------------------------------------


@st.composite
def items(draw: st.DrawFn, index: int) -> WorkItem:
    base = timedelta(seconds=draw(st.sampled_from([0, 1, 30])))
    return WorkItem(
        id=UUID(int=index + 1),
        work_type="job",
        spec="{}",
        targeting=Targeting.everyone(),
        created_at=EPOCH,
        retry_policy=RetryPolicy(
            max_retries=draw(st.integers(0, 3)),
            base_delay=base,
            multiplier=2.0,
            max_delay=base + timedelta(seconds=60),
            jitter=draw(st.sampled_from(list(Jitter))),
        ),
        claim_timeout=timedelta(seconds=draw(st.sampled_from([10, 60]))),
        status=draw(st.sampled_from([PENDING, PENDING, WorkStatus.HELD])),
        correlation_id=f"corr-{index}",
    )


@st.composite
def item_lists(draw: st.DrawFn) -> list[WorkItem]:
    return [draw(items(i)) for i in range(draw(st.integers(1, 3)))]


pick = st.integers(0, 3)
operations = st.one_of(
    st.tuples(st.just("claim"), st.integers(0, 1)),
    st.tuples(st.just("claim"), st.integers(0, 1)),
    st.tuples(st.just("heartbeat"), pick, st.integers(0, 3)),
    st.tuples(st.just("complete"), pick, st.integers(0, 2)),
    st.tuples(st.just("fail"), pick, st.booleans(), st.integers(0, 2)),
    st.tuples(st.just("release"), pick),
    st.tuples(st.just("advance"), st.sampled_from([1, 11, 61, 600])),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("approve"), pick),
    st.tuples(st.just("cancel"), pick),
    st.tuples(st.just("requeue"), pick),
)


def current(qs: ReferenceStore, work_id: UUID) -> WorkItem | ExecutionRecord:
    item = qs.get(work_id)
    record = qs.get_record(work_id)
    assert (item is None) != (record is None)
    if item is not None:
        return item
    assert record is not None
    return record


def run_history(
    work: list[WorkItem], ops: list[tuple[Any, ...]], seed: int, check_each_step: bool
) -> ReferenceStore:
    """Drive a ReferenceStore through ``ops``; refused steps must change nothing."""
    qs = ReferenceStore(random_source=random.Random(seed).random)
    for i, agent_id in enumerate(AGENTS):
        qs.register_agent(Agent(id=agent_id, name=f"agent-{i}", registered_at=EPOCH))
    ids = [item.id for item in work]
    for item in work:
        qs.submit(item, "user", EPOCH)
    now = EPOCH
    tokens: list[tuple[ClaimToken, UUID]] = []
    for op in ops:
        kind = op[0]
        before = [(qs.get(i), qs.get_record(i), qs.events(i)) for i in ids]
        try:
            if kind == "advance":
                now += timedelta(seconds=op[1])
            elif kind == "claim":
                agent_id = AGENTS[op[1]]
                tokens += [(i.token, agent_id) for i in qs.claim_next(agent_id, now)]
            elif kind == "sweep":
                qs.sweep(now)
            elif kind in ("approve", "cancel", "requeue"):
                work_id = ids[op[1] % len(ids)]
                getattr(qs, kind)(work_id, "admin", now)
            elif tokens:
                token, agent_id = tokens[-1 - op[1] % len(tokens)]
                if kind == "heartbeat":
                    qs.heartbeat(token, agent_id, now, local_retries=op[2])
                elif kind == "complete":
                    qs.complete(token, agent_id, now, result="ok", local_retries=op[2])
                elif kind == "release":
                    qs.release(token, agent_id, now, "shutdown")
                else:
                    failure = Failure.retryable("Timeout") if op[2] else Failure.permanent("Bad")
                    qs.fail(token, agent_id, now, failure, local_retries=op[3])
        except WorkqueueError:
            assert [(qs.get(i), qs.get_record(i), qs.events(i)) for i in ids] == before
        if check_each_step:
            for work_id in ids:
                assert_replays(qs, work_id)
    return qs


def assert_replays(qs: ReferenceStore, work_id: UUID) -> ReplayedState:
    events = qs.events(work_id)
    stored = current(qs, work_id)
    item = stored.item if isinstance(stored, ExecutionRecord) else stored
    state = replay(events)
    assert agrees(state, stored)
    assert state.steps == len(events)
    assert state.status is item.status
    assert state.attempt == item.attempt
    assert state.executions == item.executions
    if item.status is CLAIMED:
        assert state.claimed_by == item.claimed_by
    return state


@settings(max_examples=300, deadline=None)
@given(work=item_lists(), ops=st.lists(operations, max_size=40), seed=st.integers(0, 2**32 - 1))
def test_every_timeline_replays_to_the_stored_state(
    work: list[WorkItem], ops: list[tuple[Any, ...]], seed: int
) -> None:
    run_history(work, ops, seed, check_each_step=True)


def timelines(min_events: int, claimed: bool = False) -> st.SearchStrategy[list[Event]]:
    """Timelines of at least ``min_events`` events taken from generated histories
    (with ``claimed``: with a claim before the last event)."""

    prefix: list[tuple[Any, ...]] = (
        [("approve", 0), ("approve", 1), ("approve", 2), ("claim", 0), ("claim", 1)]
        if claimed
        else []
    )

    def build(work: list[WorkItem], ops: list[tuple[Any, ...]], seed: int) -> list[Event]:
        qs = run_history(work, [*prefix, *ops], seed, check_each_step=False)
        return max((qs.events(item.id) for item in work), key=len)

    return st.builds(
        build, item_lists(), st.lists(operations, min_size=4, max_size=30), st.integers(0, 99)
    ).filter(
        lambda events: (
            len(events) >= min_events and (not claimed or any(e.attempt >= 1 for e in events[:-1]))
        )
    )


@settings(max_examples=100, deadline=None)
@given(events=timelines(2), data=st.data())
def test_swapping_two_events_breaks_the_timeline(events: list[Event], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(events) - 2))
    j = data.draw(st.integers(i + 1, len(events) - 1))
    broken = list(events)
    broken[i], broken[j] = broken[j], broken[i]
    with pytest.raises(ReplayError):
        replay(broken)


@settings(max_examples=100, deadline=None)
@given(events=timelines(2), data=st.data())
def test_a_step_whose_from_status_does_not_follow_breaks_the_timeline(
    events: list[Event], data: st.DataObject
) -> None:
    k = data.draw(st.integers(1, len(events) - 1))
    wrong = data.draw(
        st.sampled_from([None, *(s for s in WorkStatus if s is not events[k - 1].to_status)])
    )
    broken = [*events[:k], attrs.evolve(events[k], from_status=wrong), *events[k + 1 :]]
    with pytest.raises(ReplayError):
        replay(broken)


@settings(max_examples=100, deadline=None)
@given(events=timelines(2), data=st.data())
def test_a_sequence_number_that_does_not_increase_breaks_the_timeline(
    events: list[Event], data: st.DataObject
) -> None:
    k = data.draw(st.integers(1, len(events) - 1))
    seq = data.draw(st.integers(0, events[k - 1].seq))
    broken = [*events[:k], attrs.evolve(events[k], seq=seq), *events[k + 1 :]]
    with pytest.raises(ReplayError):
        replay(broken)


@settings(max_examples=100, deadline=None)
@given(events=timelines(3, claimed=True), data=st.data())
def test_an_attempt_going_down_breaks_the_timeline(
    events: list[Event], data: st.DataObject
) -> None:
    candidates = [k for k in range(1, len(events)) if events[k - 1].attempt >= 1]
    k = data.draw(st.sampled_from(candidates))
    attempt = data.draw(st.integers(0, events[k - 1].attempt - 1))
    broken = [*events[:k], attrs.evolve(events[k], attempt=attempt), *events[k + 1 :]]
    with pytest.raises(ReplayError):
        replay(broken)


@settings(max_examples=100, deadline=None)
@given(events=timelines(2))
def test_every_prefix_replays_and_dropping_the_submit_breaks_it(events: list[Event]) -> None:
    for n in range(1, len(events) + 1):
        state = replay(events[:n])
        assert state.steps == n
        assert state.status is events[n - 1].to_status
        assert state.attempt == events[n - 1].attempt
    with pytest.raises(ReplayError):
        replay(events[1:])


# --- hand-written timelines -----------------------------------------------------------------

W = UUID(int=1)


def ev(
    seq: int,
    from_status: WorkStatus | None,
    to_status: WorkStatus,
    attempt: int = 0,
    executions: int = 0,
    claimed_by: UUID | None = None,
) -> Event:
    return Event(
        work_id=W,
        from_status=from_status,
        to_status=to_status,
        actor="test",
        at=EPOCH + timedelta(seconds=seq),
        attempt=attempt,
        executions=executions,
        claimed_by=claimed_by,
        seq=seq,
    )


GOOD = [
    ev(1, None, PENDING),
    ev(4, PENDING, CLAIMED, 1, 1, AGENTS[0]),
    ev(9, CLAIMED, CLAIMED, 1, 3, AGENTS[0]),
    ev(10, CLAIMED, PENDING, 1, 3),
    ev(30, PENDING, CLAIMED, 2, 4, AGENTS[1]),
]


def test_a_good_timeline_with_sequence_gaps_replays() -> None:
    assert replay(GOOD) == ReplayedState(CLAIMED, 2, 4, AGENTS[1], 5)


def test_an_empty_timeline_is_refused() -> None:
    with pytest.raises(ReplayError):
        replay([])


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param([ev(1, PENDING, CLAIMED, 1, 1)], id="not-starting-at-submit"),
        pytest.param(GOOD[1:], id="submit-missing"),
        pytest.param([GOOD[0], GOOD[2]], id="from-status-does-not-follow"),
        pytest.param([GOOD[0], ev(1, PENDING, CLAIMED, 1, 1)], id="repeated-seq"),
        pytest.param([*GOOD[:2], ev(3, CLAIMED, PENDING, 1, 1)], id="seq-going-back"),
        pytest.param([*GOOD[:4], ev(31, PENDING, CLAIMED, 0, 4)], id="attempt-going-down"),
        pytest.param([GOOD[0], GOOD[0]], id="submitted-twice"),
    ],
)
def test_broken_timelines_are_refused(broken: list[Event]) -> None:
    with pytest.raises(ReplayError):
        replay(broken)


def test_replay_error_is_a_workqueue_error() -> None:
    assert issubclass(ReplayError, WorkqueueError)
    assert ReplayError.code == "replay-error"


def claimed_item() -> WorkItem:
    return WorkItem(
        id=W,
        work_type="job",
        spec="{}",
        targeting=Targeting.everyone(),
        created_at=EPOCH,
        status=CLAIMED,
        attempt=2,
        executions=4,
        claimed_by=AGENTS[1],
    )


@pytest.mark.parametrize(
    "change",
    [
        {"status": PENDING},
        {"attempt": 1},
        {"attempt": 3},
        {"executions": 3},
        {"claimed_by": AGENTS[0]},
        {"claimed_by": None},
    ],
    ids=repr,
)
def test_agrees_detects_every_difference(change: dict[str, Any]) -> None:
    state = replay(GOOD)
    item = claimed_item()
    assert agrees(state, item)
    assert not agrees(attrs.evolve(state, **change), item)


def test_agrees_reads_log_records_and_ignores_claimed_by_outside_claims() -> None:
    item = attrs.evolve(claimed_item(), status=WorkStatus.SUCCEEDED)
    record = ExecutionRecord(item, finished_at=EPOCH, finished_by="agent")
    state = ReplayedState(WorkStatus.SUCCEEDED, 2, 4, None, 6)
    assert agrees(state, record)
    assert agrees(state, item)
    assert not agrees(attrs.evolve(state, status=WorkStatus.FAILED), record)
