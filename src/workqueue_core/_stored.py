"""Domain objects rebuilt from rows a store wrote itself, without running validators again.

Every value a store keeps was validated on the way in (by the models' constructors
and the store's own constraints). Reading a batch of a hundred items back through
the validating constructors cost a store more than its round trip, so stores build
them field by field here instead. ``FAST_ITEMS`` / ``FAST_RECORDS`` turn False (and
the constructors are used) if a model gains, loses or reorders a field; a test
fails then, so the stores learn the new field.

``BoundedCache`` keeps the decoded values the stores share between rows (targetings,
retry policies) without growing with the number of distinct ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime
from types import MemberDescriptorType
from typing import Any, Generic, TypeVar

import attrs

from workqueue_core.domain.models import ExecutionRecord, WorkItem

__all__ = [
    "FAST_ITEMS",
    "FAST_RECORDS",
    "ITEM_FIELDS",
    "BoundedCache",
    "stored_item",
    "stored_record",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``size`` values by key; the oldest entry leaves when a new one does not fit.

    For immutable values decoded from rows (a targeting, a retry policy), so a miss only
    costs a decode.  Not thread-safe: each store keeps its own, used from one event loop.
    """

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int = 4096) -> None:
        if size < 1:
            raise ValueError("a cache needs room for at least one entry")
        self._size = size
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The value of ``key``, or None."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` for ``key`` (evicting the oldest entry if full); returns ``value``."""
        entries = self._entries
        if key not in entries and len(entries) >= self._size:
            del entries[next(iter(entries))]
        entries[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """The most entries kept."""
        return self._size


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


def _validated_item(values: tuple[Any, ...]) -> WorkItem:
    return WorkItem(**dict(zip(ITEM_FIELDS, values, strict=True)))


def _unrolled_item_builder() -> Callable[[tuple[Any, ...]], WorkItem]:
    """``stored_item``'s fast body: one slot write per field, written out (generated from
    ``ITEM_FIELDS``), about 40 % cheaper than looping over the writers."""
    names = [f"v{i}" for i in range(len(ITEM_FIELDS))]
    source = (
        "def stored_item_fast(values):\n"
        f"    {', '.join(names)}, = values\n"
        "    item = new(WorkItem)\n"
        + "".join(f"    w{i}(item, {name})\n" for i, name in enumerate(names))
        + "    return item\n"
    )
    scope: dict[str, Any] = {"new": _new, "WorkItem": WorkItem}
    scope.update((f"w{i}", write) for i, write in enumerate(_ITEM_SETTERS))
    exec(source, scope)  # a fixed source: only the number of fields varies
    built: Callable[[tuple[Any, ...]], WorkItem] = scope["stored_item_fast"]
    return built


stored_item: Callable[[tuple[Any, ...]], WorkItem] = (
    _unrolled_item_builder() if FAST_ITEMS else _validated_item
)
"""A ``WorkItem`` from already valid values in ``ITEM_FIELDS`` order (``labels`` a
``dict[str, str]`` of its own), skipping validation (a ``ValueError`` when the number
of values is not the number of fields)."""


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
