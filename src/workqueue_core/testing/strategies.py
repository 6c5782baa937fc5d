"""Hypothesis strategies for the domain: labels, selectors, targeting, policies, items, agents.

Keys and values come from small alphabets so that generated selectors and label
sets overlap often: matches and non-matches are both common.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from hypothesis import strategies as st

from workqueue_core.models import (
    Agent,
    AgentStatus,
    Failure,
    FailureClass,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.retry import Jitter, RetryPolicy
from workqueue_core.selectors import LabelSelector, Operator, Requirement
from workqueue_core.testing.clock import EPOCH

LABEL_KEYS = ("zone", "gpu", "arch", "tier", "example.com/team")
LABEL_VALUES = ("a", "b", "c", "true", "")

WORK_TYPES = ("build", "job", "test")


def label_keys() -> st.SearchStrategy[str]:
    """Label keys from a small set, one of them prefixed."""
    return st.sampled_from(LABEL_KEYS)


def label_values() -> st.SearchStrategy[str]:
    """Label values from a small set, the empty value included."""
    return st.sampled_from(LABEL_VALUES)


def label_sets() -> st.SearchStrategy[dict[str, str]]:
    """Agent label sets."""
    return st.dictionaries(label_keys(), label_values(), max_size=len(LABEL_KEYS))


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    """One selector requirement with a valid operator/value combination."""
    key = draw(label_keys())
    operator = draw(st.sampled_from(list(Operator)))
    if operator in (Operator.EQUALS, Operator.NOT_EQUALS):
        values: tuple[str, ...] = (draw(label_values()),)
    elif operator in (Operator.IN, Operator.NOT_IN):
        values = tuple(draw(st.lists(label_values(), min_size=1, max_size=3, unique=True)))
    else:
        values = ()
    return Requirement(key, operator, values)


def selectors(max_requirements: int = 3) -> st.SearchStrategy[LabelSelector]:
    """Label selectors of up to ``max_requirements`` requirements (possibly empty)."""
    return st.lists(requirements(), max_size=max_requirements).map(
        lambda reqs: LabelSelector(tuple(reqs))
    )


def targetings(agent_ids: Sequence[UUID] = ()) -> st.SearchStrategy[Targeting]:
    """Targeting by some of ``agent_ids``, by a selector, or both; never neither."""
    ids = (
        st.frozensets(st.sampled_from(list(agent_ids)), max_size=len(agent_ids))
        if agent_ids
        else st.just(frozenset[UUID]())
    )

    def build(chosen: frozenset[UUID], selector: LabelSelector | None) -> Targeting:
        if not chosen and selector is None:
            return Targeting.everyone()
        return Targeting(agent_ids=chosen, selector=selector)

    everyone = st.just(Targeting.everyone())
    return st.one_of(everyone, everyone, st.builds(build, ids, st.none() | selectors()))


def durations(min_seconds: int = 0, max_seconds: int = 600) -> st.SearchStrategy[timedelta]:
    """Whole-second durations (exact in every store's timestamp type)."""
    return st.integers(min_seconds, max_seconds).map(lambda s: timedelta(seconds=s))


def retry_policies(jitter: bool = False) -> st.SearchStrategy[RetryPolicy]:
    """Small budgets and delays; zero delays are frequent so retries are reachable soon."""

    def build(
        max_retries: int, base: timedelta, multiplier: float, extra: timedelta, jit: Jitter
    ) -> RetryPolicy:
        return RetryPolicy(max_retries, base, multiplier, base + extra, jit)

    return st.builds(
        build,
        st.integers(0, 4),
        st.sampled_from([0, 0, 1, 5, 60]).map(lambda s: timedelta(seconds=s)),
        st.sampled_from([1.0, 2.0, 3.0]),
        st.sampled_from([0, 30, 600]).map(lambda s: timedelta(seconds=s)),
        st.sampled_from(list(Jitter)) if jitter else st.just(Jitter.NONE),
    )


def failures() -> st.SearchStrategy[Failure]:
    """Permanent or retryable failures with a reason from a small set."""
    return st.builds(
        Failure,
        st.sampled_from(list(FailureClass)),
        st.sampled_from(["Timeout", "GitRemoteFailed", "InvalidImage", "Unknown"]),
        st.sampled_from(["", "details"]),
    )


def agents(agent_id: UUID, name: str, now: datetime = EPOCH) -> st.SearchStrategy[Agent]:
    """An agent with the given id and name, random labels, mostly ACTIVE."""
    return st.builds(
        Agent,
        id=st.just(agent_id),
        name=st.just(name),
        registered_at=st.just(now),
        labels=label_sets(),
        status=st.sampled_from([AgentStatus.ACTIVE] * 4 + [AgentStatus.DRAINING]),
    )


def work_items(
    work_id: UUID, now: datetime = EPOCH, agent_ids: Sequence[UUID] = ()
) -> st.SearchStrategy[WorkItem]:
    """A new PENDING or HELD item created at ``now``."""
    return st.builds(
        WorkItem,
        id=st.just(work_id),
        work_type=st.sampled_from(WORK_TYPES),
        spec=st.sampled_from(["{}", "kind: Job\n", "echo hello"]),
        targeting=targetings(agent_ids),
        created_at=st.just(now),
        retry_policy=retry_policies(),
        claim_timeout=durations(1, 300),
        priority=st.integers(-2, 2),
        not_before=st.sampled_from([None, None, None, 30, 120]).map(
            lambda s: None if s is None else now + timedelta(seconds=s)
        ),
        idempotency_key=st.none() | st.sampled_from(["k1", "k2", "k3"]),
        correlation_id=st.just(str(work_id)),
        labels=st.dictionaries(st.sampled_from(["team", "app"]), st.sampled_from(["x", "y"])),
        callback_url=st.none(),
        status=st.sampled_from([WorkStatus.PENDING] * 5 + [WorkStatus.HELD]),
    )
