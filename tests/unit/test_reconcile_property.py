"""Reconcile properties over arbitrary histories of one Work in the simulated world.

A Hypothesis state machine interleaves reconciles (performed fully, cut short like a
controller killed mid-way, or against a lagging cache), clock moves, Job outcomes (every
reason of the Job table and an unknown one), Jobs deleted behind the controller's back,
spec changes, concurrent Work updates and the Work's deletion.  After every step:

* at most one live instance (a Job that may still run pods);
* every created instance index is at most the ``maxRetries`` in force at its create, and
  at most ``maxRetries + 1`` instances exist in all (for a fixed ``maxRetries``);
* a retry is scheduled with exactly the policy's delay (jitter included), counted from
  the failed Job's ``Failed`` ``lastTransitionTime`` when it has one (a retry due already
  is scheduled for the next second: at once) and from the decision when it has none, and
  its instance is not created before it is due;
* a terminal phase never changes (nor retries, completionTime, result), and neither a
  terminal Work nor one being deleted gets a new instance; the latter no status write;
* a decision is a function of the observation (the same one twice, the same decision);
* after a decision is performed completely, the Work's ``observedGeneration`` is its
  ``generation``, and reconciling the same observation again writes nothing.

A second property: given the failure's time, the retry's due time does not depend on when
the failure is observed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import hypothesis.strategies as st
from hypothesis import event, given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from test_reconcile_world import (
    JOB_TYPE,
    RUNNING,
    UID,
    World,
    completed,
    failed,
    job_template,
    make_work,
)

from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.ports.work_type import InstanceState
from workqueue_core.work.reconcile import (
    ApplyInstance,
    format_time,
    jitter_sample,
    parse_time,
    reconcile,
)
from workqueue_core.work.reconcile_policy import RETRY_POLICY_ANNOTATION, format_retry_policy
from workqueue_core.work.resource import WorkPhase, WorkResourceStatus
from workqueue_kubernetes.job import FAILED_REASONS

OUTCOMES: list[dict[str, Any]] = [
    RUNNING,
    {"active": 1},
    completed(),
    completed("SuccessPolicy"),
    {"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]},
    {"conditions": [{"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy"}]},
    failed("NoSuchReasonYet"),
    failed(""),
    *(failed(reason) for reason in FAILED_REASONS),
]


RARE = st.integers(0, 4).map(lambda n: n == 0)
"""True one time in five: for events that end or derail a history."""

AGO = st.none() | st.sampled_from([0, 1, 59, 600, 86400]).map(lambda s: timedelta(seconds=s))
"""How long before it is set a Job's new conditions transitioned (None: no time given)."""

SECOND = timedelta(seconds=1)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    base = timedelta(seconds=draw(st.sampled_from([0, 1, 7, 60])))
    return RetryPolicy(
        base_delay=base,
        multiplier=draw(st.sampled_from([1.0, 1.5, 2.0])),
        max_delay=base + timedelta(seconds=draw(st.sampled_from([0, 30, 600]))),
        jitter=draw(st.sampled_from(list(Jitter))),
    )


def _terminal_view(status: WorkResourceStatus) -> tuple[object, ...]:
    return (
        status.phase,
        status.retries,
        status.completion_time,
        dict(status.result),
        status.message,
        status.conditions,
    )


