"""The codec's unvalidated fast path builds exactly what the models' constructors build."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import attrs

from workqueue_core.domain.models import ExecutionRecord, Failure, Targeting, WorkItem, WorkStatus
from workqueue_postgres import codec


def test_a_decoded_row_equals_the_item_and_record_it_came_from() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    targeting = Targeting(agent_ids=frozenset({uuid4()}))
    item = WorkItem(
        id=uuid4(),
        work_type="build",
        spec="echo ü",
        targeting=targeting,
        created_at=now,
        claim_timeout=timedelta(seconds=90, microseconds=7),
        priority=2,
        not_before=now + timedelta(seconds=5),
        idempotency_key="k",
        correlation_id="c",
        labels={"team": "x"},
        callback_url="https://example.invalid/hook",
        status=WorkStatus.FAILED,
        attempt=2,
        executions=2,
        local_retries=0,
        claimed_by=uuid4(),
        claimed_at=now,
        last_error=Failure.retryable("boom", "it broke"),
    )
    record = ExecutionRecord(item, finished_at=now, finished_by="agent:x", result="r")
    row = (*codec.record_params(record, 7), None)
    row = tuple(v.obj if hasattr(v, "obj") else v for v in row)  # Jsonb wrappers
    decoded = codec.record_from(row, {7: targeting})
    assert decoded == record
    assert decoded.item == item and hash(decoded.item.token) == hash(item.token)
    assert attrs.evolve(decoded.item, priority=3).priority == 3
