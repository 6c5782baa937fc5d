"""The JSON wire format: msgspec structs and explicit codecs to and from the core types.

Conventions: datetimes are RFC 3339 strings with an offset (``Z`` for UTC), durations
are numbers of seconds, UUIDs are strings, enums are their values. The server and
the client share these structs, so both sides agree on every field, and the OpenAPI
document the server serves is generated from them.

Numbers and strings are only type-checked here; their bounds are the core's
(``service.validate_submit``, ``RetryPolicy``), so an out-of-range value is an
``InvalidInput`` (HTTP 422) naming the field, the same error a library caller gets.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

import msgspec

from workqueue_core.domain.errors import InvalidInput
from workqueue_core.domain.models import (
    Agent,
    AgentStatus,
    Cursor,
    Event,
    ExecutionRecord,
    Failure,
    FailureClass,
    Stats,
    SubmitRequest,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_http.problems import Problem

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
"""A datetime that must carry an offset."""

WorkStatusName = Literal["HELD", "PENDING", "CLAIMED", "SUCCEEDED", "FAILED", "CANCELED"]
AgentStatusName = Literal["ACTIVE", "DRAINING", "INACTIVE"]
FailureClassName = Literal["PERMANENT", "RETRYABLE"]
JitterName = Literal["none", "full", "equal"]

MAX_SECONDS = 100 * 365 * 86_400
"""Longest duration accepted on the wire (the core bounds each field more tightly)."""


# --- structs -----------------------------------------------------------------------


class RetryPolicyWire(msgspec.Struct, kw_only=True):
    """Retry budget and backoff; delays in seconds."""

    max_retries: int = 3
    base_delay: float = 60.0
    multiplier: float = 2.0
    max_delay: float = 3600.0
    jitter: JitterName = "none"


class TargetingIn(msgspec.Struct, kw_only=True):
    """Listed agents and/or a label selector: string form, or matchLabels/matchExpressions."""

    agent_ids: list[UUID] = msgspec.field(default_factory=list)
    selector: str | dict[str, Any] | None = None


class TargetingOut(msgspec.Struct, kw_only=True):
    """Listed agents and the selector in structured form (``{}`` targets every agent)."""

    agent_ids: list[UUID]
    selector: dict[str, Any] | None


class FailureWire(msgspec.Struct, kw_only=True):
    """Why an attempt failed; the class decides retry or dead letter."""

    failure_class: FailureClassName
    reason: str
    message: str = ""


class SubmitBody(msgspec.Struct, kw_only=True):
    """``POST /work``: new work. The ``Idempotency-Key`` header may carry the idempotency key."""

    work_type: str
    spec: str
    targeting: TargetingIn
    retry_policy: RetryPolicyWire | None = None
    claim_timeout: float = 3600.0
    priority: int = 0
    not_before: AwareDatetime | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    callback_url: str | None = None
    requires_approval: bool = False


class WorkItemOut(msgspec.Struct, kw_only=True):
    """A work item and its queue state."""

    id: UUID
    work_type: str
    spec: str
    targeting: TargetingOut
    created_at: datetime
    retry_policy: RetryPolicyWire
    claim_timeout: float
    priority: int
    not_before: datetime | None
    idempotency_key: str | None
    correlation_id: str | None
    labels: dict[str, str]
    callback_url: str | None
    status: WorkStatusName
    attempt: int
    executions: int
    local_retries: int
    claimed_by: UUID | None
    claimed_at: datetime | None
    lease_expires_at: datetime | None
    last_error: FailureWire | None


class ExecutionRecordOut(msgspec.Struct, kw_only=True):
    """The execution-log record of a terminal item."""

    item: WorkItemOut
    finished_at: datetime
    finished_by: str
    result: str | None


class WorkView(msgspec.Struct, kw_only=True):
    """An item from the queue (``finished_at`` null) or its record from the log."""

    item: WorkItemOut
    finished_at: datetime | None
    finished_by: str | None
    result: str | None


class SubmitOut(msgspec.Struct, kw_only=True):
    """The stored work and whether this request created it."""

    created: bool
    work: WorkView


class SubmitManyBody(msgspec.Struct, kw_only=True):
    """``POST /work/batch``: several submissions (each as ``POST /work``'s body) at once."""

    items: list[SubmitBody]


class SubmitEntryOut(msgspec.Struct, kw_only=True):
    """One entry's outcome in a batch submit: the stored work (and whether this request
    created it), or the problem the entry met."""

    created: bool | None
    work: WorkView | None
    error: Problem | None


class SubmitManyOut(msgspec.Struct, kw_only=True):
    """Outcomes in the order of the request's items."""

    results: list[SubmitEntryOut]


class WorkPage(msgspec.Struct, kw_only=True):
    """A page of queue items; ``next_cursor`` continues the listing when not null."""

    items: list[WorkItemOut]
    next_cursor: str | None


class LogPage(msgspec.Struct, kw_only=True):
    """A page of execution-log records; ``next_cursor`` continues the listing when not null."""

    records: list[ExecutionRecordOut]
    next_cursor: str | None


class WorkList(msgspec.Struct, kw_only=True):
    """Queue items (a pending list or the items a claim took)."""

    items: list[WorkItemOut]


class ClaimBody(msgspec.Struct, kw_only=True):
    """``POST /work/{id}/claim``: which agent claims (implied by an agent token)."""

    agent_id: UUID | None = None


class ClaimNextBody(msgspec.Struct, kw_only=True):
    """``POST /agents/{id}/work/claim``: claim up to ``limit`` items, waiting up to ``wait`` s."""

    limit: int = 1
    work_types: list[str] | None = None
    wait: float = 0.0


class HeartbeatBody(msgspec.Struct, kw_only=True):
    """The claim token's attempt, and the local retries run so far."""

    attempt: int
    agent_id: UUID | None = None
    local_retries: int = 0


class CompleteBody(msgspec.Struct, kw_only=True):
    """Success of the claim ``attempt``, with an optional result text."""

    attempt: int
    agent_id: UUID | None = None
    result: str | None = None
    local_retries: int = 0


class FailBody(msgspec.Struct, kw_only=True):
    """Failure of the claim ``attempt``."""

    attempt: int
    failure: FailureWire
    agent_id: UUID | None = None
    local_retries: int = 0


class CompletionIn(msgspec.Struct, kw_only=True):
    """One entry of a batch completion (the agent is the one in the path)."""

    work_id: UUID
    attempt: int
    result: str | None = None
    local_retries: int = 0


class CompleteManyBody(msgspec.Struct, kw_only=True):
    """``POST /agents/{id}/work/complete``: several completions at once."""

    completions: list[CompletionIn]


class CompletionResult(msgspec.Struct, kw_only=True):
    """One entry's outcome in a batch completion: its record, or the problem it met."""

    work_id: UUID
    record: ExecutionRecordOut | None
    error: Problem | None


class CompleteManyOut(msgspec.Struct, kw_only=True):
    """Outcomes in the order of the request's completions."""

    results: list[CompletionResult]


class AgentOut(msgspec.Struct, kw_only=True):
    """A registered agent (its token is never shown again)."""

    id: UUID
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    status: AgentStatusName
    registered_at: datetime
    last_seen_at: datetime | None


class AgentList(msgspec.Struct, kw_only=True):
    """Agents by name."""

    agents: list[AgentOut]


class RegisterBody(msgspec.Struct, kw_only=True):
    """``POST /agents``."""

    name: str
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class IssuedAgentOut(msgspec.Struct, kw_only=True):
    """The new agent and its bearer token, shown this once."""

    agent: AgentOut
    token: str


class AgentPatchBody(msgspec.Struct, kw_only=True):
    """``PATCH /agents/{id}``: the fields given are replaced."""

    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    status: AgentStatusName | None = None


class EventOut(msgspec.Struct, kw_only=True):
    """One transition of one item."""

    work_id: UUID
    seq: int
    from_status: WorkStatusName | None
    to_status: WorkStatusName
    actor: str
    at: datetime
    attempt: int
    executions: int
    claimed_by: UUID | None
    correlation_id: str | None
    detail: str


class EventList(msgspec.Struct, kw_only=True):
    """An item's timeline, oldest first."""

    events: list[EventOut]


class StatsEntry(msgspec.Struct, kw_only=True):
    """How many items of one work type are in one status."""

    work_type: str
    status: WorkStatusName
    count: int


class StatsOut(msgspec.Struct, kw_only=True):
    """Counts by work type and status, over the queue and the log."""

    counts: list[StatsEntry]
    total: int


class HealthOut(msgspec.Struct, kw_only=True):
    """``/healthz`` and ``/readyz`` when all is well."""

    status: str


# --- checks ------------------------------------------------------------------------


def check_text(name: str, value: str | None) -> None:
    """Refuse text no store can hold: NUL characters, or strings that are not valid UTF-8."""
    if value is None:
        return
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{name} must be valid Unicode text (no lone surrogates)") from None


def check_mapping(name: str, values: Mapping[str, str]) -> None:
    """``check_text`` on every key and value of a string mapping."""
    for key, value in values.items():
        check_text(f"{name} key", key)
        check_text(f"{name}[{key!r}]", value)


def seconds(name: str, value: float, low: float = 0.0) -> timedelta:
    """A duration from a number of seconds; ``InvalidInput`` when not finite or out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number of seconds")
    if not math.isfinite(value) or not low <= value <= MAX_SECONDS:
        raise InvalidInput(f"{name} must be a number of seconds in {low:g}..{MAX_SECONDS}")
    return timedelta(seconds=value)


# --- codecs: core -> wire ----------------------------------------------------------


def retry_policy_out(policy: RetryPolicy) -> RetryPolicyWire:
    return RetryPolicyWire(
        max_retries=policy.max_retries,
        base_delay=policy.base_delay.total_seconds(),
        multiplier=policy.multiplier,
        max_delay=policy.max_delay.total_seconds(),
        jitter=policy.jitter.value,
    )


def targeting_out(targeting: Targeting) -> TargetingOut:
    """``Targeting.to_mapping`` with the selector in its structured (Kubernetes) form."""
    return TargetingOut(
        agent_ids=sorted(targeting.agent_ids),
        selector=targeting.to_mapping(structured_selector=True)["selector"],
    )


def failure_out(failure: Failure) -> FailureWire:
    return FailureWire(
        failure_class=failure.failure_class.value,
        reason=failure.reason,
        message=failure.message,
    )


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path``: without user, password, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def item_out(item: WorkItem) -> WorkItemOut:
    """The wire form of a work item."""
    return WorkItemOut(
        id=item.id,
        work_type=item.work_type,
        spec=item.spec,
        targeting=targeting_out(item.targeting),
        created_at=item.created_at,
        retry_policy=retry_policy_out(item.retry_policy),
        claim_timeout=item.claim_timeout.total_seconds(),
        priority=item.priority,
        not_before=item.not_before,
        idempotency_key=item.idempotency_key,
        correlation_id=item.correlation_id,
        labels=dict(item.labels),
        # Redacted: agents claiming the item and admins reading it have no use for the
        # credentials or tokens in it; only the broker posts to the full URL.
        callback_url=None if item.callback_url is None else redact_url(item.callback_url),
        status=item.status.value,
        attempt=item.attempt,
        executions=item.executions,
        local_retries=item.local_retries,
        claimed_by=item.claimed_by,
        claimed_at=item.claimed_at,
        lease_expires_at=item.lease_expires_at,
        last_error=failure_out(item.last_error) if item.last_error is not None else None,
    )


def record_out(record: ExecutionRecord) -> ExecutionRecordOut:
    """The wire form of an execution-log record."""
    return ExecutionRecordOut(
        item=item_out(record.item),
        finished_at=record.finished_at,
        finished_by=record.finished_by,
        result=record.result,
    )


def view_out(value: WorkItem | ExecutionRecord) -> WorkView:
    """An item or a record, in the one shape that holds both."""
    if isinstance(value, ExecutionRecord):
        return WorkView(
            item=item_out(value.item),
            finished_at=value.finished_at,
            finished_by=value.finished_by,
            result=value.result,
        )
    return WorkView(item=item_out(value), finished_at=None, finished_by=None, result=None)


def agent_out(agent: Agent) -> AgentOut:
    """The wire form of an agent; the token hash never leaves the broker."""
    return AgentOut(
        id=agent.id,
        name=agent.name,
        labels=dict(agent.labels),
        annotations=dict(agent.annotations),
        status=agent.status.value,
        registered_at=agent.registered_at,
        last_seen_at=agent.last_seen_at,
    )


def event_out(event: Event) -> EventOut:
    return EventOut(
        work_id=event.work_id,
        seq=event.seq,
        from_status=event.from_status.value if event.from_status is not None else None,
        to_status=event.to_status.value,
        actor=event.actor,
        at=event.at,
        attempt=event.attempt,
        executions=event.executions,
        claimed_by=event.claimed_by,
        correlation_id=event.correlation_id,
        detail=event.detail,
    )


def stats_out(stats: Stats) -> StatsOut:
    entries = [
        StatsEntry(work_type=work_type, status=status.value, count=count)
        for (work_type, status), count in sorted(
            stats.counts.items(), key=lambda kv: (kv[0][0], kv[0][1].value)
        )
    ]
    return StatsOut(counts=entries, total=stats.total())


def submit_body_out(request: SubmitRequest) -> SubmitBody:
    """The body a client sends for ``request``, its idempotency key included."""
    return SubmitBody(
        work_type=request.work_type,
        spec=request.spec,
        targeting=TargetingIn(
            agent_ids=sorted(request.targeting.agent_ids),
            selector=request.targeting.to_mapping(structured_selector=True)["selector"],
        ),
        retry_policy=retry_policy_out(request.retry_policy),
        claim_timeout=request.claim_timeout.total_seconds(),
        priority=request.priority,
        not_before=request.not_before,
        idempotency_key=request.idempotency_key,
        correlation_id=request.correlation_id,
        labels=dict(request.labels),
        callback_url=request.callback_url,
        requires_approval=request.requires_approval,
    )


# --- codecs: wire -> core ----------------------------------------------------------


def retry_policy_in(wire: RetryPolicyWire) -> RetryPolicy:
    """A retry policy; bounds are checked by ``RetryPolicy`` itself."""
    if not math.isfinite(wire.multiplier):
        raise InvalidInput("multiplier must be a finite number")
    return RetryPolicy(
        max_retries=wire.max_retries,
        base_delay=seconds("retry_policy.base_delay", wire.base_delay),
        multiplier=wire.multiplier,
        max_delay=seconds("retry_policy.max_delay", wire.max_delay),
        jitter=Jitter(wire.jitter),
    )


def targeting_in(wire: TargetingIn | TargetingOut) -> Targeting:
    """Targeting (``Targeting.from_mapping``); the selector may be the string or the
    structured form."""
    if isinstance(wire.selector, str):
        check_text("targeting.selector", wire.selector)
    return Targeting.from_mapping({"agent_ids": wire.agent_ids, "selector": wire.selector})


def failure_in(wire: FailureWire) -> Failure:
    check_text("failure.reason", wire.reason)
    check_text("failure.message", wire.message)
    return Failure(FailureClass(wire.failure_class), wire.reason, wire.message)


def submit_request_in(body: SubmitBody, idempotency_key: str | None = None) -> SubmitRequest:
    """A submit request from its body and the ``Idempotency-Key`` header."""
    if (
        idempotency_key is not None
        and body.idempotency_key is not None
        and idempotency_key != body.idempotency_key
    ):
        raise InvalidInput("the Idempotency-Key header and the body's idempotency_key differ")
    key = idempotency_key if idempotency_key is not None else body.idempotency_key
    for name, text in (
        ("work_type", body.work_type),
        ("spec", body.spec),
        ("idempotency_key", key),
        ("correlation_id", body.correlation_id),
        ("callback_url", body.callback_url),
    ):
        check_text(name, text)
    check_mapping("labels", body.labels)
    return SubmitRequest(
        work_type=body.work_type,
        spec=body.spec,
        targeting=targeting_in(body.targeting),
        retry_policy=retry_policy_in(body.retry_policy or RetryPolicyWire()),
        claim_timeout=seconds("claim_timeout", body.claim_timeout),
        priority=body.priority,
        not_before=body.not_before,
        idempotency_key=key,
        correlation_id=body.correlation_id,
        labels=body.labels,
        callback_url=body.callback_url,
        requires_approval=body.requires_approval,
    )


def item_in(wire: WorkItemOut) -> WorkItem:
    """A work item from its wire form (the client side)."""
    return WorkItem(
        id=wire.id,
        work_type=wire.work_type,
        spec=wire.spec,
        targeting=targeting_in(wire.targeting),
        created_at=wire.created_at,
        retry_policy=retry_policy_in(wire.retry_policy),
        claim_timeout=timedelta(seconds=wire.claim_timeout),
        priority=wire.priority,
        not_before=wire.not_before,
        idempotency_key=wire.idempotency_key,
        correlation_id=wire.correlation_id,
        labels=wire.labels,
        callback_url=wire.callback_url,
        status=WorkStatus(wire.status),
        attempt=wire.attempt,
        executions=wire.executions,
        local_retries=wire.local_retries,
        claimed_by=wire.claimed_by,
        claimed_at=wire.claimed_at,
        lease_expires_at=wire.lease_expires_at,
        last_error=(
            Failure(
                FailureClass(wire.last_error.failure_class),
                wire.last_error.reason,
                wire.last_error.message,
            )
            if wire.last_error is not None
            else None
        ),
    )


def record_in(wire: ExecutionRecordOut) -> ExecutionRecord:
    return ExecutionRecord(
        item=item_in(wire.item),
        finished_at=wire.finished_at,
        finished_by=wire.finished_by,
        result=wire.result,
    )


def view_in(wire: WorkView) -> WorkItem | ExecutionRecord:
    if wire.finished_at is None or wire.finished_by is None:
        return item_in(wire.item)
    return ExecutionRecord(
        item=item_in(wire.item),
        finished_at=wire.finished_at,
        finished_by=wire.finished_by,
        result=wire.result,
    )


def agent_in(wire: AgentOut) -> Agent:
    return Agent(
        id=wire.id,
        name=wire.name,
        registered_at=wire.registered_at,
        labels=wire.labels,
        annotations=wire.annotations,
        status=AgentStatus(wire.status),
        last_seen_at=wire.last_seen_at,
    )


def event_in(wire: EventOut) -> Event:
    return Event(
        work_id=wire.work_id,
        from_status=WorkStatus(wire.from_status) if wire.from_status is not None else None,
        to_status=WorkStatus(wire.to_status),
        actor=wire.actor,
        at=wire.at,
        attempt=wire.attempt,
        executions=wire.executions,
        claimed_by=wire.claimed_by,
        correlation_id=wire.correlation_id,
        detail=wire.detail,
        seq=wire.seq,
    )


def stats_in(wire: StatsOut) -> Stats:
    return Stats({(e.work_type, WorkStatus(e.status)): e.count for e in wire.counts})


# --- cursors -----------------------------------------------------------------------


class _CursorWire(msgspec.Struct):
    at: AwareDatetime
    id: UUID


def encode_cursor(cursor: Cursor) -> str:
    """An opaque, URL-safe pagination token."""
    raw = msgspec.json.encode(_CursorWire(cursor.at, cursor.id))
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(token: str) -> Cursor:
    """The cursor a token names; ``InvalidInput`` for anything ``encode_cursor`` did not make."""
    if len(token) > 512:
        raise InvalidInput("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        wire = msgspec.json.decode(raw, type=_CursorWire)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidInput("invalid cursor") from None
    return Cursor(wire.at, wire.id)


def next_cursor(rows: Iterable[tuple[datetime, UUID]], limit: int) -> str | None:
    """The cursor after the last row of a full page, or None on a short (last) page."""
    keys = list(rows)
    if len(keys) < limit or not keys:
        return None
    at, row_id = keys[-1]
    return encode_cursor(Cursor(at, row_id))