class WorkHistory(RuleBasedStateMachine):
    """One Work's life, driven by arbitrary events."""

    world: World
    policy: RetryPolicy
    default_policy: RetryPolicy
    terminal: tuple[object, ...] | None
    fixed_budget: bool
    retry_due: dict[int, datetime]
    external_deletes: int

    @initialize(
        max_retries=st.integers(0, 4),
        claim_timeout=st.sampled_from([30, 600, 3600]),
        policy=policies(),
        by_annotation=st.booleans(),
    )
    def start(
        self, max_retries: int, claim_timeout: int, policy: RetryPolicy, by_annotation: bool
    ) -> None:
        annotations = (
            {RETRY_POLICY_ANNOTATION: format_retry_policy(policy)} if by_annotation else {}
        )
        self.world = World(
            make_work(max_retries=max_retries, claim_timeout=claim_timeout, annotations=annotations)
        )
        self.policy = policy
        # With the annotation, the controller's default must not matter.
        self.default_policy = (
            RetryPolicy(base_delay=timedelta(seconds=999)) if by_annotation else policy
        )
        self.terminal = None
        self.fixed_budget = True
        self.retry_due = {}
        self.external_deletes = 0

    # --- the controller --------------------------------------------------------------

    def _check_decision_then_perform(
        self, hidden: frozenset[str], limit: int | None, *, linger: bool = False
    ) -> bool:
        world = self.world
        before = world.work.status
        decision = world.decide(self.default_policy, hidden)
        assert world.decide(self.default_policy, hidden) == decision, "a pure function"
        after = decision.status
        deleting = world.work.metadata.deletion_timestamp is not None
        if deleting or before.phase in (WorkPhase.SUCCEEDED, WorkPhase.FAILED):
            assert not any(isinstance(a, ApplyInstance) for a in decision.actions)
        if deleting:
            assert after is None, "a Work being deleted gets no status write"
        for action in decision.writes:
            if isinstance(action, ApplyInstance):
                index = action.index
                assert index == before.retries, "only the current instance is applied"
                due = self.retry_due.get(index)
                assert due is None or world.now >= due, "a retry applied before it was due"
        if after is not None and after.retries > before.retries:
            retry = after.retries
            assert retry == before.retries + 1
            assert after.next_retry_time is not None
            due = parse_time(after.next_retry_time)
            delay = self.policy.delay(retry, jitter_sample(UID, retry))
            low, high = self.policy.delay_bounds(retry)
            assert low <= delay <= high
            failed_at = self._failure_time(before.retries, hidden)
            if failed_at is None:
                assert world.now + delay <= due <= world.now + delay + SECOND
            else:
                event("a retry counted from the failure's time")
                counted = min(failed_at, world.now) + delay
                if counted > world.now:
                    assert counted <= due < counted + SECOND
                else:
                    assert due == world.now.replace(microsecond=0) + SECOND, "due: at once"
            assert decision.requeue_after == due - world.now
            self.retry_due[retry] = due
        return world.perform(decision, limit=limit, linger=linger)

    def _failure_time(self, index: int, hidden: frozenset[str]) -> datetime | None:
        """When the observed instance ``index`` failed, as its Job says (None: it did not
        fail, is not observed, or its Job gives no time)."""
        objects = self.world.observe(hidden).get(index)
        if not objects:
            return None
        status = JOB_TYPE.observe(objects)
        return status.finished_at if status.state is InstanceState.FAILED else None

    @rule()
    def reconcile(self) -> None:
        world = self.world
        if not self._check_decision_then_perform(frozenset(), None):
            return
        # Performed completely: the same observation again has nothing left to write.
        again = world.decide(self.default_policy)
        assert again.writes == (), again
        if world.work.metadata.deletion_timestamp is None:
            assert world.work.status.observed_generation == world.work.metadata.generation

    @rule(limit=st.integers(0, 2))
    def reconcile_cut_short(self, limit: int) -> None:
        self._check_decision_then_perform(frozenset(), limit)

    @rule(linger=st.booleans())
    def reconcile_stopping_slowly(self, linger: bool) -> None:
        self._check_decision_then_perform(frozenset(), None, linger=linger)

    @rule()
    def reconcile_with_a_lagging_cache(self) -> None:
        # Jobs created this very second are not in the cache yet (the informer lags).
        now = format_time(self.world.now)
        hidden = frozenset(
            name
            for name, job in self.world.jobs.items()
            if job["metadata"]["creationTimestamp"] == now
        )
        self._check_decision_then_perform(hidden, None)

    # --- the world ------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 5, 29, 30, 61, 600, 3600]))
    def time_passes(self, seconds: int) -> None:
        self.world.advance(timedelta(seconds=seconds))

    @rule()
    def the_controller_wakes_up_when_requeued(self) -> None:
        decision = self.world.decide(self.default_policy)
        if decision.requeue_after is not None:
            self.world.advance(decision.requeue_after)
            self.reconcile()

    @precondition(lambda self: bool(self.world.jobs))
    @rule(outcome=st.sampled_from(OUTCOMES), newest=st.integers(0, 3), data=st.data(), ago=AGO)
    def a_job_changes(
        self, outcome: dict[str, Any], newest: int, data: st.DataObject, ago: timedelta | None
    ) -> None:
        indices = sorted({int(name.rsplit("-", 1)[1]) for name in self.world.jobs})
        # Mostly the newest Job (the current instance), sometimes an old one.
        index = indices[-1] if newest else data.draw(st.sampled_from(indices))
        self.world.set_job_status(index, outcome, ago=ago)

    @precondition(lambda self: bool(self.world.jobs))
    @rule(outcome=st.sampled_from(OUTCOMES), ago=AGO)
    def a_job_changes_and_the_controller_reacts(
        self, outcome: dict[str, Any], ago: timedelta | None
    ) -> None:
        index = max(int(name.rsplit("-", 1)[1]) for name in self.world.jobs)
        self.world.set_job_status(index, outcome, ago=ago)
        self.reconcile()

    @precondition(lambda self: bool(self.world.jobs))
    @rule(data=st.data(), rare=RARE)
    def someone_deletes_a_job(self, data: st.DataObject, rare: bool) -> None:
        if not rare:
            return
        name = data.draw(st.sampled_from(sorted(self.world.jobs)))
        del self.world.jobs[name]
        self.external_deletes += 1

    @rule()
    def garbage_collection(self) -> None:
        self.world.collect_garbage()

    @rule(
        max_retries=st.none() | st.integers(0, 4), image=st.sampled_from(["a:1", "b:2"]), rare=RARE
    )
    def spec_changes(self, max_retries: int | None, image: str, rare: bool) -> None:
        if not rare:
            return
        if max_retries is None:
            self.world.change_spec(templates=job_template(image=image))
        else:
            self.fixed_budget = (
                self.fixed_budget and max_retries == self.world.work.spec.max_retries
            )
            self.world.change_spec(max_retries=max_retries)

    @rule()
    def someone_else_updates_the_work(self) -> None:
        self.world.touch()

    @rule(rare=RARE)
    def the_work_is_deleted(self, rare: bool) -> None:
        if rare and self.world.work.metadata.deletion_timestamp is None:
            self.world.delete_work()

    # --- invariants -----------------------------------------------------------------

    @invariant()
    def at_most_one_live_instance(self) -> None:
        assert len(self.world.live_instances()) <= 1, self.world.jobs.keys()

    @invariant()
    def instances_within_the_budget(self) -> None:
        indices = [index for index, _, _ in self.world.created]
        # An index is created again only when its Job was deleted behind the controller's
        # back before its status recorded the create (the controller cannot know).
        assert len(indices) - len(set(indices)) <= self.external_deletes
        for index, _, max_retries in self.world.created:
            assert index <= max_retries
        if self.fixed_budget:
            assert len(set(indices)) <= self.world.work.spec.max_retries + 1

    def teardown(self) -> None:
        status = self.world.work.status
        event(f"phase {status.phase.value}, {len(self.world.created)} instances")
        if self.external_deletes:
            event("a Job deleted behind the controller")

    @invariant()
    def terminal_phases_never_change(self) -> None:
        status = self.world.work.status
        if self.terminal is not None:
            assert _terminal_view(status) == self.terminal
        elif status.phase in (WorkPhase.SUCCEEDED, WorkPhase.FAILED):
            self.terminal = _terminal_view(status)


