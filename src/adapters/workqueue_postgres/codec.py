"""Rows to domain objects and back, in the column orders of ``workqueue_postgres.sql``.

Rows read back were validated when they were written (by the core's models and
the schema's CHECK constraints), so ``item_from`` builds items without running
the models' validators again (``workqueue_core._stored``): on the claim and
completion paths, validating a hundred items per batch cost more than the round
trip.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.abc import Buffer
from psycopg.adapt import Dumper
from psycopg.errors import NumericValueOutOfRange
from psycopg.pq import Format
from psycopg.types.json import Jsonb, JsonbBinaryLoader

from workqueue_core._stored import BoundedCache, stored_item, stored_record
from workqueue_core.domain.models import (
    Agent,
    AgentStatus,
    Event,
    ExecutionRecord,
    Failure,
    FailureClass,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.domain.selectors import LabelSelector

_US = timedelta(microseconds=1)
_STATUS = {s.value: s for s in WorkStatus}
_FAILURE = {c.value: c for c in FailureClass}
_CLAIMED = WorkStatus.CLAIMED
_POLICIES: BoundedCache[tuple[int, int, float, int, str], RetryPolicy] = BoundedCache(4096)
"""Retry policies by their row's columns: shared by every store of the process."""
_DURATIONS: BoundedCache[int, timedelta] = BoundedCache(4096)
"""Claim timeouts by their microseconds, likewise."""


def micros(delta: timedelta) -> int:
    """A duration in whole microseconds."""
    return delta // _US


def policy(
    max_retries: int, base_us: int, multiplier: float, max_us: int, jitter: str
) -> RetryPolicy:
    """The retry policy of a row (policies are immutable, so shared)."""
    key = (max_retries, base_us, multiplier, max_us, jitter)
    found = _POLICIES.get(key)
    if found is None:
        found = RetryPolicy(
            max_retries,
            timedelta(microseconds=base_us),
            multiplier,
            timedelta(microseconds=max_us),
            Jitter(jitter),
        )
        _POLICIES.put(key, found)
    return found


def duration(us: int) -> timedelta:
    """A duration of ``us`` microseconds (claim timeouts repeat: shared, like policies)."""
    found = _DURATIONS.get(us)
    if found is None:
        found = _DURATIONS.put(us, timedelta(microseconds=us))
    return found


class JsonbLoader(JsonbBinaryLoader):
    """Binary ``jsonb`` to Python, with the empty object (most items' labels) short-cut."""

    def load(self, data: Buffer) -> Any:
        if data == _EMPTY_OBJECT:
            return {}
        return super().load(data)


_EMPTY_OBJECT = b"\x01{}"


# --- arrays of a batch ----------------------------------------------------------------
# psycopg dumps a list element by element through each element's dumper; a completion
# batch sends a hundred ids and attempts, and that dump cost about as much as building
# the hundred claimed items. These write PostgreSQL's binary array format directly
# (header: dimensions, has-nulls, element type, then length and lower bound; then each
# element as its length and bytes). No element may be None.

_ARRAY_HEAD = struct.Struct(">iiIii")
_EMPTY_HEAD = struct.Struct(">iiI")
_UUID_OID, _UUID_ARRAY_OID = 2950, 2951
_INT4_OID, _INT4_ARRAY_OID = 23, 1007
_UUID_SIZE = struct.pack(">i", 16)
_INT4_ELEMENT = struct.Struct(">ii")


class UuidArray(list[UUID]):
    """A list of UUIDs sent as one binary ``uuid[]`` (``UuidArrayDumper``)."""

    __slots__ = ()


class Int4Array(list[int]):
    """A list of ints sent as one binary ``integer[]`` (``Int4ArrayDumper``)."""

    __slots__ = ()


class UuidArrayDumper(Dumper):
    """``UuidArray`` to binary ``uuid[]``."""

    format = Format.BINARY
    oid = _UUID_ARRAY_OID

    def dump(self, obj: Any) -> bytes:
        if not obj:
            return _EMPTY_HEAD.pack(0, 0, _UUID_OID)
        return b"".join(
            (
                _ARRAY_HEAD.pack(1, 0, _UUID_OID, len(obj), 1),
                _UUID_SIZE,
                _UUID_SIZE.join([u.bytes for u in obj]),
            )
        )


