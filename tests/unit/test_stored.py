"""Rebuilding stored rows without validators gives exactly what the constructors give."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import attrs
from hypothesis import given
from hypothesis import strategies as st

from workqueue_core import _stored as stored
from workqueue_core.domain.models import ExecutionRecord, Failure, WorkItem, WorkStatus
from workqueue_core.testing import EPOCH
from workqueue_core.testing import strategies as wst


def test_the_fast_path_knows_every_field_of_the_models() -> None:
    # False means WorkItem or ExecutionRecord changed: teach the stores the new fields.
    assert stored.FAST_ITEMS
    assert stored.FAST_RECORDS


def _values(item: WorkItem) -> tuple[object, ...]:
    return tuple(
        dict(getattr(item, name)) if name == "labels" else getattr(item, name)
        for name in stored.ITEM_FIELDS
    )


@given(
    wst.work_items(UUID(int=7), EPOCH, [UUID(int=1)]),
    st.integers(0, 3),
    st.none() | wst.failures(),
    wst.results(),
)
def test_stored_items_and_records_equal_the_validated_ones(
    item: WorkItem, attempt: int, failure: Failure | None, result: str | None
) -> None:
    item = attrs.evolve(
        item,
        status=WorkStatus.FAILED if failure else WorkStatus.SUCCEEDED,
        attempt=attempt,
        executions=min(attempt, item.max_executions),
        claimed_by=UUID(int=1) if attempt else None,
        claimed_at=EPOCH + timedelta(seconds=attempt) if attempt else None,
        last_error=failure,
    )
    rebuilt = stored.stored_item(_values(item))
    assert rebuilt == item
    assert attrs.evolve(rebuilt, priority=9) == attrs.evolve(item, priority=9)
    finished = EPOCH + timedelta(minutes=5)
    record = ExecutionRecord(item, finished_at=finished, finished_by="agent:x", result=result)
    assert stored.stored_record(rebuilt, finished, "agent:x", result) == record
