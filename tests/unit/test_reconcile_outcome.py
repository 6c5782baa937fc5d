"""Reading a finished Work's status (``workqueue_core.work.reconcile_outcome``)."""

from __future__ import annotations

from datetime import timedelta

from test_reconcile_world import RUNNING, World, completed, failed, make_work

from workqueue_core.domain.models import Failure, FailureClass
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.work.reconcile_outcome import WorkOutcome, work_outcome
from workqueue_core.work.resource import Condition, WorkPhase, WorkResourceStatus

POLICY = RetryPolicy(base_delay=timedelta(seconds=1))


def run(world: World) -> None:
    assert world.perform(world.decide(POLICY))


def test_a_running_work_has_no_outcome_yet() -> None:
    world = World(make_work())
    assert work_outcome(world.work.status) is None
    run(world)
    world.set_job_status(0, RUNNING)
    run(world)
    assert work_outcome(world.work.status) is None


def test_a_succeeded_work_gives_its_result_and_retries() -> None:
    world = World(make_work())
    run(world)
    world.set_job_status(0, failed())
    run(world)
    world.advance(timedelta(seconds=1))
    run(world)
    world.set_job_status(1, completed())
    run(world)
    outcome = work_outcome(world.work.status)
    assert outcome == WorkOutcome(retries=1, result={"job": "wq-hello-1-1"})
    assert outcome is not None and outcome.succeeded


def test_a_permanent_failure_reads_permanent_with_the_job_reason() -> None:
    world = World(make_work())
    run(world)
    world.set_job_status(0, failed("PodFailurePolicy", "exit code 42"))
    run(world)
    outcome = work_outcome(world.work.status)
    assert outcome is not None and not outcome.succeeded
    assert outcome.failure == Failure(
        FailureClass.PERMANENT,
        "PodFailurePolicy",
        "instance 0 failed permanently (PodFailurePolicy: exit code 42)",
    )


def test_a_spent_budget_reads_retryable() -> None:
    world = World(make_work(max_retries=0))
    run(world)
    world.set_job_status(0, failed("DeadlineExceeded"))
    run(world)
    outcome = work_outcome(world.work.status)
    assert outcome is not None and outcome.failure is not None
    assert (outcome.failure.failure_class, outcome.failure.reason, outcome.retries) == (
        FailureClass.RETRYABLE,
        "DeadlineExceeded",
        0,
    )


def test_a_failed_status_without_conditions_reads_retryable() -> None:
    status = WorkResourceStatus(phase=WorkPhase.FAILED, retries=2, message="gone")
    assert work_outcome(status) == WorkOutcome(
        retries=2, failure=Failure(FailureClass.RETRYABLE, "Failed", "gone")
    )
    permanent = WorkResourceStatus(
        phase=WorkPhase.FAILED, conditions=[Condition(type="Retryable", status="False")]
    )
    outcome = work_outcome(permanent)
    assert outcome is not None and outcome.failure is not None
    assert outcome.failure.failure_class is FailureClass.PERMANENT
