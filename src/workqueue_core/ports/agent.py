"""The agent side of the broker: what an agent (a ``Worker``, the ``workqueue agent``
process) calls. ``BrokerService`` satisfies it in-process and ``BrokerClient`` over HTTP;
``tests/unit/test_ports.py`` has mypy prove both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol
from uuid import UUID

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import (
    Agent,
    ClaimToken,
    Completion,
    ExecutionRecord,
    Failure,
    IssuedAgent,
    WorkItem,
)

__all__ = ["WorkSource"]


class WorkSource(Protocol):
    """The broker as a worker sees it: the agent-side methods of ``BrokerService``."""

    async def register_agent(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> IssuedAgent:
        """Register an agent; its token is shown once."""
        ...

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        """Claim up to ``limit`` items, waiting up to ``wait`` seconds for some."""
        ...

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, local_retries: int = 0
    ) -> WorkItem:
        """Extend a claim's lease; LeaseLost / WorkCancelled say stop."""
        ...

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        """Record success (idempotent per token)."""
        ...

    async def complete_many(
        self, completions: Sequence[Completion]
    ) -> list[ExecutionRecord | WorkqueueError]:
        """Record several successes; each entry succeeds or fails on its own."""
        ...

    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]:
        """As ``complete_many``, answering ``None`` for each completed entry (no records)."""
        ...

    async def fail(
        self, token: ClaimToken, agent_id: UUID, failure: Failure, local_retries: int = 0
    ) -> WorkItem | ExecutionRecord:
        """Record a failed attempt; the broker decides retry or dead letter."""
        ...

    async def release(self, token: ClaimToken, agent_id: UUID, reason: str = "") -> WorkItem:
        """Hand a claim back unfinished (graceful shutdown): PENDING, budget not charged."""
        ...

    async def agent_heartbeat(self, agent_id: UUID) -> Agent:
        """Record that the agent is alive."""
        ...
