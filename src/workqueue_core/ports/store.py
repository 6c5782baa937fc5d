"""Store ports: the queue, the execution log, the event timeline and the agent registry.

``WorkStore`` is split by who uses each operation: agents (``ClaimStore``), producers and
admins (``AdminStore``), maintenance (``MaintenanceStore``) and readers (``QueryStore``).
Every operation takes ``now`` from the caller and is atomic: it happens whole, with its
events, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable
from uuid import UUID

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import (
    Agent,
    AgentStatus,
    ClaimToken,
    Completion,
    Event,
    ExecutionRecord,
    Failure,
    LogQuery,
    Stats,
    SubmitResult,
    WorkItem,
    WorkQuery,
)

__all__ = [
    "AdminStore",
    "AgentRegistry",
    "ClaimStore",
    "MaintenanceStore",
    "QueryStore",
    "Store",
    "WorkStore",
]


@runtime_checkable
class ClaimStore(Protocol):
    """The agent side: what claiming, heartbeating and reporting agents do."""

    async def pending_for(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[WorkItem]:
        """Items the agent could claim now, in claim order."""
        ...

    async def claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        """Claim one item by id, or raise why not (see ``transitions.check_claim``)."""
        ...

    async def claim_next(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
    ) -> list[WorkItem]:
        """Claim up to ``limit`` eligible items in claim order, atomically."""
        ...

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, now: datetime, local_retries: int = 0
    ) -> WorkItem:
        """Extend the lease of a held claim."""
        ...

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        """Record success; repeating it with the same token returns the same record."""
        ...

    async def complete_many(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[ExecutionRecord | WorkqueueError]:
        """Complete several claims at once; each entry succeeds or fails on its own."""
        ...

    async def complete_many_quiet(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[WorkqueueError | None]:
        """As ``complete_many``, but a completed entry is answered ``None`` instead of its
        log record: for callers that do not read the records (a worker), so the store
        need neither return nor decode them."""
        ...

    async def fail(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        failure: Failure,
        local_retries: int = 0,
    ) -> WorkItem | ExecutionRecord:
        """Record a failed attempt: back to PENDING after backoff, or FAILED in the log."""
        ...

    async def release(
        self, token: ClaimToken, agent_id: UUID, now: datetime, reason: str = ""
    ) -> WorkItem:
        """Hand a held claim back: PENDING at once, the run not charged to the budget.

        The attempt is kept, so the token stays stale (see ``transitions.release``).
        """
        ...


@runtime_checkable
class AdminStore(Protocol):
    """The producer and admin side: submitting and steering items."""

    async def submit(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        """Store a new PENDING or HELD item, or return the item its idempotency key names."""
        ...

    async def cancel(
        self, work_id: UUID, actor: str, now: datetime, reason: str = ""
    ) -> ExecutionRecord:
        """End a HELD, PENDING or CLAIMED item as CANCELED."""
        ...

    async def approve(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        """Release a HELD item to PENDING."""
        ...

    async def requeue(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        """Return a FAILED item from the log to the queue with a fresh budget."""
        ...


@runtime_checkable
class MaintenanceStore(Protocol):
    """Maintenance: expired leases, retention and completion callbacks."""

    async def sweep(self, now: datetime, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        """Fail expired leases as retryable; returns the resulting states."""
        ...

    async def prune(self, before: datetime, limit: int = 10_000) -> int:
        """Delete log records (and their events) finished before ``before``."""
        ...

    async def callbacks_due(
        self, now: datetime, limit: int = 100, lease: timedelta | None = None
    ) -> list[ExecutionRecord]:
        """Log records whose completion callback is due, by (next attempt, finished_at, id).

        Due: the record has a ``callback_url``, its delivery is neither done nor
        abandoned, and its next attempt is at or before ``now``. A record enters the
        log due at once (next attempt ``finished_at``); requeue takes it out, prune
        deletes it. With ``lease`` the returned records' next attempt moves to
        ``now + lease`` in the same step, so concurrent callers (two brokers on one
        database) do not take them too, and a caller that dies mid-delivery leaves
        them due again when the lease runs out.
        """
        ...

    async def record_callback(
        self,
        work_id: UUID,
        now: datetime,
        *,
        delivered: bool,
        detail: str,
        retry_at: datetime | None,
        finished_at: datetime | None = None,
    ) -> Event:
        """Append a delivery attempt to the item's timeline and update its delivery state.

        The event goes from the record's terminal status to the same status, by
        actor ``callback``, with the record's attempt and executions. Delivered:
        the delivery is done. Not delivered and ``retry_at`` None: abandoned.
        Otherwise the next attempt is due at ``retry_at``. UnknownWork when the
        item is nowhere; InvalidTransition when it is queued, its delivery is not
        pending (no URL, done, or abandoned), or ``finished_at`` is given and is not
        the record's (the record posted was replaced by a requeue and a new end).
        """
        ...


@runtime_checkable
class QueryStore(Protocol):
    """Reads: items, log records, timelines and counts."""

    async def get(self, work_id: UUID) -> WorkItem | None:
        """The queued item, or None when it is not in the queue."""
        ...

    async def get_record(self, work_id: UUID) -> ExecutionRecord | None:
        """The log record, or None when the item is not in the log."""
        ...

    async def query(self, query: WorkQuery) -> list[WorkItem]:
        """Queued items matching the filters, by (created_at, id)."""
        ...

    async def query_log(self, query: LogQuery) -> list[ExecutionRecord]:
        """Log records matching the filters, by (finished_at, id)."""
        ...

    async def events(self, work_id: UUID) -> list[Event]:
        """The item's timeline, oldest first."""
        ...

    async def stats(self) -> Stats:
        """Counts by work type and status."""
        ...


@runtime_checkable
class WorkStore(ClaimStore, AdminStore, MaintenanceStore, QueryStore, Protocol):
    """The queue, the execution log and the event timeline of work items."""


@runtime_checkable
class AgentRegistry(Protocol):
    """The agents the broker knows, their labels, status and token hashes."""

    async def register_agent(self, agent: Agent) -> Agent:
        """Store a new agent; AgentExists when the id or name is taken."""
        ...

    async def get_agent(self, agent_id: UUID) -> Agent | None:
        """The agent, or None."""
        ...

    async def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        """Agents by name."""
        ...

    async def update_agent(
        self,
        agent_id: UUID,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        status: AgentStatus | None = None,
        token_hash: str | None = None,
    ) -> Agent:
        """Replace the given fields; eligibility follows the new labels at once."""
        ...

    async def touch_agent(self, agent_id: UUID, now: datetime) -> Agent:
        """Record that the agent was seen."""
        ...

    async def agent_by_token_hash(self, token_hash: str) -> Agent | None:
        """The agent whose token hashes to ``token_hash``."""
        ...


@runtime_checkable
class Store(WorkStore, AgentRegistry, Protocol):
    """A store that holds both work and agents (eligibility needs both, atomically)."""