class Int4ArrayDumper(Dumper):
    """``Int4Array`` to binary ``integer[]``."""

    format = Format.BINARY
    oid = _INT4_ARRAY_OID

    def dump(self, obj: Any) -> bytes:
        if not obj:
            return _EMPTY_HEAD.pack(0, 0, _INT4_OID)
        pack = _INT4_ELEMENT.pack
        try:
            elements = b"".join([pack(4, v) for v in obj])
        except struct.error:  # as the server answers a list cast to integer[]
            raise NumericValueOutOfRange("integer out of range") from None
        return _ARRAY_HEAD.pack(1, 0, _INT4_OID, len(obj), 1) + elements


# --- targeting ----------------------------------------------------------------


def selector_json(selector: LabelSelector | None) -> list[list[Any]] | None:
    """The selector as JSON: its requirement list in canonical order (``to_mapping``'s)."""
    return None if selector is None else selector.to_requirement_list()


def targeting_key(targeting: Targeting) -> str:
    """A canonical text naming the targeting: equal targetings, equal keys.

    ``[agent_ids, selector]`` of ``Targeting.to_mapping``: the ``key`` column of existing
    ``work_targets`` rows, so it must not change.
    """
    mapping = targeting.to_mapping()
    return json.dumps([mapping["agent_ids"], mapping["selector"]], separators=(",", ":"))


def targeting_from(agent_ids: Sequence[UUID], selector: Any) -> Targeting:
    """The targeting stored in a ``work_targets`` row."""
    return Targeting.from_mapping({"agent_ids": agent_ids, "selector": selector})


# --- items ----------------------------------------------------------------------


def item_from(row: Sequence[Any], targets: Mapping[int, Targeting]) -> WorkItem:
    """A ``WorkItem`` from the first ``len(ITEM_COLUMNS)`` values of a row."""
    return _item(
        (*row[:17], row[18], row[19], *row[24:27]),
        targets,
        _STATUS[row[17]],
        row[20],
        row[21],
        row[22],
        row[23],
    )


def claimed_from(
    row: Sequence[Any], targets: Mapping[int, Targeting], agent_id: UUID, now: datetime
) -> WorkItem:
    """A ``WorkItem`` from a row of ``CLAIMED_COLUMNS`` that ``agent_id`` claimed at ``now``.

    The columns ``claim_next`` leaves out are the claim's: CLAIMED, no local retries, the
    holder, ``now``, and the lease ``now + claim_timeout`` (exact, in microseconds, as the
    statement computes it).
    """
    (
        id_,
        work_type,
        spec,
        target_id,
        created_at,
        max_retries,
        base_us,
        multiplier,
        max_us,
        jitter,
        claim_timeout_us,
        priority,
        not_before,
        idempotency_key,
        correlation_id,
        labels,
        callback_url,
        attempt,
        executions,
        error_class,
        error_reason,
        error_message,
    ) = row
    claim_timeout = duration(claim_timeout_us)
    # written out rather than through _item: the claim path builds a hundred per batch
    return stored_item(
        (
            id_,
            work_type,
            spec,
            targets[target_id],
            created_at,
            policy(max_retries, base_us, multiplier, max_us, jitter),
            claim_timeout,
            priority,
            not_before,
            idempotency_key,
            correlation_id,
            labels,
            callback_url,
            _CLAIMED,
            attempt,
            executions,
            0,
            agent_id,
            now,
            now + claim_timeout,
            None if error_class is None else _failure(error_class, error_reason, error_message),
        )
    )


