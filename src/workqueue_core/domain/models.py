"""Domain models: small frozen value objects, no behaviour beyond their own invariants."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import attrs

from workqueue_core.domain.errors import InvalidInput, LabelError, SelectorError, WorkqueueError
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.domain.selectors import LabelSelector, validate_labels

__all__ = [
    "Agent",
    "AgentStatus",
    "ClaimToken",
    "Completion",
    "Cursor",
    "Event",
    "ExecutionRecord",
    "Failure",
    "FailureClass",
    "IssuedAgent",
    "LogQuery",
    "RetryPolicy",
    "Stats",
    "SubmitRequest",
    "SubmitResult",
    "Targeting",
    "WorkItem",
    "WorkQuery",
    "WorkStatus",
    "quiet_outcomes",
]


class WorkStatus(enum.Enum):
    """Where a work item is in its life; the first three live in the queue, the rest in the log."""

    HELD = "HELD"
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def is_terminal(self) -> bool:
        """True for the states that live in the execution log."""
        return self in TERMINAL_STATES


QUEUE_STATES = frozenset({WorkStatus.HELD, WorkStatus.PENDING, WorkStatus.CLAIMED})
TERMINAL_STATES = frozenset({WorkStatus.SUCCEEDED, WorkStatus.FAILED, WorkStatus.CANCELED})


class AgentStatus(enum.Enum):
    """ACTIVE agents claim; DRAINING ones finish their claims and take nothing new."""

    ACTIVE = "ACTIVE"
    DRAINING = "DRAINING"
    INACTIVE = "INACTIVE"


class FailureClass(enum.Enum):
    """PERMANENT failures are never retried; RETRYABLE ones are, within the budget."""

    PERMANENT = "PERMANENT"
    RETRYABLE = "RETRYABLE"


def _aware(_: object, attribute: attrs.Attribute[Any], value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidInput(f"{attribute.name} must be a timezone-aware datetime")


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise InvalidInput(f"{attribute.name} must be >= 0, got {value}")


def _positive_duration(_: object, attribute: attrs.Attribute[Any], value: timedelta) -> None:
    if value <= timedelta(0):
        raise InvalidInput(f"{attribute.name} must be positive, got {value}")


def _labels(_: object, attribute: attrs.Attribute[Any], value: Mapping[str, str]) -> None:
    try:
        validate_labels(value)
    except SelectorError as error:
        raise LabelError(error.detail) from None


def _uuid_set(value: Iterable[UUID]) -> frozenset[UUID]:
    return frozenset(value)


def _str_dict(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@attrs.frozen
class Failure:
    """Why an attempt failed: its class decides whether it is retried."""

    failure_class: FailureClass = attrs.field(validator=attrs.validators.instance_of(FailureClass))
    reason: str = attrs.field(validator=attrs.validators.instance_of(str))
    message: str = attrs.field(default="", validator=attrs.validators.instance_of(str))

    @classmethod
    def retryable(cls, reason: str, message: str = "") -> Failure:
        """A transient failure: retried while the budget lasts."""
        return cls(FailureClass.RETRYABLE, reason, message)

    @classmethod
    def permanent(cls, reason: str, message: str = "") -> Failure:
        """A failure that no retry can fix."""
        return cls(FailureClass.PERMANENT, reason, message)


LEASE_EXPIRED = "LeaseExpired"
BUDGET_SPENT = "BudgetSpent"


@attrs.frozen
class Targeting:
    """Which agents may run an item: listed ids, a label selector, or both (either suffices).

    ``selector=LabelSelector(())`` (``{}``) targets every agent and must be given
    explicitly: targeting with neither ids nor selector is rejected.
    """

    agent_ids: frozenset[UUID] = attrs.field(
        default=frozenset(),
        converter=_uuid_set,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(UUID)),
    )
    selector: LabelSelector | None = None

    def __attrs_post_init__(self) -> None:
        if not self.agent_ids and self.selector is None:
            raise InvalidInput(
                "targeting needs agent_ids or a selector; use the empty selector {} for every agent"
            )

    @classmethod
    def everyone(cls) -> Targeting:
        """The explicit empty selector: every ACTIVE agent is eligible."""
        return cls(selector=LabelSelector(()))

    @classmethod
    def agents(cls, *agent_ids: UUID) -> Targeting:
        """Only the listed agents."""
        return cls(agent_ids=frozenset(agent_ids))

    @classmethod
    def labels(cls, selector: str | Mapping[str, object] | LabelSelector) -> Targeting:
        """Agents whose labels match the selector (string or structured form)."""
        return cls(selector=LabelSelector.coerce(selector))

    def to_mapping(self, *, structured_selector: bool = False) -> dict[str, Any]:
        """The targeting as JSON: ``{"agent_ids": [sorted ids], "selector": ...}``.

        The selector is None, or its exact requirement list
        (``LabelSelector.to_requirement_list``: what the stores keep), or with
        ``structured_selector`` its Kubernetes form ``{"matchLabels", "matchExpressions"}``
        (what the HTTP API shows).  ``from_mapping`` reads all of them.
        """
        selector: object = None
        if self.selector is not None:
            selector = (
                self.selector.to_mapping()
                if structured_selector
                else self.selector.to_requirement_list()
            )
        return {"agent_ids": sorted(str(a) for a in self.agent_ids), "selector": selector}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Targeting:
        """The targeting of a ``to_mapping`` result; the selector may also be selector text.

        Agent ids may be strings or UUIDs; a missing key counts as None / no ids.
        """
        raw_ids = data.get("agent_ids")
        if raw_ids is None:
            raw_ids = ()
        if not isinstance(raw_ids, list | tuple | set | frozenset):
            raise InvalidInput("agent_ids must be a list of agent ids")
        try:
            agent_ids = frozenset(a if isinstance(a, UUID) else UUID(str(a)) for a in raw_ids)
        except ValueError:
            raise InvalidInput("agent_ids must hold agent ids (UUIDs)") from None
        raw = data.get("selector")
        selector: LabelSelector | None = None
        if isinstance(raw, list | tuple):
            selector = LabelSelector.from_requirement_list(raw)
        elif raw is not None:
            selector = LabelSelector.coerce(raw)
        return cls(agent_ids=agent_ids, selector=selector)

    def matches(self, agent_id: UUID, labels: Mapping[str, str]) -> bool:
        """True when the agent is listed or its labels satisfy the selector."""
        if agent_id in self.agent_ids:
            return True
        return self.selector is not None and self.selector.matches(labels)


@attrs.frozen
class Agent:
    """A registered executor of work, as the broker knows it."""

    id: UUID
    name: str
    registered_at: datetime = attrs.field(validator=_aware)
    labels: dict[str, str] = attrs.field(factory=dict, converter=_str_dict, validator=_labels)
    annotations: dict[str, str] = attrs.field(factory=dict, converter=_str_dict)
    status: AgentStatus = AgentStatus.ACTIVE
    last_seen_at: datetime | None = attrs.field(default=None, validator=_aware)
    token_hash: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.name or len(self.name) > 253:
            raise InvalidInput("agent name must be 1-253 characters")

    def eligible_for(self, targeting: Targeting) -> bool:
        """An agent may claim an item when it is ACTIVE and the targeting matches it now."""
        return self.status is AgentStatus.ACTIVE and targeting.matches(self.id, self.labels)


@attrs.frozen
class ClaimToken:
    """Proof of a claim: the item and the attempt number the claim created."""

    work_id: UUID
    attempt: int


@attrs.frozen
class WorkItem:
    """A unit of work and its queue state.

    ``attempt`` counts claims and names the claim token; ``executions`` counts runs
    charged to the retry budget (claims plus agent-reported local retries), and
    never exceeds ``retry_policy.max_retries + 1``.
    """

    id: UUID
    work_type: str
    spec: str
    targeting: Targeting = attrs.field(validator=attrs.validators.instance_of(Targeting))
    created_at: datetime = attrs.field(validator=_aware)
    retry_policy: RetryPolicy = attrs.field(
        factory=RetryPolicy, validator=attrs.validators.instance_of(RetryPolicy)
    )
    claim_timeout: timedelta = attrs.field(
        default=timedelta(seconds=3600),
        validator=[attrs.validators.instance_of(timedelta), _positive_duration],
    )
    priority: int = 0
    not_before: datetime | None = attrs.field(default=None, validator=_aware)
    idempotency_key: str | None = None
    correlation_id: str | None = None
    labels: dict[str, str] = attrs.field(factory=dict, converter=_str_dict)
    callback_url: str | None = None
    status: WorkStatus = WorkStatus.PENDING
    attempt: int = attrs.field(default=0, validator=_non_negative)
    executions: int = attrs.field(default=0, validator=_non_negative)
    local_retries: int = attrs.field(default=0, validator=_non_negative)
    claimed_by: UUID | None = None
    claimed_at: datetime | None = attrs.field(default=None, validator=_aware)
    lease_expires_at: datetime | None = attrs.field(default=None, validator=_aware)
    last_error: Failure | None = None

    @property
    def max_executions(self) -> int:
        """How many runs the budget allows in total."""
        return self.retry_policy.max_retries + 1

    @property
    def remaining_executions(self) -> int:
        """Runs still allowed by the budget."""
        return max(0, self.max_executions - self.executions)

    @property
    def token(self) -> ClaimToken:
        """The token of the current (or last) claim."""
        return ClaimToken(self.id, self.attempt)

    def order_key(self) -> tuple[int, datetime, UUID]:
        """Claim order: higher priority first, then older first, then id."""
        return (-self.priority, self.created_at, self.id)


@attrs.frozen
class ExecutionRecord:
    """The permanent log record of a terminal item: its final state and outcome."""

    item: WorkItem
    finished_at: datetime = attrs.field(validator=_aware)
    finished_by: str
    result: str | None = None

    @property
    def id(self) -> UUID:
        """The work item's id."""
        return self.item.id

    @property
    def status(self) -> WorkStatus:
        """SUCCEEDED, FAILED or CANCELED."""
        return self.item.status

    @property
    def success(self) -> bool:
        """The seed's ``success`` column."""
        return self.item.status is WorkStatus.SUCCEEDED


