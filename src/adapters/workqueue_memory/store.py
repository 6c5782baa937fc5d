"""The in-memory store: the simplest correct implementation of ``Store``.

It wraps ``workqueue_core.reference.store.ReferenceStore`` (the reference semantics the
conformance suite compares every store with) for async callers, and wakes waiting
claimers through an in-process notifier. Each operation runs without yielding to
the event loop, so concurrent anyio tasks see it whole.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
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
    quiet_outcomes,
)
from workqueue_core.ports import RandomSource
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.service.notifier import InProcessNotifier


class MemoryStore:
    """Queue, log, events and agents in process memory; nothing survives the process."""

    def __init__(
        self,
        random_source: RandomSource | None = None,
        *,
        state: ReferenceStore | None = None,
        notifier: InProcessNotifier | None = None,
    ) -> None:
        self.notifier = notifier or InProcessNotifier()
        if state is None:
            state = ReferenceStore(
                random_source or random.Random().random, on_pending=self.notifier.notify
            )
        else:
            state.add_pending_listener(self.notifier.notify)
        self.state = state

    async def submit(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        return self.state.submit(item, actor, now)

    async def get(self, work_id: UUID) -> WorkItem | None:
        return self.state.get(work_id)

    async def get_record(self, work_id: UUID) -> ExecutionRecord | None:
        return self.state.get_record(work_id)

    async def query(self, query: WorkQuery) -> list[WorkItem]:
        return self.state.query(query)

    async def query_log(self, query: LogQuery) -> list[ExecutionRecord]:
        return self.state.query_log(query)

    async def pending_for(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[WorkItem]:
        return self.state.pending_for(agent_id, now, work_types, limit)

    async def claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        return self.state.claim(work_id, agent_id, now)

    async def claim_next(
        self, agent_id: UUID, now: datetime, work_types: Sequence[str] | None = None, limit: int = 1
    ) -> list[WorkItem]:
        return self.state.claim_next(agent_id, now, work_types, limit)

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, now: datetime, local_retries: int = 0
    ) -> WorkItem:
        return self.state.heartbeat(token, agent_id, now, local_retries)

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        return self.state.complete(token, agent_id, now, result, local_retries)

    async def complete_many(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[ExecutionRecord | WorkqueueError]:
        return self.state.complete_many(completions, now)

    async def complete_many_quiet(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[WorkqueueError | None]:
        return quiet_outcomes(self.state.complete_many(completions, now))

    async def fail(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        failure: Failure,
        local_retries: int = 0,
    ) -> WorkItem | ExecutionRecord:
        return self.state.fail(token, agent_id, now, failure, local_retries)

    async def release(
        self, token: ClaimToken, agent_id: UUID, now: datetime, reason: str = ""
    ) -> WorkItem:
        return self.state.release(token, agent_id, now, reason)

    async def cancel(
        self, work_id: UUID, actor: str, now: datetime, reason: str = ""
    ) -> ExecutionRecord:
        return self.state.cancel(work_id, actor, now, reason)

    async def approve(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        return self.state.approve(work_id, actor, now)

    async def requeue(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        return self.state.requeue(work_id, actor, now)

    async def sweep(self, now: datetime, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        return self.state.sweep(now, limit)

    async def prune(self, before: datetime, limit: int = 10_000) -> int:
        return self.state.prune(before, limit)

    async def events(self, work_id: UUID) -> list[Event]:
        return self.state.events(work_id)

    async def callbacks_due(
        self, now: datetime, limit: int = 100, lease: timedelta | None = None
    ) -> list[ExecutionRecord]:
        return self.state.callbacks_due(now, limit, lease)

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
        return self.state.record_callback(
            work_id,
            now,
            delivered=delivered,
            detail=detail,
            retry_at=retry_at,
            finished_at=finished_at,
        )

    async def stats(self) -> Stats:
        return self.state.stats()

    async def register_agent(self, agent: Agent) -> Agent:
        return self.state.register_agent(agent)

    async def get_agent(self, agent_id: UUID) -> Agent | None:
        return self.state.get_agent(agent_id)

    async def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        return self.state.list_agents(status)

    async def update_agent(
        self,
        agent_id: UUID,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        status: AgentStatus | None = None,
        token_hash: str | None = None,
    ) -> Agent:
        return self.state.update_agent(
            agent_id, labels=labels, annotations=annotations, status=status, token_hash=token_hash
        )

    async def touch_agent(self, agent_id: UUID, now: datetime) -> Agent:
        return self.state.touch_agent(agent_id, now)

    async def agent_by_token_hash(self, token_hash: str) -> Agent | None:
        return self.state.agent_by_token_hash(token_hash)