def _item(
    row: Sequence[Any],
    targets: Mapping[int, Targeting],
    status: WorkStatus,
    local_retries: int,
    claimed_by: UUID | None,
    claimed_at: datetime | None,
    lease_expires_at: datetime | None,
) -> WorkItem:
    """A ``WorkItem`` from a row of ``CLAIMED_COLUMNS`` and the claim state given apart."""
    (
        id_,
        work_type,
        spec,
        target_id,
        created_at,
        max_retries,
        base_us,
        multiplier,
        max_us,
        jitter,
        claim_timeout_us,
        priority,
        not_before,
        idempotency_key,
        correlation_id,
        labels,
        callback_url,
        attempt,
        executions,
        error_class,
        error_reason,
        error_message,
    ) = row
    return stored_item(
        (
            id_,
            work_type,
            spec,
            targets[target_id],
            created_at,
            policy(max_retries, base_us, multiplier, max_us, jitter),
            duration(claim_timeout_us),
            priority,
            not_before,
            idempotency_key,
            correlation_id,
            labels,
            callback_url,
            status,
            attempt,
            executions,
            local_retries,
            claimed_by,
            claimed_at,
            lease_expires_at,
            None if error_class is None else _failure(error_class, error_reason, error_message),
        )
    )


def _failure(failure_class: str, reason: str, message: str | None) -> Failure:
    return Failure(_FAILURE[failure_class], reason, message or "")


def record_from(row: Sequence[Any], targets: Mapping[int, Targeting]) -> ExecutionRecord:
    """An ``ExecutionRecord`` from a row of ``LOG_COLUMNS``."""
    return stored_record(item_from(row, targets), row[27], row[28], row[29])


def item_params(item: WorkItem, target_id: int) -> tuple[Any, ...]:
    """The ``ITEM_COLUMNS`` values of an item, positional."""
    p = item.retry_policy
    error = item.last_error
    return (
        item.id,
        item.work_type,
        item.spec,
        target_id,
        item.created_at,
        p.max_retries,
        micros(p.base_delay),
        float(p.multiplier),
        micros(p.max_delay),
        p.jitter.value,
        micros(item.claim_timeout),
        item.priority,
        item.not_before,
        item.idempotency_key,
        item.correlation_id,
        Jsonb(item.labels),
        item.callback_url,
        item.status.value,
        item.attempt,
        item.executions,
        item.local_retries,
        item.claimed_by,
        item.claimed_at,
        item.lease_expires_at,
        None if error is None else error.failure_class.value,
        None if error is None else error.reason,
        None if error is None else error.message,
    )


def record_params(record: ExecutionRecord, target_id: int) -> tuple[Any, ...]:
    """The ``LOG_COLUMNS`` values of a log record, positional."""
    return (
        *item_params(record.item, target_id),
        record.finished_at,
        record.finished_by,
        record.result,
    )


# --- events and agents ------------------------------------------------------------


def event_params(event: Event) -> tuple[Any, ...]:
    """The ``EVENT_COLUMNS`` values of an event, positional."""
    return (
        event.work_id,
        None if event.from_status is None else event.from_status.value,
        event.to_status.value,
        event.actor,
        event.at,
        event.attempt,
        event.executions,
        event.claimed_by,
        event.correlation_id,
        event.detail,
    )


def event_from(row: Sequence[Any]) -> Event:
    """An ``Event`` from a row of ``EVENT_COLUMNS`` followed by ``seq``."""
    return Event(
        work_id=row[0],
        from_status=None if row[1] is None else _STATUS[row[1]],
        to_status=_STATUS[row[2]],
        actor=row[3],
        at=row[4],
        attempt=row[5],
        executions=row[6],
        claimed_by=row[7],
        correlation_id=row[8],
        detail=row[9],
        seq=row[10],
    )


def agent_from(row: Sequence[Any]) -> Agent:
    """An ``Agent`` from a row of ``AGENT_COLUMNS``."""
    return Agent(
        id=row[0],
        name=row[1],
        registered_at=row[2],
        labels=row[3],
        annotations=row[4],
        status=AgentStatus(row[5]),
        last_seen_at=row[6],
        token_hash=row[7],
    )


def agent_params(agent: Agent) -> tuple[Any, ...]:
    """The ``AGENT_COLUMNS`` values of an agent, positional."""
    return (
        agent.id,
        agent.name,
        agent.registered_at,
        Jsonb(agent.labels),
        Jsonb(agent.annotations),
        agent.status.value,
        agent.last_seen_at,
        agent.token_hash,
    )