@attrs.frozen
class Event:
    """One transition of one item, appended in the same step as the transition."""

    work_id: UUID
    from_status: WorkStatus | None
    to_status: WorkStatus
    actor: str
    at: datetime = attrs.field(validator=_aware)
    attempt: int
    executions: int = 0
    claimed_by: UUID | None = None
    correlation_id: str | None = None
    detail: str = ""
    seq: int = 0
    """The event's place in its store (from 1, increasing along a timeline); 0 until stored."""


@attrs.frozen
class SubmitResult:
    """The stored item and whether this submit created it (False: idempotency key reuse)."""

    item: WorkItem | ExecutionRecord
    created: bool


@attrs.frozen
class Completion:
    """One entry of a batch completion."""

    token: ClaimToken
    agent_id: UUID
    result: str | None = None
    local_retries: int = 0


def quiet_outcomes(
    outcomes: Iterable[ExecutionRecord | WorkqueueError],
) -> list[WorkqueueError | None]:
    """A batch completion's answers with each log record replaced by ``None``."""
    return [o if isinstance(o, WorkqueueError) else None for o in outcomes]


@attrs.frozen
class Cursor:
    """Keyset pagination position: the sort key of the last row seen."""

    at: datetime
    id: UUID


@attrs.frozen
class WorkQuery:
    """Filters for listing queue items, ordered by (created_at, id)."""

    work_type: str | None = None
    status: WorkStatus | None = None
    claimed_by: UUID | None = None
    limit: int = 100
    after: Cursor | None = None


@attrs.frozen
class LogQuery:
    """Filters for listing execution-log records, ordered by (finished_at, id)."""

    work_type: str | None = None
    status: WorkStatus | None = None
    claimed_by: UUID | None = None
    limit: int = 100
    after: Cursor | None = None


@attrs.frozen
class Stats:
    """Item counts by work type and status, over the queue and the log."""

    counts: dict[tuple[str, WorkStatus], int] = attrs.field(factory=dict)

    def total(self, status: WorkStatus | None = None) -> int:
        """Items in ``status``, or all items."""
        return sum(n for (_, s), n in self.counts.items() if status is None or s is status)


@attrs.frozen
class SubmitRequest:
    """What a submitter gives; the service adds id, time and queue state."""

    work_type: str
    spec: str
    targeting: Targeting
    retry_policy: RetryPolicy = attrs.field(factory=RetryPolicy)
    claim_timeout: timedelta = timedelta(seconds=3600)
    priority: int = 0
    not_before: datetime | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)
    callback_url: str | None = None
    requires_approval: bool = False


@attrs.frozen
class IssuedAgent:
    """A newly registered agent and its token, shown this once and stored only hashed."""

    agent: Agent
    token: str = attrs.field(repr=False)
