"""Typed errors of the domain.

Every error has a stable ``code``: adapters map it to an HTTP problem ``type``,
a CLI exit message or a client-side exception without parsing messages.
"""

from __future__ import annotations

from uuid import UUID


class WorkqueueError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "workqueue-error"


# --- lookups -------------------------------------------------------------


class NotFound(WorkqueueError):
    """Base of the errors for an id nobody knows."""

    code = "not-found"


class UnknownWork(NotFound):
    """No work item with this id is in the queue or the execution log."""

    code = "unknown-work"

    def __init__(self, work_id: UUID) -> None:
        super().__init__(f"unknown work item {work_id}")
        self.work_id = work_id


class UnknownAgent(NotFound):
    """No agent with this id is registered."""

    code = "unknown-agent"

    def __init__(self, agent_id: UUID) -> None:
        super().__init__(f"unknown agent {agent_id}")
        self.agent_id = agent_id


# --- state conflicts -----------------------------------------------------


class StateConflict(WorkqueueError):
    """The operation is not allowed in the item's or agent's current state."""

    code = "state-conflict"


class InvalidTransition(StateConflict):
    """The transition table has no edge for this event from this state."""

    code = "invalid-transition"

    def __init__(self, work_id: UUID, status: str, event: str) -> None:
        super().__init__(f"work item {work_id} is {status}: cannot {event}")
        self.work_id = work_id
        self.status = status
        self.event = event


class NotClaimable(StateConflict):
    """The item is not PENDING, or its ``not_before`` is still in the future."""

    code = "not-claimable"

    def __init__(self, work_id: UUID, reason: str) -> None:
        super().__init__(f"work item {work_id} is not claimable: {reason}")
        self.work_id = work_id
        self.reason = reason


class NotEligible(StateConflict):
    """The agent does not satisfy the item's targeting, or is not ACTIVE."""

    code = "not-eligible"

    def __init__(self, work_id: UUID, agent_id: UUID, reason: str) -> None:
        super().__init__(f"agent {agent_id} is not eligible for work item {work_id}: {reason}")
        self.work_id = work_id
        self.agent_id = agent_id
        self.reason = reason


class LeaseLost(StateConflict):
    """The claim token is stale: the lease was swept, or the item re-claimed or ended."""

    code = "lease-lost"

    def __init__(
        self, work_id: UUID, attempt: int, reason: str = "the claim is no longer held"
    ) -> None:
        super().__init__(f"lease lost on work item {work_id} attempt {attempt}: {reason}")
        self.work_id = work_id
        self.attempt = attempt
        self.reason = reason


class WorkCancelled(LeaseLost):
    """The claim's item was cancelled: the agent must stop working on it."""

    code = "work-cancelled"

    def __init__(self, work_id: UUID, attempt: int) -> None:
        super().__init__(work_id, attempt, "the work item was cancelled")


class NotClaimOwner(StateConflict):
    """A valid claim token presented by an agent that does not hold the claim."""

    code = "not-claim-owner"

    def __init__(self, work_id: UUID, agent_id: UUID) -> None:
        super().__init__(f"agent {agent_id} does not hold the claim on work item {work_id}")
        self.work_id = work_id
        self.agent_id = agent_id


class BudgetSpent(StateConflict):
    """Reported executions would exceed the item's retry budget."""

    code = "budget-spent"

    def __init__(self, work_id: UUID, limit: int) -> None:
        super().__init__(f"work item {work_id} may run at most {limit} times")
        self.work_id = work_id
        self.limit = limit


class AgentExists(StateConflict):
    """An agent with this id or name is already registered."""

    code = "agent-exists"


# --- invalid input -------------------------------------------------------


class InvalidInput(WorkqueueError, ValueError):
    """Base of the errors for input that can never be valid."""

    code = "invalid-input"


class SelectorError(InvalidInput):
    """A label selector could not be parsed or is not valid."""

    code = "invalid-selector"

    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"invalid label selector{where}: {message}")
        self.position = position
        self.detail = message


class LabelError(InvalidInput):
    """Labels (of an item or an agent) are not valid Kubernetes-style labels.

    Distinct from ``SelectorError``: the labels are data, not a selector.
    """

    code = "invalid-labels"

    def __init__(self, message: str) -> None:
        super().__init__(f"invalid labels: {message}")
        self.detail = message


class SpecError(InvalidInput):
    """A spec (YAML text or Work resource) is malformed, too large or of the wrong shape."""

    code = "invalid-spec"

    def __init__(self, message: str, path: str = "") -> None:
        where = f" at {path}" if path else ""
        super().__init__(f"invalid spec{where}: {message}")
        self.path = path
        self.detail = message


class SpecTooLarge(SpecError):
    """The spec is over the codec's size limit."""

    code = "spec-too-large"


# --- infrastructure ------------------------------------------------------


class StoreUnavailable(WorkqueueError):
    """The store could not be reached or lost its connection mid-operation.

    The operation may or may not have been applied (a commit whose answer was
    lost); every store operation is atomic, so it was applied whole or not at all,
    and repeating a complete with the same token is safe.
    """

    code = "store-unavailable"


class SchemaMismatch(WorkqueueError):
    """The store's schema is newer than this code knows, or not migrated yet."""

    code = "schema-mismatch"
