"""Domain objects rebuilt from rows a store wrote itself, without running validators again.

Every value a store keeps was validated on the way in (by the models' constructors
and the store's own constraints). Reading a batch of a hundred items back through
the validating constructors cost a store more than its round trip, so stores build
them field by field here instead. ``FAST_ITEMS`` / ``FAST_RECORDS`` turn False (and
the constructors are used) if a model gains, loses or reorders a field; a test
fails then, so the stores learn the new field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import MemberDescriptorType
from typing import Any

import attrs

from workqueue_core.domain.models import ExecutionRecord, WorkItem

__all__ = ["FAST_ITEMS", "FAST_RECORDS", "ITEM_FIELDS", "stored_item", "stored_record"]

ITEM_FIELDS = (
    "id",
    "work_type",
    "spec",
    "targeting",
    "created_at",
    "retry_policy",
    "claim_timeout",
    "priority",
    "not_before",
    "idempotency_key",
    "correlation_id",
    "labels",
    "callback_url",
    "status",
    "attempt",
    "executions",
    "local_retries",
    "claimed_by",
    "claimed_at",
    "lease_expires_at",
    "last_error",
)
"""``WorkItem``'s fields, in the order ``stored_item`` takes their values."""

FAST_ITEMS = tuple(a.name for a in attrs.fields(WorkItem)) == ITEM_FIELDS and all(
    isinstance(WorkItem.__dict__.get(name), MemberDescriptorType) for name in ITEM_FIELDS
)
"""Whether ``stored_item`` may build items field by field (through their slots)."""

FAST_RECORDS = tuple(a.name for a in attrs.fields(ExecutionRecord)) == (
    "item",
    "finished_at",
    "finished_by",
    "result",
)
"""Whether ``stored_record`` may build records field by field."""

_new = object.__new__
_set = object.__setattr__
_ITEM_SETTERS: tuple[Callable[[WorkItem, Any], None], ...] = (
    tuple(WorkItem.__dict__[name].__set__ for name in ITEM_FIELDS) if FAST_ITEMS else ()
)
"""Each field's slot writer, in ``ITEM_FIELDS`` order: cheaper than ``object.__setattr__``,
which looks the slot up on every call."""


def stored_item(values: tuple[Any, ...]) -> WorkItem:
    """A ``WorkItem`` from already valid values in ``ITEM_FIELDS`` order (``labels`` a
    ``dict[str, str]`` of its own), skipping validation."""
    if not FAST_ITEMS:
        return WorkItem(**dict(zip(ITEM_FIELDS, values, strict=True)))
    item: WorkItem = _new(WorkItem)
    for write, value in zip(_ITEM_SETTERS, values, strict=True):
        write(item, value)
    return item


def stored_record(
    item: WorkItem, finished_at: datetime, finished_by: str, result: str | None
) -> ExecutionRecord:
    """An ``ExecutionRecord`` from already valid values, skipping validation."""
    if not FAST_RECORDS:
        return ExecutionRecord(item, finished_at, finished_by, result)
    record: ExecutionRecord = _new(ExecutionRecord)
    _set(record, "item", item)
    _set(record, "finished_at", finished_at)
    _set(record, "finished_by", finished_by)
    _set(record, "result", result)
    return record
