"""Shared helpers for the worker tests: stores under a fake clock and a controllable source.

Also checks that ``BrokerService`` satisfies the ``WorkSource`` port (mypy checks the
assignment below; the test checks the method names at run time).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from uuid import UUID

import anyio
import attrs
import pytest

from workqueue_core.domain.errors import StoreUnavailable, WorkqueueError
from workqueue_core.domain.models import (
    Agent,
    ClaimToken,
    Completion,
    Event,
    ExecutionRecord,
    Failure,
    IssuedAgent,
    SubmitRequest,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.replay import agrees, replay
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.executor.reports import ReportPolicy
from workqueue_core.executor.worker import Worker, WorkerOptions
from workqueue_core.ports import Store
from workqueue_core.ports.agent import WorkSource
from workqueue_core.service.broker import BrokerService
from workqueue_core.testing import FakeClock, SequentialIds, SequentialTokens
from workqueue_memory import MemoryStore

POLL = 0.005
"""Real seconds between checks of a condition a test waits for."""

HANG_GUARD = 20.0
"""Real seconds after which a wait is a hang (a failure), never a timing assertion."""


def fast_options(**overrides: object) -> WorkerOptions:
    """Worker options that keep real waiting short in tests."""
    values: dict[str, object] = {
        "concurrency": 4,
        "batch": 4,
        "claim_wait": 0.02,
        "heartbeat_interval": 0.01,
        "grace_period": 0.2,
        "agent_heartbeat_interval": 0.05,
        "error_backoff": 0.01,
        "report": ReportPolicy(attempts=2, call_timeout=5.0, pause=0.001),
    }
    values.update(overrides)
    return WorkerOptions(**values)  # type: ignore[arg-type]


class GatedSource:
    """A ``WorkSource`` in front of a real one that a test can pause or cut off.

    ``pause_heartbeats()`` holds every heartbeat until ``resume_heartbeats()``;
    ``sever()`` makes every later call fail as if the broker were unreachable
    (a crashed worker's view of the world).
    """

    def __init__(self, inner: WorkSource) -> None:
        self.inner = inner
        self.claim_calls = 0
        self.heartbeat_calls = 0
        self.heartbeats_in_flight = 0
        self.severed = False
        self._gate: anyio.Event | None = None

    def sever(self) -> None:
        self.severed = True

    def pause_heartbeats(self) -> None:
        if self._gate is None:
            self._gate = anyio.Event()

    def resume_heartbeats(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    def _check(self) -> None:
        if self.severed:
            raise StoreUnavailable("severed")

    async def register_agent(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> IssuedAgent:
        self._check()
        return await self.inner.register_agent(name, labels, annotations)

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        self._check()
        self.claim_calls += 1
        return await self.inner.claim_next(agent_id, work_types, limit, wait)

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, local_retries: int = 0
    ) -> WorkItem:
        if self._gate is not None:
            await self._gate.wait()
        self._check()
        self.heartbeat_calls += 1
        self.heartbeats_in_flight += 1
        try:
            return await self.inner.heartbeat(token, agent_id, local_retries)
        finally:
            self.heartbeats_in_flight -= 1

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        self._check()
        return await self.inner.complete(token, agent_id, result, local_retries)

    async def complete_many(
        self, completions: Sequence[Completion]
    ) -> list[ExecutionRecord | WorkqueueError]:
        self._check()
        return await self.inner.complete_many(completions)

    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]:
        self._check()
        return await self.inner.complete_many_quiet(completions)

    async def fail(
        self, token: ClaimToken, agent_id: UUID, failure: Failure, local_retries: int = 0
    ) -> WorkItem | ExecutionRecord:
        self._check()
        return await self.inner.fail(token, agent_id, failure, local_retries)

    async def release(self, token: ClaimToken, agent_id: UUID, reason: str = "") -> WorkItem:
        self._check()
        return await self.inner.release(token, agent_id, reason)

    async def agent_heartbeat(self, agent_id: UUID) -> Agent:
        self._check()
        return await self.inner.agent_heartbeat(agent_id)


@attrs.define
class Harness:
    """A broker service over a store, a fake clock, and a gated source for workers."""

    service: BrokerService
    clock: FakeClock
    store: Store

    def source(self) -> GatedSource:
        """A fresh gated source over the service (one per worker)."""
        return GatedSource(self.service)

    async def submit(
        self,
        work_type: str = "echo",
        spec: str = "{}",
        *,
        max_retries: int = 3,
        base_delay: float = 0.0,
        claim_timeout: float = 60.0,
        labels: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> UUID:
        """Submit one item for every agent; returns its id."""
        result = await self.service.submit(
            SubmitRequest(
                work_type=work_type,
                spec=spec,
                targeting=Targeting.everyone(),
                retry_policy=RetryPolicy(
                    max_retries=max_retries,
                    base_delay=timedelta(seconds=base_delay),
                    max_delay=timedelta(seconds=max(base_delay, 1.0) * 100),
                ),
                claim_timeout=timedelta(seconds=claim_timeout),
                labels=dict(labels or {}),
                correlation_id=correlation_id,
            )
        )
        return result.item.id

    async def state(self, work_id: UUID) -> WorkItem | ExecutionRecord:
        """The item from the queue or its record from the log."""
        return await self.service.get(work_id)

    async def record(self, work_id: UUID) -> ExecutionRecord:
        """The log record (the item must have ended)."""
        state = await self.service.get(work_id)
        assert isinstance(state, ExecutionRecord), f"{work_id} has not ended: {state}"
        return state

    async def wait_ended(self, *work_ids: UUID) -> list[ExecutionRecord]:
        """Wait until every item is in the log; their records."""
        for work_id in work_ids:

            async def ended(w: UUID = work_id) -> bool:
                return await self.store.get_record(w) is not None

            await until(ended)
        return [await self.record(w) for w in work_ids]

    async def events(self, work_id: UUID) -> list[Event]:
        return await self.service.events(work_id)

    async def check_replay(self, work_id: UUID) -> None:
        """Invariant 9: the timeline replays to the stored state."""
        state = await self.state(work_id)
        assert agrees(replay(await self.events(work_id)), state), (
            f"{work_id}: replay disagrees with {state}"
        )


async def until(condition: Callable[[], Awaitable[bool] | bool], guard: float = HANG_GUARD) -> None:
    """Wait until ``condition`` holds; fail (not skip) if it never does within the guard."""
    with anyio.fail_after(guard):
        while True:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await anyio.sleep(POLL)


def memory_harness() -> Harness:
    """A broker service over a fresh in-memory store."""
    clock = FakeClock()
    store = MemoryStore(random_source=lambda: 0.0)
    service = BrokerService(
        store,
        clock,
        SequentialIds(),
        SequentialTokens(),
        notifier=store.notifier,
        poll_interval=POLL,
    )
    return Harness(service, clock, store)


@asynccontextmanager
async def postgres_harness() -> AsyncIterator[Harness]:
    """A broker service over a fresh PostgreSQL store in a schema of its own."""
    from pg_support import fresh_postgres_store  # only PostgreSQL tests need psycopg

    async with fresh_postgres_store(random_source=lambda: 0.0) as store:
        clock = FakeClock()
        service = BrokerService(
            store,
            clock,
            SequentialIds(),
            SequentialTokens(),
            notifier=store.notifier,
            poll_interval=POLL,
        )
        yield Harness(service, clock, store)


@asynccontextmanager
async def harness_for(kind: str) -> AsyncIterator[Harness]:
    """``memory`` or ``postgres``."""
    if kind == "memory":
        yield memory_harness()
    else:
        async with postgres_harness() as harness:
            yield harness


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[UUID]:
    """Run ``worker`` for the body, then stop it gracefully and wait for it to end."""
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            agent_id: UUID = await tg.start(worker.run)
            yield agent_id
            worker.stop()


def test_broker_service_is_a_work_source() -> None:
    service = memory_harness().service
    source: WorkSource = service  # mypy checks this assignment against the port
    port_methods = {
        name for name, value in inspect.getmembers(WorkSource) if inspect.iscoroutinefunction(value)
    }
    assert port_methods == {
        "register_agent",
        "claim_next",
        "heartbeat",
        "complete",
        "complete_many",
        "complete_many_quiet",
        "fail",
        "release",
        "agent_heartbeat",
    }
    for name in port_methods:
        ours = inspect.signature(getattr(WorkSource, name))
        theirs = inspect.signature(getattr(type(source), name))
        assert list(ours.parameters) == list(theirs.parameters), name


def test_gated_source_is_a_work_source() -> None:
    gated: WorkSource = GatedSource(memory_harness().service)
    assert isinstance(gated, GatedSource)


@pytest.mark.anyio
async def test_until_fails_instead_of_hanging() -> None:
    with pytest.raises(TimeoutError):
        await until(lambda: False, guard=0.05)


def ended_ok(record: ExecutionRecord) -> bool:
    """True when the record is a success."""
    return record.status is WorkStatus.SUCCEEDED
