"""The broker service: the use cases over a ``Store``, a clock and id/token sources.

Entrypoints (HTTP, CLI, in-process workers) call this layer; it validates input,
stamps time and ids, and leaves atomicity to the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import anyio

from workqueue_core.domain.errors import (
    InvalidInput,
    SchemaMismatch,
    StoreUnavailable,
    UnknownAgent,
    UnknownWork,
    WorkqueueError,
)
from workqueue_core.domain.limits import MAX_MESSAGE_BYTES, MAX_RESULT_BYTES
from workqueue_core.domain.models import (
    Agent,
    AgentStatus,
    ClaimToken,
    Completion,
    Event,
    ExecutionRecord,
    Failure,
    IssuedAgent,
    LogQuery,
    Stats,
    SubmitRequest,
    SubmitResult,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.tokens import TOKEN_PREFIX, hash_token
from workqueue_core.ports import BatchSubmitStore, Clock, IdSource, Notifier, Store, TokenSource
from workqueue_core.service import validation
from workqueue_core.service.validation import validate_submit
from workqueue_core.work.specs import SpecValidator

__all__ = ["BrokerService", "SpecValidator"]


class BrokerService:
    """Every broker use case, over one store.

    ``spec_validator`` checks each submitted spec: the composition roots pass
    ``specs.spec_validator(work_types)`` so Kubernetes work types need a valid ``Work``
    resource; None (the default) keeps every spec opaque text.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: IdSource,
        tokens: TokenSource,
        *,
        notifier: Notifier | None = None,
        spec_validator: SpecValidator | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self._ids = ids
        self._tokens = tokens
        self._notifier = notifier
        self.poll_interval = poll_interval
        self._stopping = False
        self._validate_spec = spec_validator

    # --- work ------------------------------------------------------------------

    async def submit(self, request: SubmitRequest, actor: str = "admin") -> SubmitResult:
        """Queue new work (HELD when approval is required); idempotent on its key."""
        now = self.clock.now()
        return await self.store.submit(self._new_item(request, now), actor, now)

    async def submit_many(
        self, requests: Sequence[SubmitRequest], actor: str = "admin"
    ) -> list[SubmitResult | WorkqueueError]:
        """``submit`` of each request on its own, in order: its result or its refusal.

        A refused request does not stop the others. On a store that offers
        ``BatchSubmitStore`` the accepted ones are stored in one transaction (one
        commit); otherwise one by one. A store failure (``StoreUnavailable``,
        ``SchemaMismatch``) is raised when nothing was stored, and otherwise answers
        its entry and every later one.
        """
        now = self.clock.now()
        outcomes: list[SubmitResult | WorkqueueError | WorkItem] = []
        for request in requests:
            try:
                outcomes.append(self._new_item(request, now))
            except WorkqueueError as error:
                outcomes.append(error)
        items = [o for o in outcomes if isinstance(o, WorkItem)]
        stored: list[SubmitResult] | None = None
        if items and isinstance(self.store, BatchSubmitStore):
            try:
                stored = await self.store.submit_many(items, actor, now)
            except InvalidInput:
                stored = None  # an id taken (nothing was stored): one by one says which
        answers: list[SubmitResult | WorkqueueError] = []
        failure: WorkqueueError | None = None
        results = iter(stored) if stored is not None else None
        for outcome in outcomes:
            if not isinstance(outcome, WorkItem):
                answers.append(outcome)
            elif results is not None:
                answers.append(next(results))
            elif failure is not None:
                answers.append(failure)
            else:
                try:
                    answers.append(await self.store.submit(outcome, actor, now))
                except (StoreUnavailable, SchemaMismatch) as error:
                    if not any(isinstance(a, SubmitResult) for a in answers):
                        raise
                    failure = error
                    answers.append(error)
                except WorkqueueError as error:
                    answers.append(error)
        return answers

    def _new_item(self, request: SubmitRequest, now: datetime) -> WorkItem:
        """The new item a request asks for, validated (``InvalidInput`` otherwise)."""
        validate_submit(request)
        if self._validate_spec is not None:
            self._validate_spec(request.work_type, request.spec)
        work_id = self._ids()
        return WorkItem(
            id=work_id,
            work_type=request.work_type,
            spec=request.spec,
            targeting=request.targeting,
            created_at=now,
            retry_policy=request.retry_policy,
            claim_timeout=request.claim_timeout,
            priority=request.priority,
            not_before=request.not_before,
            idempotency_key=request.idempotency_key,
            correlation_id=request.correlation_id or str(work_id),
            labels=dict(request.labels),
            callback_url=request.callback_url,
            status=WorkStatus.HELD if request.requires_approval else WorkStatus.PENDING,
        )

    async def get(self, work_id: UUID) -> WorkItem | ExecutionRecord:
        """The item from the queue, or its record from the log.

        Two reads: an item requeued from the log between them is looked up in the
        queue once more before it is called unknown.
        """
        item = await self.store.get(work_id)
        if item is not None:
            return item
        record = await self.store.get_record(work_id)
        if record is not None:
            return record
        item = await self.store.get(work_id)
        if item is not None:
            return item
        raise UnknownWork(work_id)

    async def list_work(self, query: WorkQuery) -> list[WorkItem]:
        """Queued items matching the query."""
        validation.check_batch(query.limit)
        return await self.store.query(query)

    async def list_log(self, query: LogQuery) -> list[ExecutionRecord]:
        """Execution-log records matching the query."""
        validation.check_batch(query.limit)
        return await self.store.query_log(query)

    async def pending(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 100,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        """What the agent could claim now, waiting up to ``wait`` s for something to appear.

        ``work_types=[]`` matches nothing; a bare string is refused.
        """
        validation.check_batch(limit)
        types = validation.check_work_types(work_types)
        return await self._wait_for(
            lambda: self.store.pending_for(agent_id, self.clock.now(), types, limit), wait
        )

    async def claim(self, work_id: UUID, agent_id: UUID) -> WorkItem:
        """Claim one item by id."""
        return await self.store.claim(work_id, agent_id, self.clock.now())

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        """Claim up to ``limit`` items; with ``wait`` > 0, wait up to that long for work.

        Waiting wakes on the notifier and, in any case, re-checks every
        ``poll_interval`` seconds, so items whose ``not_before`` passes (or work
        submitted through another broker without a shared notifier) are found too.
        ``work_types=[]`` matches nothing; a bare string is refused.
        """
        validation.check_batch(limit)
        types = validation.check_work_types(work_types)
        return await self._wait_for(
            lambda: self.store.claim_next(agent_id, self.clock.now(), types, limit), wait
        )

    async def _wait_for(
        self, look: Callable[[], Awaitable[list[WorkItem]]], wait: float
    ) -> list[WorkItem]:
        """Call ``look`` until it finds something or ``wait`` s pass; woken by the notifier."""
        validation.check_wait(wait)
        deadline = anyio.current_time() + wait
        while True:
            mark = self._notifier.mark() if self._notifier is not None else 0
            found = await look()
            remaining = deadline - anyio.current_time()
            if found or remaining <= 0 or self._stopping:
                return found
            pause = min(remaining, self.poll_interval)
            if self._notifier is None:
                await anyio.sleep(pause)
            else:
                await self._notifier.wait(pause, since=mark)

    def stop_waiting(self) -> None:
        """Answer every long-poll now with what it finds, and every later one at once.

        For a broker that is shutting down: its agents get their (usually empty)
        answers instead of connections cut when the shutdown timeout runs out.
        """
        self._stopping = True
        if self._notifier is not None:
            self._notifier.notify()

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, local_retries: int = 0
    ) -> WorkItem:
        """Extend a claim's lease; LeaseLost or WorkCancelled tell the agent to stop."""
        validation.check_local_retries(local_retries)
        return await self.store.heartbeat(token, agent_id, self.clock.now(), local_retries)

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        """Record success (idempotent per token)."""
        validation.bounded_bytes("result", result, MAX_RESULT_BYTES)
        validation.check_local_retries(local_retries)
        return await self.store.complete(token, agent_id, self.clock.now(), result, local_retries)

    async def complete_many(
        self, completions: Sequence[Completion]
    ) -> list[ExecutionRecord | WorkqueueError]:
        """Record several successes at once."""
        validation.check_completions(completions)
        return await self.store.complete_many(completions, self.clock.now())

    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]:
        """As ``complete_many``, answering ``None`` for each completed entry (no records)."""
        validation.check_completions(completions)
        return await self.store.complete_many_quiet(completions, self.clock.now())

    async def fail(
        self, token: ClaimToken, agent_id: UUID, failure: Failure, local_retries: int = 0
    ) -> WorkItem | ExecutionRecord:
        """Record a failed attempt; the core decides retry or dead letter."""
        validation.check_failure(failure)
        validation.check_local_retries(local_retries)
        return await self.store.fail(token, agent_id, self.clock.now(), failure, local_retries)

    async def release(self, token: ClaimToken, agent_id: UUID, reason: str = "") -> WorkItem:
        """Hand a held claim back unfinished: PENDING at once, the run not charged."""
        validation.bounded_bytes("release reason", reason, MAX_MESSAGE_BYTES)
        return await self.store.release(token, agent_id, self.clock.now(), reason)

    async def cancel(
        self, work_id: UUID, actor: str = "admin", reason: str = ""
    ) -> ExecutionRecord:
        """End an item that has not finished; ``reason`` is kept as the record's result."""
        validation.bounded_bytes("cancel reason", reason, MAX_MESSAGE_BYTES)
        return await self.store.cancel(work_id, actor, self.clock.now(), reason)

    async def approve(self, work_id: UUID, actor: str = "admin") -> WorkItem:
        """Release a HELD item."""
        return await self.store.approve(work_id, actor, self.clock.now())

    async def requeue(self, work_id: UUID, actor: str = "admin") -> WorkItem:
        """Give a FAILED item a fresh budget."""
        return await self.store.requeue(work_id, actor, self.clock.now())

    async def events(self, work_id: UUID) -> list[Event]:
        """The item's timeline; UnknownWork when the item is unknown (or pruned)."""
        events = await self.store.events(work_id)
        if not events:
            raise UnknownWork(work_id)
        return events

    async def stats(self) -> Stats:
        """Counts by work type and status."""
        return await self.store.stats()

    # --- maintenance -------------------------------------------------------------

    async def sweep(self, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        """Turn expired leases into retryable failures."""
        return await self.store.sweep(self.clock.now(), limit)

    async def prune(self, retention: timedelta, limit: int = 10_000) -> int:
        """Delete log records older than ``retention``."""
        if not timedelta(0) <= retention <= timedelta(days=36_500):
            raise InvalidInput("retention must be between 0 and 100 years")
        return await self.store.prune(self.clock.now() - retention, limit)

    # --- agents ------------------------------------------------------------------

    async def register_agent(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> IssuedAgent:
        """Register an agent and issue its token (returned once, stored hashed)."""
        validation.bounded_text("name", name, 253)
        validation.no_nul("name", name)
        validation.check_labels(labels or {})
        validation.check_annotations(annotations or {})
        token = TOKEN_PREFIX + self._tokens()
        agent = Agent(
            id=self._ids(),
            name=name,
            registered_at=self.clock.now(),
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            token_hash=hash_token(token),
        )
        return IssuedAgent(await self.store.register_agent(agent), token)

    async def authenticate_agent(self, token: str) -> Agent | None:
        """The agent this token belongs to, or None (also for an INACTIVE agent's token)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        agent = await self.store.agent_by_token_hash(hash_token(token))
        if agent is None or agent.status is AgentStatus.INACTIVE:
            return None
        return agent

    async def get_agent(self, agent_id: UUID) -> Agent:
        """The agent, or UnknownAgent."""
        agent = await self.store.get_agent(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent

    async def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        """Agents by name."""
        return await self.store.list_agents(status)

    async def update_agent(
        self,
        agent_id: UUID,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        status: AgentStatus | None = None,
    ) -> Agent:
        """Relabel, re-annotate or change status; the agent's eligibility follows at once.

        The token hash is not changed here: rotating a token replaces the hash
        (``store.update_agent(token_hash=...)``); the port cannot clear it.
        """
        if labels is not None:
            validation.check_labels(labels)
        if annotations is not None:
            validation.check_annotations(annotations)
        return await self.store.update_agent(
            agent_id,
            labels=dict(labels) if labels is not None else None,
            annotations=dict(annotations) if annotations is not None else None,
            status=status,
        )

    async def rotate_agent_token(self, agent_id: UUID) -> IssuedAgent:
        """Issue the agent a new token (shown once); the old one stops working at once."""
        token = TOKEN_PREFIX + self._tokens()
        agent = await self.store.update_agent(agent_id, token_hash=hash_token(token))
        return IssuedAgent(agent, token)

    async def revoke_agent(self, agent_id: UUID) -> Agent:
        """Make the agent INACTIVE and its token worthless (a later rotate issues a new one)."""
        unknown = hash_token(TOKEN_PREFIX + "revoked:" + self._tokens())  # never shown
        return await self.store.update_agent(
            agent_id, status=AgentStatus.INACTIVE, token_hash=unknown
        )

    async def drain_agent(self, agent_id: UUID) -> Agent:
        """Stop the agent claiming; it finishes what it holds."""
        return await self.store.update_agent(agent_id, status=AgentStatus.DRAINING)

    async def agent_heartbeat(self, agent_id: UUID) -> Agent:
        """Record that the agent is alive."""
        return await self.store.touch_agent(agent_id, self.clock.now())