TestWorkHistory = WorkHistory.TestCase
TestWorkHistory.settings = settings(max_examples=250, stateful_step_count=40, deadline=None)


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(),
    ran_for=st.integers(0, 7200),
    lags=st.lists(
        st.timedeltas(timedelta(0), timedelta(seconds=700))
        | st.timedeltas(timedelta(0), timedelta(days=2)),
        min_size=2,
        max_size=4,
    ),
)
def test_a_retry_is_due_at_the_same_time_whenever_its_failure_is_observed(
    policy: RetryPolicy, ran_for: int, lags: list[timedelta]
) -> None:
    """Given the Job's failure time, the retry's due time is that time + the backoff,
    whether the failure is observed at once, late, or by a controller started long
    after; past due, the retry is scheduled for the next second (applied at once)."""
    world = World(make_work(max_retries=1))
    assert world.perform(world.decide(policy))
    world.advance(timedelta(seconds=ran_for))
    assert world.set_job_status(0, failed(), ago=timedelta(0))
    failed_at = world.now
    delay = policy.delay(1, jitter_sample(UID, 1))
    due = failed_at + delay
    if due.microsecond:
        due = due.replace(microsecond=0) + SECOND  # status times have whole seconds
    scheduled = failed_at
    for lag in lags:
        now = failed_at + lag
        decision = reconcile(world.work, world.observe(), now, JOB_TYPE, policy)
        status = decision.status
        assert status is not None and status.retries == 1
        assert status.next_retry_time is not None
        scheduled = parse_time(status.next_retry_time)
        assert decision.requeue_after == scheduled - now
        assert not any(isinstance(a, ApplyInstance) for a in decision.actions)
        if now < due:
            event("observed before the retry is due")
            assert scheduled == due, "the due time does not depend on the observation"
        else:
            event("observed after the retry was due")
            assert scheduled == now.replace(microsecond=0) + SECOND, "at once"
    # The last observation's decision performed, the retry is applied when scheduled.
    world.now = failed_at + lags[-1]
    assert world.perform(reconcile(world.work, world.observe(), world.now, JOB_TYPE, policy))
    world.now = scheduled
    applied = world.decide(policy)
    assert [a.index for a in applied.actions if isinstance(a, ApplyInstance)] == [1]
