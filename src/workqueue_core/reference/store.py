"""The whole state of a queue in plain dictionaries, driven by the transition functions.

``ReferenceStore`` is the reference semantics of a store: the in-memory store wraps it
for async callers, and the conformance suite uses it as the model that every other
store is compared with. It does no I/O and reads no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import attrs

from workqueue_core.domain import callbacks, transitions
from workqueue_core.domain.errors import (
    AgentExists,
    InvalidInput,
    UnknownAgent,
    UnknownWork,
    WorkqueueError,
)
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
    WorkStatus,
)
from workqueue_core.domain.tokens import hashes_equal
from workqueue_core.ports import RandomSource


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidInput(f"limit must be >= 1, got {limit}")


class ReferenceStore:
    """Queue, log, events and agents in dictionaries; every method is one atomic step."""

    def __init__(
        self, random_source: RandomSource, on_pending: Callable[[], None] | None = None
    ) -> None:
        self._random = random_source
        self._on_pending = on_pending or (lambda: None)
        self._queue: dict[UUID, WorkItem] = {}
        self._log: dict[UUID, ExecutionRecord] = {}
        self._events: dict[UUID, list[Event]] = {}
        self._keys: dict[str, UUID] = {}
        self._agents: dict[UUID, Agent] = {}
        self._callbacks: dict[UUID, datetime] = {}
        """Log records whose callback delivery is pending: when the next attempt is due."""
        self._seq = 0

    def add_pending_listener(self, listener: Callable[[], None]) -> None:
        """Also call ``listener`` (after the listeners already set) when work may be claimable."""
        previous = self._on_pending

        def both() -> None:
            previous()
            listener()

        self._on_pending = both

    # --- hooks (the conformance tests' broken stores override these) -------

    def _check_claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        return transitions.check_claim(
            self._queue.get(work_id),
            work_id,
            self._agents.get(agent_id),
            agent_id,
            now,
            finished=work_id in self._log,
        )

    def _claimable(self, item: WorkItem, agent: Agent, now: datetime) -> bool:
        return transitions.claimable_by(item, agent, now)

    def _check_token(self, token: ClaimToken, agent_id: UUID) -> WorkItem:
        return transitions.check_token(
            self._queue.get(token.work_id), self._log.get(token.work_id), token, agent_id
        )

    def _release(
        self, item: WorkItem, agent_id: UUID, now: datetime, reason: str
    ) -> tuple[WorkItem, Event]:
        return transitions.release(item, agent_id, now, reason)

    # --- internals ----------------------------------------------------------

    def _append(self, event: Event) -> None:
        self._seq += 1
        self._events.setdefault(event.work_id, []).append(attrs.evolve(event, seq=self._seq))

    def _apply(self, state: WorkItem | ExecutionRecord, event: Event | None) -> None:
        if isinstance(state, ExecutionRecord):
            self._queue.pop(state.id, None)
            self._log[state.id] = state
            due = callbacks.first_attempt(state)
            if due is None:
                self._callbacks.pop(state.id, None)
            else:
                self._callbacks[state.id] = due
        else:
            self._log.pop(state.id, None)
            self._callbacks.pop(state.id, None)
            self._queue[state.id] = state
        if event is not None:
            self._append(event)
        if isinstance(state, WorkItem) and state.status is WorkStatus.PENDING:
            self._on_pending()  # last: the step is whole before anyone is woken

    def _agent(self, agent_id: UUID) -> Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent

    def _eligible(
        self, agent: Agent, now: datetime, work_types: Sequence[str] | None
    ) -> list[WorkItem]:
        types = set(work_types) if work_types is not None else None
        found = [
            item
            for item in self._queue.values()
            if (types is None or item.work_type in types) and self._claimable(item, agent, now)
        ]
        return sorted(found, key=WorkItem.order_key)

    # --- WorkStore ------------------------------------------------------------

    def submit(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        if item.idempotency_key is not None and item.idempotency_key in self._keys:
            known = self._keys[item.idempotency_key]
            return SubmitResult(self._queue.get(known) or self._log[known], created=False)
        if item.id in self._queue or item.id in self._log:
            raise InvalidInput(f"work item {item.id} already exists")
        event = transitions.submitted(item, actor, now)
        if item.idempotency_key is not None:
            self._keys[item.idempotency_key] = item.id
        self._apply(item, event)
        return SubmitResult(item, created=True)

    def get(self, work_id: UUID) -> WorkItem | None:
        return self._queue.get(work_id)

    def get_record(self, work_id: UUID) -> ExecutionRecord | None:
        return self._log.get(work_id)

    def query(self, query: WorkQuery) -> list[WorkItem]:
        _check_limit(query.limit)
        rows = sorted(self._queue.values(), key=lambda i: (i.created_at, i.id))
        after = query.after
        return [
            i
            for i in rows
            if (query.work_type is None or i.work_type == query.work_type)
            and (query.status is None or i.status is query.status)
            and (query.claimed_by is None or i.claimed_by == query.claimed_by)
            and (after is None or (i.created_at, i.id) > (after.at, after.id))
        ][: query.limit]

    def query_log(self, query: LogQuery) -> list[ExecutionRecord]:
        _check_limit(query.limit)
        rows = sorted(self._log.values(), key=lambda r: (r.finished_at, r.id))
        after = query.after
        return [
            r
            for r in rows
            if (query.work_type is None or r.item.work_type == query.work_type)
            and (query.status is None or r.status is query.status)
            and (query.claimed_by is None or r.item.claimed_by == query.claimed_by)
            and (after is None or (r.finished_at, r.id) > (after.at, after.id))
        ][: query.limit]

    def pending_for(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[WorkItem]:
        _check_limit(limit)
        return self._eligible(self._agent(agent_id), now, work_types)[:limit]

    def claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        item = self._check_claim(work_id, agent_id, now)
        after, event = transitions.claim(item, self._agent(agent_id), now)
        self._apply(after, event)
        return after

    def claim_next(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
    ) -> list[WorkItem]:
        _check_limit(limit)
        agent = self._agent(agent_id)
        claimed = []
        for item in self._eligible(agent, now, work_types)[:limit]:
            after, event = transitions.claim(item, agent, now)
            self._apply(after, event)
            claimed.append(after)
        return claimed

    def heartbeat(
        self, token: ClaimToken, agent_id: UUID, now: datetime, local_retries: int = 0
    ) -> WorkItem:
        item = self._check_token(token, agent_id)
        after, event = transitions.heartbeat(item, agent_id, now, local_retries)
        self._apply(after, event)
        return after

    def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        repeated = transitions.repeated_report(
            self._log.get(token.work_id), token, agent_id, WorkStatus.SUCCEEDED
        )
        if repeated is not None:
            return repeated
        item = self._check_token(token, agent_id)
        record, event = transitions.complete(item, agent_id, now, result, local_retries)
        self._apply(record, event)
        return record

    def complete_many(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[ExecutionRecord | WorkqueueError]:
        outcomes: list[ExecutionRecord | WorkqueueError] = []
        for c in completions:
            try:
                outcomes.append(self.complete(c.token, c.agent_id, now, c.result, c.local_retries))
            except WorkqueueError as error:
                outcomes.append(error)
        return outcomes

    def fail(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        failure: Failure,
        local_retries: int = 0,
    ) -> WorkItem | ExecutionRecord:
        repeated = transitions.repeated_report(
            self._log.get(token.work_id), token, agent_id, WorkStatus.FAILED
        )
        if repeated is not None:
            return repeated
        item = self._check_token(token, agent_id)
        state, event = transitions.fail(
            item, failure, transitions.agent_actor(agent_id), now, self._random(), local_retries
        )
        self._apply(state, event)
        return state

    def release(
        self, token: ClaimToken, agent_id: UUID, now: datetime, reason: str = ""
    ) -> WorkItem:
        item = self._check_token(token, agent_id)
        after, event = self._release(item, agent_id, now, reason)
        self._apply(after, event)
        return after

    def cancel(self, work_id: UUID, actor: str, now: datetime, reason: str = "") -> ExecutionRecord:
        item = self._queue.get(work_id)
        if item is None:
            record = self._log.get(work_id)
            if record is None:
                raise UnknownWork(work_id)
            transitions.cancel(record.item, actor, now)  # raises InvalidTransition
            raise AssertionError("unreachable")  # pragma: no cover
        record, event = transitions.cancel(item, actor, now, reason)
        self._apply(record, event)
        return record

    def approve(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        item = self._queue.get(work_id)
        if item is None:
            record = self._log.get(work_id)
            if record is None:
                raise UnknownWork(work_id)
            item = record.item
        after, event = transitions.approve(item, actor, now)
        self._apply(after, event)
        return after

    def requeue(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        record = self._log.get(work_id)
        if record is None:
            item = self._queue.get(work_id)
            if item is None:
                raise UnknownWork(work_id)
            record = ExecutionRecord(item, finished_at=now, finished_by=actor)
        after, event = transitions.requeue(record, actor, now)
        self._apply(after, event)
        return after

    def sweep(self, now: datetime, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        _check_limit(limit)
        expired = sorted(
            (i for i in self._queue.values() if transitions.lease_expired(i, now)),
            key=lambda i: (i.lease_expires_at, i.id),
        )[:limit]
        results: list[WorkItem | ExecutionRecord] = []
        for item in expired:
            state, event = transitions.expire(item, now, self._random())
            self._apply(state, event)
            results.append(state)
        return results

    def prune(self, before: datetime, limit: int = 10_000) -> int:
        _check_limit(limit)
        old = sorted(
            (r for r in self._log.values() if r.finished_at < before),
            key=lambda r: (r.finished_at, r.id),
        )[:limit]
        for record in old:
            del self._log[record.id]
            self._callbacks.pop(record.id, None)
            self._events.pop(record.id, None)
            if record.item.idempotency_key is not None:
                self._keys.pop(record.item.idempotency_key, None)
        return len(old)

    def events(self, work_id: UUID) -> list[Event]:
        return list(self._events.get(work_id, ()))

    def callbacks_due(
        self, now: datetime, limit: int = 100, lease: timedelta | None = None
    ) -> list[ExecutionRecord]:
        _check_limit(limit)
        callbacks.check_lease(lease)
        due = [
            self._log[work_id]
            for at, _, work_id in sorted(
                (at, self._log[work_id].finished_at, work_id)
                for work_id, at in self._callbacks.items()
                if at <= now
            )[:limit]
        ]
        if lease is not None:
            for record in due:
                self._callbacks[record.id] = callbacks.leased_until(now, lease)
        return due

    def record_callback(
        self,
        work_id: UUID,
        now: datetime,
        *,
        delivered: bool,
        detail: str,
        retry_at: datetime | None,
        finished_at: datetime | None = None,
    ) -> Event:
        callbacks.check_retry_at(retry_at)
        record = callbacks.check_callback(
            work_id,
            self._queue.get(work_id),
            self._log.get(work_id),
            work_id in self._callbacks,
            finished_at,
        )
        following = callbacks.next_attempt(delivered, retry_at)
        if following is None:
            del self._callbacks[work_id]
        else:
            self._callbacks[work_id] = following
        self._append(callbacks.callback_event(record, now, detail))
        return self._events[work_id][-1]

    def stats(self) -> Stats:
        counts: dict[tuple[str, WorkStatus], int] = {}
        for item in [*self._queue.values(), *(r.item for r in self._log.values())]:
            key = (item.work_type, item.status)
            counts[key] = counts.get(key, 0) + 1
        return Stats(counts)

    # --- AgentRegistry ----------------------------------------------------------

    def register_agent(self, agent: Agent) -> Agent:
        if agent.id in self._agents:
            raise AgentExists(f"agent {agent.id} is already registered")
        if any(a.name == agent.name for a in self._agents.values()):
            raise AgentExists(f"an agent named {agent.name!r} is already registered")
        self._agents[agent.id] = agent
        self._on_pending()
        return agent

    def get_agent(self, agent_id: UUID) -> Agent | None:
        return self._agents.get(agent_id)

    def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        return sorted(
            (a for a in self._agents.values() if status is None or a.status is status),
            key=lambda a: (a.name, a.id),
        )

    def update_agent(
        self,
        agent_id: UUID,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        status: AgentStatus | None = None,
        token_hash: str | None = None,
    ) -> Agent:
        agent = self._agent(agent_id)
        updated = attrs.evolve(
            agent,
            labels=agent.labels if labels is None else labels,
            annotations=agent.annotations if annotations is None else annotations,
            status=agent.status if status is None else status,
            token_hash=agent.token_hash if token_hash is None else token_hash,
        )
        self._agents[agent_id] = updated
        self._on_pending()
        return updated

    def touch_agent(self, agent_id: UUID, now: datetime) -> Agent:
        updated = attrs.evolve(self._agent(agent_id), last_seen_at=now)
        self._agents[agent_id] = updated
        return updated

    def agent_by_token_hash(self, token_hash: str) -> Agent | None:
        for agent in self._agents.values():
            if agent.token_hash is not None and hashes_equal(agent.token_hash, token_hash):
                return agent
        return None
