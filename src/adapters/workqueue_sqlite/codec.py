"""Conversions between the core's models and SQLite column values.

Times are integer microseconds since the Unix epoch (UTC) and durations integer
microseconds: exact, and ordered the way the core orders them. Ids are the
canonical lowercase text of the UUID, whose text order is the UUID's order.
Structured values (targeting, retry policy, labels, failures) are compact JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

from workqueue_core._stored import BoundedCache, stored_item, stored_record
from workqueue_core.domain.errors import InvalidInput
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

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

Row = Sequence[Any]

_STATUS: Final = {s.value: s for s in WorkStatus}


# --- scalars -------------------------------------------------------------------


def to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (value - _EPOCH) // _MICROSECOND


def opt_us(value: datetime | None) -> int | None:
    """``to_us`` that passes None through."""
    return None if value is None else to_us(value)


def from_us(value: int) -> datetime:
    """The UTC datetime ``value`` microseconds after the Unix epoch.

    An instant past the last UTC ``datetime`` (only ``datetime.max`` in a zone west
    of UTC, as the core's saturated retry times can be) reads back as that last one.
    """
    try:
        return _EPOCH + timedelta(microseconds=value)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def opt_dt(value: int | None) -> datetime | None:
    """``from_us`` that passes None through."""
    return None if value is None else from_us(value)


def duration_us(value: timedelta) -> int:
    """A duration in whole microseconds (timedeltas hold nothing finer)."""
    return value // _MICROSECOND


def opt_uuid(value: str | None) -> UUID | None:
    """A UUID column that may be NULL."""
    return None if value is None else UUID(value)


def opt_id(value: UUID | None) -> str | None:
    """The text of a UUID that may be None."""
    return None if value is None else str(value)


def dump(value: object) -> str:
    """Compact, key-sorted JSON."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# --- structured values ---------------------------------------------------------


def dump_targeting(targeting: Targeting) -> str:
    """Targeting as JSON: ``Targeting.to_mapping`` (sorted agent ids, the selector's
    requirement list or null), keys sorted."""
    return dump(targeting.to_mapping())


def load_targeting(text: str) -> Targeting:
    """The Targeting ``dump_targeting`` wrote."""
    return Targeting.from_mapping(json.loads(text))


class TargetingCache:
    """Parsed targeting and retry policies by their JSON text, each parsed once.

    Both are frozen values, so items submitted alike can share one parse; each cache
    keeps at most ``size`` of them.
    """

    def __init__(self, size: int = 4096) -> None:
        self._parsed: BoundedCache[str, Targeting] = BoundedCache(size)
        self._policies: BoundedCache[str, RetryPolicy] = BoundedCache(size)

    def get(self, text: str) -> Targeting:
        """The Targeting of ``text``."""
        found = self._parsed.get(text)
        return found if found is not None else self._parsed.put(text, load_targeting(text))

    def policy(self, text: str) -> RetryPolicy:
        """The RetryPolicy of ``text``."""
        found = self._policies.get(text)
        return found if found is not None else self._policies.put(text, load_policy(text))


def dump_policy(policy: RetryPolicy) -> str:
    """A retry policy as JSON, delays in microseconds."""
    return dump(
        {
            "max_retries": policy.max_retries,
            "base_delay_us": duration_us(policy.base_delay),
            "multiplier": policy.multiplier,
            "max_delay_us": duration_us(policy.max_delay),
            "jitter": policy.jitter.value,
        }
    )


def load_policy(text: str) -> RetryPolicy:
    """The RetryPolicy ``dump_policy`` wrote."""
    data = json.loads(text)
    return RetryPolicy(
        max_retries=data["max_retries"],
        base_delay=timedelta(microseconds=data["base_delay_us"]),
        multiplier=data["multiplier"],
        max_delay=timedelta(microseconds=data["max_delay_us"]),
        jitter=Jitter(data["jitter"]),
    )


def dump_failure(failure: Failure | None) -> str | None:
    """A failure as JSON, or None."""
    if failure is None:
        return None
    return dump(
        {
            "class": failure.failure_class.value,
            "reason": failure.reason,
            "message": failure.message,
        }
    )


def load_failure(text: str | None) -> Failure | None:
    """The Failure ``dump_failure`` wrote."""
    if text is None:
        return None
    data = json.loads(text)
    return Failure(FailureClass(data["class"]), data["reason"], data["message"])


def dump_map(value: Mapping[str, str]) -> str:
    """A string-to-string mapping as JSON."""
    return dump(dict(value))


def load_map(text: str) -> dict[str, str]:
    """The mapping ``dump_map`` wrote."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise InvalidInput("stored labels are not a mapping")
    return {str(k): str(v) for k, v in data.items()}


# --- work items and records ----------------------------------------------------------

ITEM_COLUMNS: Final = (
    "id",
    "work_type",
    "spec",
    "targeting",
    "created_at",
    "retry_policy",
    "max_executions",
    "claim_timeout_us",
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
RECORD_COLUMNS: Final = (*ITEM_COLUMNS, "finished_at", "finished_by", "result")
ITEM_SELECT: Final = ", ".join(ITEM_COLUMNS)
RECORD_SELECT: Final = ", ".join(RECORD_COLUMNS)


def item_values(item: WorkItem) -> tuple[Any, ...]:
    """The column values of an item, in ``ITEM_COLUMNS`` order."""
    return (
        str(item.id),
        item.work_type,
        item.spec,
        dump_targeting(item.targeting),
        to_us(item.created_at),
        dump_policy(item.retry_policy),
        item.max_executions,
        duration_us(item.claim_timeout),
        item.priority,
        opt_us(item.not_before),
        item.idempotency_key,
        item.correlation_id,
        dump_map(item.labels),
        item.callback_url,
        *_claim_state(item),
    )


def _claim_state(item: WorkItem) -> tuple[Any, ...]:
    """The values of the columns from ``status`` to ``last_error``, in order."""
    return (
        item.status.value,
        item.attempt,
        item.executions,
        item.local_retries,
        opt_id(item.claimed_by),
        opt_us(item.claimed_at),
        opt_us(item.lease_expires_at),
        dump_failure(item.last_error),
    )


def record_values(record: ExecutionRecord) -> tuple[Any, ...]:
    """The column values of a log record, in ``RECORD_COLUMNS`` order."""
    return (
        *item_values(record.item),
        to_us(record.finished_at),
        record.finished_by,
        record.result,
    )


STATE_COLUMNS: Final = ("not_before", *ITEM_COLUMNS[ITEM_COLUMNS.index("status") :])
"""The item columns a transition may change; the others are the submission's, written once."""
SUBMITTED_COLUMNS: Final = tuple(c for c in ITEM_COLUMNS if c not in STATE_COLUMNS)


def ended_values(record: ExecutionRecord) -> tuple[Any, ...]:
    """A log record's ``STATE_COLUMNS``, ``finished_at``, ``finished_by``, ``result`` and id:
    the parameters of ``sql.MOVE_TO_LOG``."""
    item = record.item
    return (
        opt_us(item.not_before),
        *_claim_state(item),
        to_us(record.finished_at),
        record.finished_by,
        record.result,
        str(item.id),
    )


def _submission(row: Row, targetings: TargetingCache | None) -> tuple[Any, ...]:
    """The values of ``ITEM_FIELDS`` from ``id`` to ``callback_url`` (the submission's,
    never changed by a transition) of a row selected with ``ITEM_SELECT``."""
    if targetings is None:
        targeting, policy = load_targeting(row[3]), load_policy(row[5])
    else:
        targeting, policy = targetings.get(row[3]), targetings.policy(row[5])
    return (
        UUID(row[0]),
        row[1],
        row[2],
        targeting,
        from_us(row[4]),
        policy,
        timedelta(microseconds=row[7]),
        row[8],
        opt_dt(row[9]),
        row[10],
        row[11],
        load_map(row[12]),
        row[13],
    )


def load_item(row: Row, targetings: TargetingCache | None = None) -> WorkItem:
    """The WorkItem of a row selected with ``ITEM_SELECT`` (a prefix of ``RECORD_SELECT``).

    The row was validated when it was written, so the item is built without running
    the model's validators again (``workqueue_core._stored``).
    """
    return stored_item(
        (
            *_submission(row, targetings),
            _STATUS[row[14]],
            row[15],
            row[16],
            row[17],
            opt_uuid(row[18]),
            opt_dt(row[19]),
            opt_dt(row[20]),
            load_failure(row[21]),
        )
    )


# --- the hot path: claims and completions straight from rows ---------------------------
#
# ``claim_next`` and ``complete_many`` change a handful of columns of rows they have just
# read. Instead of decoding each row into an item, running the transition (which builds
# and validates a second item and an ``Event``) and encoding the result again, these
# functions compute the transition's columns from the row and build only what the caller
# returns. They agree with ``transitions.claim`` / ``transitions.complete`` exactly:
# ``tests/integration/sqlite/test_sqlite_hot_path.py`` compares them on the same rows.


def claimed_from(
    row: Row,
    targetings: TargetingCache,
    agent_id: UUID,
    agent_text: str,
    now: datetime,
    now_us: int,
) -> tuple[WorkItem, tuple[Any, ...], tuple[Any, ...]]:
    """``transitions.claim`` of the PENDING item in ``row`` (``ITEM_SELECT``) by the agent,
    whose eligibility the caller checked: the claimed item, the parameters of
    ``sql.CLAIM_ITEM`` and the event's ``EVENT_COLUMNS`` values."""
    submitted = _submission(row, targetings)
    attempt, executions = row[15] + 1, row[16] + 1
    lease = now + submitted[6]  # the claim timeout; OverflowError as in the transition
    item = stored_item(
        (
            *submitted,
            WorkStatus.CLAIMED,
            attempt,
            executions,
            0,
            agent_id,
            now,
            lease,
            load_failure(row[21]),
        )
    )
    lease_us = now_us + row[7]
    update = ("CLAIMED", attempt, executions, 0, agent_text, now_us, lease_us, row[0])
    actor = "agent:" + agent_text
    event = (row[0], "PENDING", "CLAIMED", actor, now_us, attempt, executions, agent_text)
    return item, update, (*event, row[11], "claimed")


def held_under(row: Row, attempt: int, agent_id: UUID) -> bool:
    """Whether the item in ``row`` (``ITEM_SELECT``) is CLAIMED by ``agent_id`` under
    the token of ``attempt``: the claims ``completed_from`` may complete."""
    return bool(row[14] == "CLAIMED" and row[15] == attempt and row[18] == str(agent_id))


def completed_from(
    row: Row,
    targetings: TargetingCache,
    agent_id: UUID,
    now: datetime,
    now_us: int,
    result: str | None,
    local_retries: int,
) -> tuple[ExecutionRecord, tuple[Any, ...], tuple[Any, ...]]:
    """``transitions.complete`` of the item in ``row`` (``ITEM_SELECT``), CLAIMED by the
    agent under the token the caller checked: the record, the parameters of
    ``sql.MOVE_TO_LOG`` (``ended_values``) and the event's ``EVENT_COLUMNS`` values."""
    executions, retries = row[16], row[17]
    if local_retries > retries:  # as transitions._charge_local_retries(clamp=True)
        executions += local_retries - retries
        retries = local_retries
        if executions > row[6]:
            retries -= executions - row[6]
            executions = row[6]
    item = stored_item(
        (
            *_submission(row, targetings),
            WorkStatus.SUCCEEDED,
            row[15],
            executions,
            retries,
            agent_id,
            opt_dt(row[19]),
            None,
            load_failure(row[21]),
        )
    )
    actor = "agent:" + row[18]
    record = stored_record(item, now, actor, result)
    ended = (row[9], "SUCCEEDED", row[15], executions, retries, row[18], row[19], None)
    event = (row[0], "CLAIMED", "SUCCEEDED", actor, now_us, row[15], executions, row[18])
    return (
        record,
        (*ended, row[21], now_us, actor, result, row[0]),
        (*event, row[11], "succeeded"),
    )


def load_record(row: Row, targetings: TargetingCache | None = None) -> ExecutionRecord:
    """The ExecutionRecord of a row selected with ``RECORD_SELECT``."""
    n = len(ITEM_COLUMNS)
    return stored_record(load_item(row, targetings), from_us(row[n]), row[n + 1], row[n + 2])


# --- events ----------------------------------------------------------------------------

EVENT_COLUMNS: Final = (
    "work_id",
    "from_status",
    "to_status",
    "actor",
    "at",
    "attempt",
    "executions",
    "claimed_by",
    "correlation_id",
    "detail",
)
EVENT_SELECT: Final = ", ".join((*EVENT_COLUMNS, "seq"))


def event_values(event: Event) -> tuple[Any, ...]:
    """The column values of an event, in ``EVENT_COLUMNS`` order (``seq`` is assigned)."""
    return (
        str(event.work_id),
        None if event.from_status is None else event.from_status.value,
        event.to_status.value,
        event.actor,
        to_us(event.at),
        event.attempt,
        event.executions,
        opt_id(event.claimed_by),
        event.correlation_id,
        event.detail,
    )


def load_event(row: Row) -> Event:
    """The Event of a row selected with ``EVENT_SELECT``."""
    return Event(
        work_id=UUID(row[0]),
        from_status=None if row[1] is None else WorkStatus(row[1]),
        to_status=WorkStatus(row[2]),
        actor=row[3],
        at=from_us(row[4]),
        attempt=row[5],
        executions=row[6],
        claimed_by=opt_uuid(row[7]),
        correlation_id=row[8],
        detail=row[9],
        seq=row[10],
    )


# --- agents ----------------------------------------------------------------------------

AGENT_COLUMNS: Final = (
    "id",
    "name",
    "registered_at",
    "labels",
    "annotations",
    "status",
    "last_seen_at",
    "token_hash",
)
AGENT_SELECT: Final = ", ".join(AGENT_COLUMNS)


def agent_values(agent: Agent) -> tuple[Any, ...]:
    """The column values of an agent, in ``AGENT_COLUMNS`` order."""
    return (
        str(agent.id),
        agent.name,
        to_us(agent.registered_at),
        dump_map(agent.labels),
        dump_map(agent.annotations),
        agent.status.value,
        opt_us(agent.last_seen_at),
        agent.token_hash,
    )


def load_agent(row: Row) -> Agent:
    """The Agent of a row selected with ``AGENT_SELECT``."""
    return Agent(
        id=UUID(row[0]),
        name=row[1],
        registered_at=from_us(row[2]),
        labels=load_map(row[3]),
        annotations=load_map(row[4]),
        status=AgentStatus(row[5]),
        last_seen_at=opt_dt(row[6]),
        token_hash=row[7],
    )
