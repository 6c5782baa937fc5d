"""The worker's API without a store: registration, options, failures, the heartbeat period."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from test_worker_support import memory_harness

from workqueue_core.domain.errors import InvalidInput
from workqueue_core.domain.limits import MAX_MESSAGE_BYTES, MAX_REASON_CHARS
from workqueue_core.domain.models import Failure, FailureClass, Targeting, WorkItem
from workqueue_core.executor.handlers import clean_failure, default_classify
from workqueue_core.executor.worker import (
    Handlers,
    Job,
    PermanentError,
    RetryableError,
    Worker,
    WorkerOptions,
    heartbeat_period,
)
from workqueue_core.testing import EPOCH


async def _noop(job: Job) -> None:
    return None


def test_decorator_and_plain_registration_share_one_registry() -> None:
    worker = Worker(memory_harness().service, name="w")

    @worker.handler("resize", timeout=5)
    async def resize(job: Job) -> str:
        return "ok"

    worker.register("crop", _noop)
    assert worker.handlers.work_types == ["crop", "resize"]
    entry = worker.handlers.get("resize")
    assert entry is not None
    assert entry.fn is resize
    assert entry.timeout == 5
    assert "crop" in worker.handlers
    assert worker.handlers.get("missing") is None


def test_a_work_type_has_one_handler() -> None:
    handlers = Handlers()
    handlers.register("resize", _noop)
    with pytest.raises(InvalidInput, match="already registered"):
        handlers.register("resize", _noop)


@pytest.mark.parametrize("work_type", ["", "Resize", "-x", "a b", "x" * 51])
def test_invalid_work_types_are_refused(work_type: str) -> None:
    with pytest.raises(InvalidInput):
        Handlers().register(work_type, _noop)


def test_a_handler_timeout_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="positive"):
        Handlers().register("resize", _noop, timeout=0)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"batch": 1001},
        {"claim_wait": 31},
        {"claim_wait": -1},
        {"heartbeat_interval": 0},
        {"default_timeout": -1},
        {"grace_period": -0.5},
        {"concurrency": True},
    ],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        WorkerOptions(**options)  # type: ignore[arg-type]


def test_heartbeats_come_at_most_every_third_of_the_lease() -> None:
    assert heartbeat_period(timedelta(seconds=3600)) == 1200
    assert heartbeat_period(timedelta(seconds=3)) == 1
    assert heartbeat_period(timedelta(seconds=3600), cap=30) == 30
    assert heartbeat_period(timedelta(seconds=30), cap=60) == 10


def test_handler_errors_carry_their_class() -> None:
    assert PermanentError("BadInput", "no image").failure == Failure.permanent(
        "BadInput", "no image"
    )
    assert RetryableError("Busy").failure == Failure.retryable("Busy", "")
    assert str(RetryableError("Busy", "try later")) == "Busy: try later"


def test_default_classification_is_retryable_and_bounded() -> None:
    failure = default_classify(OSError("é" * 10_000))
    assert failure.failure_class is FailureClass.RETRYABLE
    assert failure.reason == "OSError"
    assert len(failure.message.encode("utf-8")) <= MAX_MESSAGE_BYTES
    assert failure.message.endswith("…")


def test_failures_are_cleaned_to_what_the_broker_accepts() -> None:
    raw = Failure.permanent("R\x00" * 300, "bad\x00 \udcff text")
    cleaned = clean_failure(raw)
    assert cleaned.failure_class is FailureClass.PERMANENT
    assert cleaned.reason == ("R" * 300)[:MAX_REASON_CHARS]
    assert cleaned.message == "bad ? text"
    assert clean_failure(Failure.retryable("", "")).reason == "Error"
    fine = Failure.retryable("Busy", "later")
    assert clean_failure(fine) is fine


def test_a_job_shows_its_item_and_counts_local_retries() -> None:
    item = WorkItem(
        id=uuid4(),
        work_type="resize",
        spec="{}",
        targeting=Targeting.everyone(),
        created_at=EPOCH,
        labels={"team": "a"},
        correlation_id="c-1",
        attempt=2,
    )
    job = Job(item)
    assert (job.id, job.work_type, job.spec, job.attempt) == (item.id, "resize", "{}", 2)
    assert job.labels == {"team": "a"}
    assert job.correlation_id == "c-1"
    job.report_local_retries(2)
    job.report_local_retries(1)  # never goes down
    assert job.local_retries == 2
    with pytest.raises(InvalidInput):
        job.report_local_retries(-1)


@pytest.mark.anyio
async def test_a_worker_needs_handlers_and_runs_once() -> None:
    worker = Worker(memory_harness().service, name="w")
    with pytest.raises(InvalidInput, match="handler"):
        await worker.run()
    worker.register("echo", _noop)
    worker.stop()
    await worker.run()
    with pytest.raises(RuntimeError, match="once"):
        await worker.run()
