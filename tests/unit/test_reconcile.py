"""The reconcile decision, one behaviour per test, on the simulated world with real Jobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from test_reconcile_world import (
    JOB_TYPE,
    RUNNING,
    T0,
    UID,
    World,
    completed,
    failed,
    job_template,
    make_work,
)

from workqueue_core.domain.models import Failure
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.ports.work_type import StopStep
from workqueue_core.work.reconcile import (
    CONDITION_RETRYABLE,
    INSTANCE_GRACE,
    ApplyInstance,
    Decision,
    Requeue,
    StopInstance,
    WriteStatus,
    apply_refused,
    format_time,
    jitter_sample,
    owner_of,
    reconcile,
)
from workqueue_core.work.reconcile_policy import RETRY_POLICY_ANNOTATION, format_retry_policy
from workqueue_core.work.resource import (
    CONDITION_TEMPLATE_APPLIED,
    CONDITION_TEMPLATE_SUCCEEDED,
    WorkPhase,
    WorkResourceStatus,
)
from workqueue_kubernetes.job import JOB

POLICY = RetryPolicy(base_delay=timedelta(seconds=60), multiplier=2.0)


def step(world: World, policy: RetryPolicy = POLICY) -> Decision:
    """Reconcile once and perform every action."""
    decision = world.decide(policy)
    assert world.perform(decision)
    return decision


def condition(status: WorkResourceStatus, condition_type: str) -> tuple[str, str, str | None]:
    found = status.condition(condition_type)
    assert found is not None, condition_type
    return found.status, found.reason, found.last_transition_time


def kinds(decision: Decision) -> list[str]:
    return [type(action).__name__ for action in decision.actions]


# --- a new Work ------------------------------------------------------------------


def test_a_new_work_applies_instance_0_and_runs() -> None:
    world = World(make_work())
    decision = world.decide(POLICY)
    assert kinds(decision) == ["ApplyInstance", "WriteStatus", "Requeue"]
    apply = decision.actions[0]
    assert isinstance(apply, ApplyInstance)
    assert apply.index == 0
    expected = JOB_TYPE.instance_objects(owner_of(world.work), world.work.spec.templates, 0)
    assert list(apply.objects) == expected
    status = decision.status
    assert status is not None
    assert status.phase is WorkPhase.RUNNING
    assert status.start_time == "2030-01-01T00:00:00Z"
    assert status.observed_generation == 1
    assert status.retries == 0
    assert condition(status, CONDITION_TEMPLATE_APPLIED) == ("True", "Applied", format_time(T0))
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[:2] == ("Unknown", "JobPending")
    write = decision.actions[1]
    assert isinstance(write, WriteStatus) and write.resource_version == "1"
    assert decision.requeue_after == timedelta(seconds=3600)


def test_the_same_observation_after_the_writes_yields_no_new_writes() -> None:
    world = World(make_work())
    step(world)
    world.advance(timedelta(seconds=5))
    again = world.decide(POLICY)
    assert again.writes == ()
    assert again.requeue_after == timedelta(seconds=3595)


def test_a_lost_status_write_after_the_apply_creates_no_second_job() -> None:
    world = World(make_work())
    assert world.perform(world.decide(POLICY), limit=1) is False
    assert world.work.status.phase is WorkPhase.PENDING
    decision = step(world)
    assert kinds(decision) == ["WriteStatus", "Requeue"]
    assert [index for index, _, _ in world.created] == [0]
    assert world.work.status.phase is WorkPhase.RUNNING


def test_a_conflicting_status_write_is_decided_again_from_the_new_work() -> None:
    world = World(make_work())
    decision = world.decide(POLICY)
    world.touch()
    assert world.perform(decision) is False
    retry = step(world)
    assert kinds(retry) == ["WriteStatus", "Requeue"]
    assert world.work.status.phase is WorkPhase.RUNNING
    assert len(world.created) == 1


# --- a running instance ------------------------------------------------------------


def test_a_running_instance_is_recorded_once_and_not_bounded_by_the_claim_timeout() -> None:
    world = World(make_work(claim_timeout=60))
    step(world)
    world.advance(timedelta(seconds=10))
    world.set_job_status(0, RUNNING)
    decision = step(world)
    assert kinds(decision) == ["WriteStatus"]
    status = world.work.status
    assert status.message == "instance 0 running: Job wq-hello-1-0 has run a pod"
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[:2] == ("Unknown", "JobRunning")
    # TemplateApplied did not change status: its lastTransitionTime stays the apply time.
    assert condition(status, CONDITION_TEMPLATE_APPLIED)[2] == format_time(T0)
    world.advance(timedelta(hours=5))
    assert world.decide(POLICY).actions == ()


# --- outcomes ----------------------------------------------------------------------


def test_success_ends_the_work_succeeded_with_its_results() -> None:
    world = World(make_work())
    step(world)
    world.advance(timedelta(seconds=42))
    world.set_job_status(0, completed())
    decision = step(world)
    assert kinds(decision) == ["WriteStatus"]
    status = world.work.status
    assert status.phase is WorkPhase.SUCCEEDED
    assert status.completion_time == "2030-01-01T00:00:42Z"
    assert status.start_time == "2030-01-01T00:00:00Z"
    assert status.result == {"job": "wq-hello-1-0"}
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED) == (
        "True",
        "CompletionsReached",
        "2030-01-01T00:00:42Z",
    )
    assert status.condition(CONDITION_RETRYABLE) is None
    assert world.decide(POLICY).actions == ()


def test_a_retryable_failure_waits_the_backoff_then_applies_the_next_instance() -> None:
    world = World(make_work(max_retries=2))
    step(world)
    world.advance(timedelta(seconds=30))
    world.set_job_status(0, failed("BackoffLimitExceeded", "Job has reached the backoff limit"))
    decision = step(world)
    assert kinds(decision) == ["WriteStatus", "Requeue"]
    status = world.work.status
    assert status.phase is WorkPhase.RUNNING
    assert status.retries == 1
    assert status.next_retry_time == "2030-01-01T00:01:30Z"  # failure seen at 30 s, + 60 s
    assert decision.requeue_after == timedelta(seconds=60)
    assert condition(status, CONDITION_TEMPLATE_APPLIED)[:2] == ("False", "RetryScheduled")
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[:2] == ("False", "BackoffLimitExceeded")
    assert "BackoffLimitExceeded: Job has reached the backoff limit" in status.message
    assert "instance 1 (retry 1 of 2) due at 2030-01-01T00:01:30Z" in status.message

    world.advance(timedelta(seconds=20))
    early = world.decide(POLICY)
    assert early.actions == (Requeue(timedelta(seconds=40)),)

    world.advance(timedelta(seconds=40))
    decision = step(world)
    assert kinds(decision) == ["ApplyInstance", "WriteStatus", "Requeue"]
    assert [index for index, _, _ in world.created] == [0, 1]
    assert world.job(1) is not None and world.job(1)["metadata"]["name"] == "wq-hello-1-1"
    status = world.work.status
    assert status.next_retry_time is None
    assert condition(status, CONDITION_TEMPLATE_APPLIED) == (
        "True",
        "Applied",
        "2030-01-01T00:01:30Z",
    )
    assert world.job(0) is not None, "failed Jobs are kept (removed with their Work)"


def test_the_backoff_counts_from_when_the_job_failed_not_when_it_was_seen() -> None:
    world = World(make_work(max_retries=2))
    step(world)
    world.advance(timedelta(seconds=30))
    # The Job failed at 10 s; the controller sees it at 30 s (a slow watch).
    world.set_job_status(0, failed(), ago=timedelta(seconds=20))
    decision = step(world)
    assert world.work.status.next_retry_time == "2030-01-01T00:01:10Z"  # 10 s + 60 s
    assert decision.requeue_after == timedelta(seconds=40)
    assert "due at 2030-01-01T00:01:10Z" in world.work.status.message
    world.advance(timedelta(seconds=40))
    assert kinds(step(world)) == ["ApplyInstance", "WriteStatus", "Requeue"]


def test_a_failure_seen_after_its_backoff_has_passed_is_retried_at_once() -> None:
    world = World(make_work(max_retries=2))
    step(world)
    world.advance(timedelta(hours=5))
    # A controller back after an outage sees a Job that failed four hours ago.
    world.set_job_status(0, failed(), ago=timedelta(hours=4))
    decision = step(world)
    assert kinds(decision) == ["WriteStatus", "Requeue"], "scheduling and applying: two decisions"
    status = world.work.status
    assert (status.retries, status.next_retry_time) == (1, "2030-01-01T05:00:01Z")
    assert decision.requeue_after == timedelta(seconds=1)
    assert condition(status, CONDITION_TEMPLATE_APPLIED)[:2] == ("False", "RetryScheduled")
    assert world.decide(POLICY).writes == ()
    world.advance(timedelta(seconds=1))
    assert kinds(step(world)) == ["ApplyInstance", "WriteStatus", "Requeue"]
    assert [index for index, _, _ in world.created] == [0, 1]


def test_a_failure_time_ahead_of_the_controllers_clock_counts_as_now() -> None:
    world = World(make_work(max_retries=2))
    step(world)
    world.advance(timedelta(seconds=30))
    world.set_job_status(0, failed(), ago=timedelta(seconds=-600))  # a skewed clock
    step(world)
    assert world.work.status.next_retry_time == "2030-01-01T00:01:30Z"  # 30 s + 60 s


def test_two_retryable_failures_then_success() -> None:
    world = World(make_work(max_retries=3))
    step(world)
    for index, delay in ((0, 60), (1, 120)):
        world.set_job_status(index, failed("DeadlineExceeded"))
        decision = step(world)
        assert decision.requeue_after == timedelta(seconds=delay)
        world.advance(timedelta(seconds=delay))
        step(world)
    world.set_job_status(2, completed())
    step(world)
    status = world.work.status
    assert status.phase is WorkPhase.SUCCEEDED
    assert status.retries == 2
    assert [index for index, _, _ in world.created] == [0, 1, 2]
    assert status.result == {"job": "wq-hello-1-2"}


def test_a_permanent_failure_ends_the_work_without_a_retry() -> None:
    world = World(make_work(max_retries=3))
    step(world)
    world.set_job_status(0, failed("PodFailurePolicy", "Container main exited with code 42"))
    step(world)
    status = world.work.status
    assert status.phase is WorkPhase.FAILED
    assert status.retries == 0
    assert status.completion_time == format_time(T0)
    assert status.message == (
        "instance 0 failed permanently (PodFailurePolicy: Container main exited with code 42)"
    )
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[:2] == ("False", "PodFailurePolicy")
    assert condition(status, CONDITION_RETRYABLE)[:2] == ("False", "PodFailurePolicy")
    world.advance(timedelta(hours=1))
    assert world.decide(POLICY).actions == ()
    assert len(world.created) == 1


def test_an_exhausted_budget_ends_the_work_failed_and_retryable() -> None:
    world = World(make_work(max_retries=1))
    step(world)
    world.set_job_status(0, failed())
    step(world)
    world.advance(timedelta(seconds=60))
    step(world)
    world.set_job_status(1, failed("SomeFutureReason", "new in Kubernetes 1.40"))
    step(world)
    status = world.work.status
    assert status.phase is WorkPhase.FAILED
    assert status.retries == 1
    assert status.message == (
        "instance 1 failed (SomeFutureReason: new in Kubernetes 1.40); no retries left"
        " (maxRetries 1)"
    )
    assert condition(status, CONDITION_RETRYABLE)[:2] == ("True", "SomeFutureReason")
    assert len(world.created) == 2


def test_max_retries_0_fails_at_the_first_retryable_failure() -> None:
    world = World(make_work(max_retries=0))
    step(world)
    world.set_job_status(0, failed())
    step(world)
    assert world.work.status.phase is WorkPhase.FAILED
    assert len(world.created) == 1


def test_a_terminal_phase_never_changes() -> None:
    world = World(make_work())
    step(world)
    world.set_job_status(0, completed())
    step(world)
    final = world.work.status
    world.set_job_status(0, failed())
    world.advance(timedelta(days=1))
    assert world.decide(POLICY).actions == ()
    del world.jobs["wq-hello-1-0"]
    assert world.decide(POLICY).actions == ()
    world.change_spec(max_retries=5)
    decision = step(world)
    assert kinds(decision) == ["WriteStatus"]
    assert world.work.status == attrs.evolve(final, observed_generation=2)


# --- spec changes -------------------------------------------------------------------


def test_a_spec_change_is_recorded_and_takes_effect_on_the_next_instance() -> None:
    world = World(make_work(max_retries=2))
    step(world)
    world.change_spec(templates=job_template(image="busybox:1.37"))
    decision = step(world)
    assert kinds(decision) == ["WriteStatus", "Requeue"]
    assert world.work.status.observed_generation == 2
    assert world.work.status.phase is WorkPhase.RUNNING
    job0 = world.job(0)
    assert job0 is not None
    container = job0["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "busybox:1.36", "the running instance is left alone"
    world.set_job_status(0, failed())
    step(world)
    world.advance(timedelta(seconds=60))
    step(world)
    job1 = world.job(1)
    assert job1 is not None
    assert job1["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.37"


def test_max_retries_lowered_while_a_retry_waits_ends_the_work() -> None:
    world = World(make_work(max_retries=2))
    step(world)
    world.set_job_status(0, failed())
    step(world)
    world.change_spec(max_retries=0)
    world.advance(timedelta(seconds=60))
    decision = step(world)
    assert kinds(decision) == ["WriteStatus"]
    status = world.work.status
    assert status.phase is WorkPhase.FAILED
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[1] == "RetriesExhausted"
    assert "maxRetries is 0" in status.message
    assert len(world.created) == 1


def test_an_invalid_template_fails_the_work_permanently_naming_the_field() -> None:
    world = World(make_work(template=job_template(backoffLimit=3)))
    decision = step(world)
    assert kinds(decision) == ["WriteStatus"]
    status = world.work.status
    assert status.phase is WorkPhase.FAILED
    applied = status.condition(CONDITION_TEMPLATE_APPLIED)
    assert applied is not None and (applied.status, applied.reason) == ("False", "InvalidTemplate")
    assert "spec.template.spec.backoffLimit" in applied.message
    assert "maxRetries" in applied.message
    assert condition(status, CONDITION_RETRYABLE)[0] == "False"
    assert world.created == []


# --- deletion and stopping ------------------------------------------------------------


def test_a_deleted_work_stops_its_live_instance_and_writes_nothing() -> None:
    world = World(make_work())
    step(world)
    world.delete_work()
    decision = step(world)
    assert len(decision.actions) == 1
    stop = decision.actions[0]
    assert isinstance(stop, StopInstance) and stop.index == 0
    (only,) = stop.steps
    assert (only.kind.kind, only.name, only.patch, only.propagation) == (
        "Job",
        "wq-hello-1-0",
        None,
        "Background",
    )
    assert world.jobs == {}
    assert world.decide(POLICY).actions == ()


def test_a_deleted_work_leaves_finished_instances_and_never_applies() -> None:
    world = World(make_work())
    step(world)
    world.set_job_status(0, failed())
    world.delete_work()
    assert world.decide(POLICY).actions == ()
    assert world.work.status.phase is WorkPhase.RUNNING


def test_a_stop_in_progress_is_not_repeated_and_the_next_instance_waits_for_it() -> None:
    world = World(make_work(claim_timeout=60, max_retries=2))
    step(world)
    world.advance(timedelta(seconds=60))
    decision = world.decide(POLICY)
    assert kinds(decision) == ["WriteStatus", "StopInstance", "Requeue"]
    assert world.perform(decision, linger=True)
    assert "deletionTimestamp" in world.jobs["wq-hello-1-0"]["metadata"]
    world.advance(timedelta(seconds=60))
    step(world)
    assert world.job(1) is not None, "a Job being deleted is not live: instance 1 starts"
    assert [index for index, _, _ in world.created] == [0, 1]


def test_an_old_live_instance_is_stopped_before_the_current_one_starts() -> None:
    world = World(make_work(max_retries=2))
    step(world)
    world.set_job_status(0, RUNNING)
    hidden = frozenset({"wq-hello-1-0"})
    world.advance(INSTANCE_GRACE)
    # A cache lagging past the grace period: instance 0 counts as lost, yet it runs.
    assert world.perform(world.decide(POLICY, hidden))
    assert world.work.status.retries == 1
    world.advance(timedelta(seconds=60))
    decision = world.decide(POLICY)
    # The delete comes first: if it fails, the controller stops there and applies nothing.
    assert kinds(decision) == ["StopInstance", "ApplyInstance", "WriteStatus", "Requeue"]
    assert world.perform(decision, limit=1) is False
    assert world.live_instances() == []
    assert world.perform(decision)
    assert world.live_instances() == [1]
    assert world.decide(POLICY).writes == ()


class CancelByPatch:
    """The job type, but stopping an instance by a patch its controller honours later (as
    a Shipwright BuildRun cancel does)."""

    name = "job"
    kinds = JOB_TYPE.kinds
    validate = staticmethod(JOB_TYPE.validate)
    instance_objects = staticmethod(JOB_TYPE.instance_objects)
    observe = staticmethod(JOB_TYPE.observe)
    PATCH: Mapping[str, Any] = {"metadata": {"annotations": {"example.com/cancel": "true"}}}

    def stop(self, objects: Sequence[Mapping[str, Any]]) -> list[StopStep]:
        return [StopStep(JOB, o["metadata"]["name"], self.PATCH) for o in objects]


def test_an_instance_stopped_by_a_patch_is_waited_for_until_it_finishes() -> None:
    world = World(make_work(claim_timeout=60, max_retries=1))
    cancel = CancelByPatch()
    step(world)
    world.advance(timedelta(seconds=60))
    decision = reconcile(world.work, world.observe(), world.now, cancel, POLICY)
    assert kinds(decision) == ["WriteStatus", "StopInstance", "Requeue"]
    stop = decision.actions[1]
    assert isinstance(stop, StopInstance)
    assert stop.steps == (StopStep(JOB, "wq-hello-1-0", CancelByPatch.PATCH),)
    assert world.perform(decision, limit=1) is False  # the status write only
    world.jobs["wq-hello-1-0"]["metadata"]["annotations"] = {"example.com/cancel": "true"}
    world.advance(timedelta(seconds=60))
    waiting = reconcile(world.work, world.observe(), world.now, cancel, POLICY)
    assert waiting.actions == (), "the patch is done; instance 0 still runs: wait"
    world.set_job_status(0, failed("Cancelled"))
    decision = reconcile(world.work, world.observe(), world.now, cancel, POLICY)
    assert kinds(decision) == ["ApplyInstance", "WriteStatus", "Requeue"]


# --- bounds ----------------------------------------------------------------------------


def test_an_instance_without_progress_for_the_claim_timeout_fails_retryably() -> None:
    world = World(make_work(claim_timeout=3600, max_retries=1))
    step(world)
    world.set_job_status(0, {"active": 1, "ready": 0})
    world.advance(timedelta(seconds=3599))
    early = world.decide(POLICY)
    assert early.actions == (Requeue(timedelta(seconds=1)),)
    world.advance(timedelta(seconds=1))
    decision = step(world)
    assert kinds(decision) == ["WriteStatus", "StopInstance", "Requeue"]
    status = world.work.status
    assert status.retries == 1
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[:2] == ("False", "NoProgress")
    assert "no progress for 3600 s" in status.message
    assert "image pull" in status.message
    assert world.jobs.keys() == set(), "the stuck Job is deleted before the retry"


def test_a_stuck_instance_whose_stop_was_lost_is_stopped_by_the_next_decision() -> None:
    world = World(make_work(claim_timeout=60, max_retries=0))
    step(world)
    world.advance(timedelta(seconds=60))
    assert world.perform(world.decide(POLICY), limit=1) is False
    status = world.work.status
    assert status.phase is WorkPhase.FAILED
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[1] == "NoProgress"
    assert condition(status, CONDITION_RETRYABLE)[0] == "True"
    assert world.live_instances() == [0]
    decision = step(world)
    assert kinds(decision) == ["StopInstance"]
    assert world.live_instances() == []
    assert world.work.status == status


def test_a_missing_instance_waits_for_the_cache_then_counts_as_lost() -> None:
    world = World(make_work(max_retries=1))
    step(world)
    lagging = world.decide(POLICY, hidden=frozenset({"wq-hello-1-0"}))
    assert lagging.actions == (Requeue(INSTANCE_GRACE),)
    del world.jobs["wq-hello-1-0"]
    world.advance(INSTANCE_GRACE - timedelta(seconds=1))
    assert world.decide(POLICY).actions == (Requeue(timedelta(seconds=1)),)
    world.advance(timedelta(seconds=1))
    step(world)
    status = world.work.status
    assert status.retries == 1
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[:2] == ("False", "InstanceMissing")
    assert "disappeared" in status.message


# --- the retry policy ------------------------------------------------------------------


def test_the_work_annotation_sets_the_backoff() -> None:
    annotation = format_retry_policy(RetryPolicy(base_delay=timedelta(seconds=5)))
    world = World(make_work(annotations={RETRY_POLICY_ANNOTATION: annotation}))
    step(world)
    world.set_job_status(0, failed())
    decision = step(world)
    assert decision.requeue_after == timedelta(seconds=5)
    assert world.work.status.next_retry_time == "2030-01-01T00:00:05Z"


def test_a_bad_retry_policy_annotation_fails_the_work_with_the_annotation_named() -> None:
    world = World(make_work(annotations={RETRY_POLICY_ANNOTATION: '{"baseDelaySeconds": -1}'}))
    step(world)
    status = world.work.status
    assert status.phase is WorkPhase.FAILED
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[1] == "InvalidRetryPolicy"
    assert "metadata.annotations.workqueue.dev/retry-policy" in status.message
    assert world.created == []


def test_jittered_delays_are_deterministic_per_work_and_within_the_policy_bounds() -> None:
    policy = RetryPolicy(base_delay=timedelta(seconds=100), jitter=Jitter.FULL)
    world = World(make_work())
    step(world, policy)
    world.set_job_status(0, failed())
    decision = step(world, policy)
    expected = policy.delay(1, jitter_sample(UID, 1))
    low, high = policy.delay_bounds(1)
    assert low <= expected <= high
    due = world.work.status.next_retry_time
    assert due is not None
    delay = datetime.fromisoformat(due) - T0
    assert expected <= delay < expected + timedelta(seconds=1)
    assert decision.requeue_after == delay
    assert jitter_sample(UID, 1) == jitter_sample(UID, 1) != jitter_sample(UID, 2)


def test_a_zero_delay_retries_at_the_next_whole_second() -> None:
    policy = RetryPolicy(base_delay=timedelta(0), max_delay=timedelta(0))
    world = World(make_work())
    step(world, policy)
    world.set_job_status(0, failed())
    assert step(world, policy).requeue_after == timedelta(seconds=1)
    assert world.work.status.next_retry_time == "2030-01-01T00:00:01Z"
    assert world.decide(policy).writes == ()
    world.advance(timedelta(seconds=1))
    decision = step(world, policy)
    assert kinds(decision) == ["ApplyInstance", "WriteStatus", "Requeue"]


# --- odd input -------------------------------------------------------------------------


def test_an_unusable_job_reason_becomes_a_valid_condition_reason() -> None:
    world = World(make_work(max_retries=0))
    step(world)
    world.set_job_status(0, failed("9 bad reason!", "x" * 5000))
    step(world)
    status = world.work.status
    reason = condition(status, CONDITION_TEMPLATE_SUCCEEDED)[1]
    assert reason == "badreason"
    found = status.condition(CONDITION_TEMPLATE_SUCCEEDED)
    assert found is not None and len(found.message) <= 2048
    assert WorkResourceStatus.from_mapping(status.to_mapping()) == status


def test_now_must_be_aware_and_the_work_must_come_from_the_api_server() -> None:
    work = make_work()
    with pytest.raises(ValueError, match="timezone-aware"):
        reconcile(work, {}, datetime(2030, 1, 1), JOB_TYPE, POLICY)
    anonymous = attrs.evolve(work, metadata=attrs.evolve(work.metadata, uid=None))
    with pytest.raises(ValueError, match="no uid or namespace"):
        reconcile(anonymous, {}, datetime(2030, 1, 1, tzinfo=UTC), JOB_TYPE, POLICY)
    with pytest.raises(ValueError, match="cannot reconcile a Work of 'build'"):
        reconcile(
            attrs.evolve(work, spec=attrs.evolve(work.spec, work_type="build")),
            {},
            T0,
            JOB_TYPE,
            POLICY,
        )


def test_a_work_of_an_unknown_work_type_fails_permanently() -> None:
    work = make_work()
    decision = reconcile(work, {}, T0, None, POLICY)
    assert kinds(decision) == ["WriteStatus"]
    status = decision.status
    assert status is not None and status.phase is WorkPhase.FAILED
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[1] == "UnknownWorkType"
    assert condition(status, CONDITION_RETRYABLE)[0] == "False"
    assert "no work type 'job' is registered here" in status.message
    deleting = attrs.evolve(
        work, metadata=attrs.evolve(work.metadata, deletion_timestamp=format_time(T0))
    )
    assert reconcile(deleting, {0: [{"kind": "Job"}]}, T0, None, POLICY).actions == ()


# --- a create the API server refuses -----------------------------------------------------


def test_a_create_refused_as_invalid_fails_the_work_permanently() -> None:
    world = World(make_work(max_retries=3))
    decision = world.decide(POLICY)
    assert isinstance(decision.actions[0], ApplyInstance)
    refusal = Failure.permanent(
        "Invalid", 'Job.batch "wq-hello-1-0" is invalid: spec.podFailurePolicy: Invalid value'
    )
    after = apply_refused(world.work, world.observe(), world.now, JOB_TYPE, POLICY, refusal)
    assert kinds(after) == ["WriteStatus"]
    assert world.perform(after)
    status = world.work.status
    assert status.phase is WorkPhase.FAILED
    assert condition(status, CONDITION_TEMPLATE_SUCCEEDED)[1] == "Invalid"
    assert "spec.podFailurePolicy" in status.message
    assert condition(status, CONDITION_RETRYABLE)[0] == "False"
    assert world.created == []
    assert world.decide(POLICY).writes == ()


def test_a_create_refused_for_quota_spends_a_retry_and_tries_again() -> None:
    world = World(make_work(max_retries=1))
    quota = Failure.retryable("Forbidden", 'jobs "wq-hello-1-0" is forbidden: exceeded quota')
    after = apply_refused(world.work, world.observe(), world.now, JOB_TYPE, POLICY, quota)
    assert kinds(after) == ["WriteStatus", "Requeue"]
    assert world.perform(after)
    assert world.work.status.retries == 1
    world.advance(timedelta(seconds=60))
    decision = step(world)
    assert isinstance(decision.actions[0], ApplyInstance) and decision.actions[0].index == 1
    final = apply_refused(world.work, world.observe(), world.now, JOB_TYPE, POLICY, quota)
    assert final.writes == (), "the instance exists: an ordinary decision"


def test_a_refused_create_of_a_deleted_work_only_stops() -> None:
    world = World(make_work())
    world.delete_work()
    refusal = Failure.permanent("Invalid", "x")
    assert apply_refused(world.work, {}, world.now, JOB_TYPE, POLICY, refusal).actions == ()
