"""The store conformance suite: one stateful Hypothesis machine, run against any ``Store``.

The machine drives the store under test and the reference semantics
(``QueueState``) side by side with the same operations and the same ``now``. After
each step it checks that both agree, and checks invariants 1–9 of DESIGN §2 on the
store under test directly, from what it returns through its public port.

Use it with a factory that yields a fresh, empty store::

    from workqueue_core.testing import conformance_test_case

    @asynccontextmanager
    async def fresh_store():
        store = MyStore(...)
        yield store
        await store.close()

    TestMyStore = conformance_test_case(fresh_store)

Generated retry policies have no jitter, so both sides compute the same
``not_before``; jitter bounds are property-tested on ``RetryPolicy`` itself.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

import anyio
import attrs
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from workqueue_core.errors import LeaseLost, WorkqueueError
from workqueue_core.models import (
    AgentStatus,
    ClaimToken,
    Completion,
    Cursor,
    Event,
    ExecutionRecord,
    Failure,
    LogQuery,
    SubmitResult,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.ports import Store
from workqueue_core.queue_state import QueueState
from workqueue_core.replay import ReplayError, agrees, replay
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.clock import EPOCH

StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]
"""Returns an async context manager that yields a fresh, empty store."""

T = TypeVar("T")

MAX_AGENTS = 4
MAX_ITEMS = 24
PAGE = 500


class ConformanceError(AssertionError):
    """The store under test broke an invariant or disagreed with the reference."""


def _fail(message: str) -> ConformanceError:
    return ConformanceError(message)


Outcome = tuple[Any, WorkqueueError | None]


def _comparable(value: Any) -> Any:
    """What must be equal between the store and the reference."""
    if isinstance(value, ExecutionRecord):
        return ("record", value.item, value.finished_at, value.finished_by, value.result)
    if isinstance(value, SubmitResult):
        return ("submitted", _comparable(value.item), value.created)
    if isinstance(value, Event):
        return attrs.evolve(value, seq=0, detail="")
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    if isinstance(value, WorkqueueError):
        return type(value)
    return value


class ConformanceMachine(RuleBasedStateMachine):
    """Drives a store and the reference side by side; see the module docstring."""

    store_factory: StoreFactory

    def __init__(self) -> None:
        super().__init__()
        self._stack = ExitStack()
        self.portal = self._stack.enter_context(start_blocking_portal())
        self.store: Store = self._stack.enter_context(
            self.portal.wrap_async_context_manager(self.store_factory())
        )
        self.model = QueueState(random_source=lambda: 0.0)
        self.now = EPOCH
        self.agent_ids: list[UUID] = []
        self.work_ids: list[UUID] = []
        self.pruned: set[UUID] = set()
        self.tokens: list[tuple[ClaimToken, UUID]] = []
        self.touched: set[UUID] = set()
        self._next_id = 0

    def teardown(self) -> None:
        # Only release resources: a check raised here would mask the step that failed.
        self._stack.close()

    # --- plumbing ------------------------------------------------------------

    def _new_id(self) -> UUID:
        self._next_id += 1
        return UUID(int=self._next_id)

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return self.portal.call(functools.partial(fn, *args, **kwargs))

    def _both(
        self,
        op: str,
        on_store: Callable[[], Awaitable[Any]],
        on_model: Callable[[], Any],
    ) -> tuple[Outcome, Outcome]:
        """Run one operation on both sides and require the same outcome."""
        try:
            got: Outcome = (self.portal.call(on_store), None)
        except WorkqueueError as error:
            got = (None, error)
        try:
            want: Outcome = (on_model(), None)
        except WorkqueueError as error:
            want = (None, error)
        event(f"{op}: {type(want[1]).__name__ if want[1] is not None else 'ok'}")
        if (got[1] is None) != (want[1] is None) or (
            got[1] is not None and type(got[1]) is not type(want[1])
        ):
            raise _fail(
                f"{op}: the store gave {got[1]!r} / {got[0]!r}, "
                f"the reference {want[1]!r} / {want[0]!r}"
            )
        if got[1] is None and _comparable(got[0]) != _comparable(want[0]):
            raise _fail(f"{op}: the store returned {got[0]!r}, the reference {want[0]!r}")
        return got, want

    def _agent(self, data: st.DataObject) -> UUID:
        return data.draw(st.sampled_from(self.agent_ids), label="agent")

    def _work(self, data: st.DataObject, status: WorkStatus | None = None) -> UUID:
        """Any item; with ``status``, mostly one the reference has in that status."""
        if status is not None and data.draw(st.integers(0, 3), label="biased") > 0:
            candidates = [i.id for i in self.model.query(WorkQuery(status=status, limit=10_000))]
            if candidates:
                return data.draw(st.sampled_from(candidates), label="work")
        return data.draw(st.sampled_from(self.work_ids), label="work")

    def _token(self, data: st.DataObject) -> tuple[ClaimToken, UUID]:
        """Mostly a token of a claim held now, otherwise any token ever issued (often stale)."""
        held = [
            (i.token, i.claimed_by)
            for i in self.model.query(WorkQuery(status=WorkStatus.CLAIMED, limit=10_000))
            if i.claimed_by is not None
        ]
        pool = held if held and data.draw(st.integers(0, 2), label="held") > 0 else self.tokens
        token, holder = data.draw(st.sampled_from(pool), label="token")
        if data.draw(st.integers(0, 9), label="other agent") == 0:
            holder = self._agent(data)
        return token, holder

    def _check_claimed(self, items: Sequence[WorkItem], agent_id: UUID) -> None:
        """Invariants 5 and 7 at claim time, from the agent's state before the claim."""
        agent = self.model.get_agent(agent_id)
        assert agent is not None
        for item in items:
            if not agent.eligible_for(item.targeting):
                raise _fail(f"invariant 5: {agent_id} claimed {item.id} without being eligible")
            if item.not_before is not None and item.not_before > self.now:
                raise _fail(f"invariant 7: {item.id} claimed before its not_before")
            self.tokens.append((item.token, agent_id))
            self.touched.add(item.id)

    # --- agents ----------------------------------------------------------------

    @initialize(data=st.data())
    def first_agents(self, data: st.DataObject) -> None:
        self.register_agent(data)
        self.register_agent(data)
        for _ in range(data.draw(st.integers(1, 4), label="first items")):
            self.submit(data)

    @precondition(lambda self: len(self.agent_ids) < MAX_AGENTS)
    @rule(data=st.data())
    def register_agent(self, data: st.DataObject) -> None:
        agent_id = self._new_id()
        agent = data.draw(wst.agents(agent_id, f"agent-{agent_id.int}", self.now))
        self._both(
            "register_agent",
            functools.partial(self.store.register_agent, agent),
            functools.partial(self.model.register_agent, agent),
        )
        self.agent_ids.append(agent_id)

    @rule(data=st.data(), labels=wst.label_sets())
    def relabel_agent(self, data: st.DataObject, labels: dict[str, str]) -> None:
        agent_id = self._agent(data)
        self._both(
            "update_agent(labels)",
            functools.partial(self.store.update_agent, agent_id, labels=labels),
            functools.partial(self.model.update_agent, agent_id, labels=labels),
        )

    @rule(data=st.data(), status=st.sampled_from([AgentStatus.ACTIVE, *AgentStatus]))
    def set_agent_status(self, data: st.DataObject, status: AgentStatus) -> None:
        agent_id = self._agent(data)
        self._both(
            "update_agent(status)",
            functools.partial(self.store.update_agent, agent_id, status=status),
            functools.partial(self.model.update_agent, agent_id, status=status),
        )

    # --- submit and admin ---------------------------------------------------------

    @precondition(lambda self: len(self.work_ids) < MAX_ITEMS)
    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        work_id = self._new_id()
        item = data.draw(wst.work_items(work_id, self.now, self.agent_ids), label="item")
        got, _ = self._both(
            "submit",
            functools.partial(self.store.submit, item, "submitter", self.now),
            functools.partial(self.model.submit, item, "submitter", self.now),
        )
        result: SubmitResult = got[0]
        if result.created:
            self.work_ids.append(work_id)
            self.touched.add(work_id)
        else:
            original = result.item.item if isinstance(result.item, ExecutionRecord) else result.item
            if (
                item.idempotency_key is None
                or original.id == work_id
                or original.idempotency_key != item.idempotency_key
            ):
                raise _fail(f"invariant 8: submit of {work_id} was refused or named another item")

    @precondition(lambda self: self.work_ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        work_id = self._work(data)
        self._both(
            "cancel",
            functools.partial(self.store.cancel, work_id, "admin", self.now, "test"),
            functools.partial(self.model.cancel, work_id, "admin", self.now, "test"),
        )
        self.touched.add(work_id)

    @precondition(lambda self: self.work_ids)
    @rule(data=st.data())
    def approve(self, data: st.DataObject) -> None:
        work_id = self._work(data, WorkStatus.HELD)
        self._both(
            "approve",
            functools.partial(self.store.approve, work_id, "admin", self.now),
            functools.partial(self.model.approve, work_id, "admin", self.now),
        )
        self.touched.add(work_id)

    @precondition(lambda self: self.work_ids)
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        failed = [
            r.id for r in self.model.query_log(LogQuery(status=WorkStatus.FAILED, limit=10_000))
        ]
        work_id = self._work(data)
        if failed:
            chosen: bool = data.draw(st.booleans(), label="a failed one")
            if chosen:
                work_id = data.draw(st.sampled_from(failed), label="work")
        self._both(
            "requeue",
            functools.partial(self.store.requeue, work_id, "admin", self.now),
            functools.partial(self.model.requeue, work_id, "admin", self.now),
        )
        self.touched.add(work_id)

    # --- claims --------------------------------------------------------------------

    @precondition(lambda self: self.work_ids)
    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        work_id, agent_id = self._work(data, WorkStatus.PENDING), self._agent(data)
        got, _ = self._both(
            "claim",
            functools.partial(self.store.claim, work_id, agent_id, self.now),
            functools.partial(self.model.claim, work_id, agent_id, self.now),
        )
        if got[1] is None:
            self._check_claimed([got[0]], agent_id)

    @rule(
        data=st.data(),
        limit=st.integers(1, 4),
        types=st.none() | st.lists(st.sampled_from(wst.WORK_TYPES), min_size=1, max_size=2),
    )
    def claim_next(self, data: st.DataObject, limit: int, types: list[str] | None) -> None:
        agent_id = self._agent(data)
        got, _ = self._both(
            "claim_next",
            functools.partial(self.store.claim_next, agent_id, self.now, types, limit),
            functools.partial(self.model.claim_next, agent_id, self.now, types, limit),
        )
        if got[1] is None:
            self._check_claimed(got[0], agent_id)

    @rule(data=st.data())
    def pending_for(self, data: st.DataObject) -> None:
        agent_id = self._agent(data)
        self._both(
            "pending_for",
            functools.partial(self.store.pending_for, agent_id, self.now, None, 100),
            functools.partial(self.model.pending_for, agent_id, self.now, None, 100),
        )

    @precondition(lambda self: len(self.agent_ids) >= 2 and self.work_ids)
    @rule(data=st.data(), limit=st.integers(1, 3), by_id=st.booleans())
    def concurrent_claims(self, data: st.DataObject, limit: int, by_id: bool) -> None:
        """Several agents claim at once; invariant 1: no item is claimed twice."""
        agents = data.draw(
            st.lists(st.sampled_from(self.agent_ids), min_size=2, max_size=4, unique=True)
        )
        target = self._work(data)
        results: dict[UUID, list[WorkItem]] = {}

        async def one(agent_id: UUID) -> None:
            try:
                if by_id:
                    results[agent_id] = [await self.store.claim(target, agent_id, self.now)]
                else:
                    results[agent_id] = await self.store.claim_next(agent_id, self.now, None, limit)
            except WorkqueueError:
                results[agent_id] = []

        async def all_at_once() -> None:
            async with anyio.create_task_group() as tg:
                for agent_id in agents:
                    tg.start_soon(one, agent_id)

        self.portal.call(all_at_once)
        seen: dict[UUID, UUID] = {}
        for agent_id, items in results.items():
            for item in items:
                if item.id in seen:
                    raise _fail(
                        f"invariant 1: {item.id} claimed by both {seen[item.id]} and {agent_id}"
                    )
                seen[item.id] = agent_id
        # Replay the successful claims on the reference: each must be legal there.
        for agent_id, items in results.items():
            for item in items:
                try:
                    want = self.model.claim(item.id, agent_id, self.now)
                except WorkqueueError as error:
                    raise _fail(
                        f"concurrent claim: the store let {agent_id} claim {item.id}, "
                        f"the reference refuses: {error}"
                    ) from error
                if want != item:
                    raise _fail(f"concurrent claim: the store returned {item!r}, want {want!r}")
            self._check_claimed(items, agent_id)

    # --- claim holders --------------------------------------------------------------

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), local_retries=st.integers(0, 2))
    def heartbeat(self, data: st.DataObject, local_retries: int) -> None:
        token, agent_id = self._token(data)
        self._holder_step(
            "heartbeat",
            functools.partial(self.store.heartbeat, token, agent_id, self.now, local_retries),
            functools.partial(self.model.heartbeat, token, agent_id, self.now, local_retries),
            token,
        )

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), local_retries=st.integers(0, 1), result=st.sampled_from([None, "ok"]))
    def complete(self, data: st.DataObject, local_retries: int, result: str | None) -> None:
        token, agent_id = self._token(data)
        got = self._holder_step(
            "complete",
            functools.partial(
                self.store.complete, token, agent_id, self.now, result, local_retries
            ),
            functools.partial(
                self.model.complete, token, agent_id, self.now, result, local_retries
            ),
            token,
        )
        if got[1] is None:
            again = self._call(
                self.store.complete, token, agent_id, self.now, result, local_retries
            )
            if _comparable(again) != _comparable(got[0]):
                raise _fail(f"invariant 4: repeated complete gave {again!r}, first {got[0]!r}")

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def complete_many(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from(self.tokens), min_size=1, max_size=4))
        batch = [Completion(token, agent_id, "batch") for token, agent_id in chosen]
        self._both(
            "complete_many",
            functools.partial(self.store.complete_many, batch, self.now),
            functools.partial(self.model.complete_many, batch, self.now),
        )
        self.touched.update(token.work_id for token, _ in chosen)

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), failure=wst.failures(), local_retries=st.integers(0, 1))
    def fail(self, data: st.DataObject, failure: Failure, local_retries: int) -> None:
        token, agent_id = self._token(data)
        self._holder_step(
            "fail",
            functools.partial(self.store.fail, token, agent_id, self.now, failure, local_retries),
            functools.partial(self.model.fail, token, agent_id, self.now, failure, local_retries),
            token,
        )

    def _holder_step(
        self,
        op: str,
        on_store: Callable[[], Awaitable[Any]],
        on_model: Callable[[], Any],
        token: ClaimToken,
    ) -> Outcome:
        """A step by a claim holder; invariant 3: a refused stale token changes nothing."""
        before = self._snapshot_item(token.work_id)
        got, _ = self._both(op, on_store, on_model)
        self.touched.add(token.work_id)
        if isinstance(got[1], LeaseLost) and self._snapshot_item(token.work_id) != before:
            raise _fail(f"invariant 3: {op} with stale token {token} changed the item")
        return got

    # --- time and maintenance -----------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 120, 301, 700]))
    def advance_time(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(limit=st.sampled_from([1, 1000]))
    def sweep(self, limit: int) -> None:
        got, _ = self._both(
            "sweep",
            functools.partial(self.store.sweep, self.now, limit),
            functools.partial(self.model.sweep, self.now, limit),
        )
        self.touched.update(state.id for state in got[0])

    @rule(age=st.sampled_from([0, 60, 600]))
    def prune(self, age: int) -> None:
        before = self.now - timedelta(seconds=age)
        doomed = {
            r.id for r in self.model.query_log(LogQuery(limit=10_000)) if r.finished_at < before
        }
        self._both(
            "prune",
            functools.partial(self.store.prune, before),
            functools.partial(self.model.prune, before),
        )
        self.pruned |= doomed

    # --- invariants --------------------------------------------------------------------

    def _snapshot_item(self, work_id: UUID) -> tuple[Any, Any]:
        return (
            self._call(self.store.get, work_id),
            _comparable(self._call(self.store.get_record, work_id)),
        )

    def _all_queued(self) -> list[WorkItem]:
        items: list[WorkItem] = []
        query = WorkQuery(limit=PAGE)
        while True:
            page = self._call(self.store.query, query)
            items.extend(page)
            if len(page) < PAGE:
                return items
            query = attrs.evolve(query, after=Cursor(page[-1].created_at, page[-1].id))

    def _all_logged(self) -> list[ExecutionRecord]:
        records: list[ExecutionRecord] = []
        query = LogQuery(limit=PAGE)
        while True:
            page = self._call(self.store.query_log, query)
            records.extend(page)
            if len(page) < PAGE:
                return records
            query = attrs.evolve(query, after=Cursor(page[-1].finished_at, page[-1].id))

    @invariant()
    def store_agrees_with_reference(self) -> None:
        queued = self._all_queued()
        logged = self._all_logged()
        want_queued = self.model.query(WorkQuery(limit=10_000))
        want_logged = self.model.query_log(LogQuery(limit=10_000))
        if queued != want_queued:
            raise _fail(f"queue differs:\n store     {queued!r}\n reference {want_queued!r}")
        if _comparable(logged) != _comparable(want_logged):
            raise _fail(f"log differs:\n store     {logged!r}\n reference {want_logged!r}")

    @invariant()
    def nothing_lost_nothing_twice(self) -> None:
        """Invariant 2 (and 1, 6): every live item is in exactly one of queue or log."""
        queued = {i.id: i for i in self._all_queued()}
        logged = {r.id: r for r in self._all_logged()}
        both = queued.keys() & logged.keys()
        if both:
            raise _fail(f"invariant 2: {sorted(both)} are in both the queue and the log")
        live = set(self.work_ids) - self.pruned
        if live != queued.keys() | logged.keys():
            missing = live - (queued.keys() | logged.keys())
            extra = (queued.keys() | logged.keys()) - live
            raise _fail(f"invariant 2: lost {sorted(missing)}, unexpected {sorted(extra)}")
        for item in [*queued.values(), *(r.item for r in logged.values())]:
            if item.executions > item.max_executions:
                raise _fail(f"invariant 6: {item.id} ran {item.executions} times")
            if item.status in (WorkStatus.CLAIMED,) and (
                item.claimed_by is None or item.lease_expires_at is None
            ):
                raise _fail(f"invariant 1: claimed {item.id} has no holder or lease")
            if item.status.is_terminal != (item.id in logged):
                raise _fail(f"invariant 2: {item.id} is {item.status} in the wrong table")

    @invariant()
    def timelines_replay(self) -> None:
        """Invariant 9, for the items the last step touched."""
        self._check_timelines(self.touched - self.pruned)
        self.touched.clear()

    def _check_timelines(self, work_ids: set[UUID]) -> None:
        for work_id in sorted(work_ids):
            events = self._call(self.store.events, work_id)
            current = self._call(self.store.get, work_id) or self._call(
                self.store.get_record, work_id
            )
            if current is None:
                continue  # never created (idempotent resubmit) — checked elsewhere
            try:
                state = replay(events)
            except ReplayError as error:
                raise _fail(f"invariant 9: timeline of {work_id} is broken: {error}") from error
            if not agrees(state, current):
                raise _fail(f"invariant 9: timeline of {work_id} replays to {state}, not {current}")
            if _comparable(events) != _comparable(self.model.events(work_id)):
                raise _fail(
                    f"timeline of {work_id} differs:\n store     {events!r}\n"
                    f" reference {self.model.events(work_id)!r}"
                )


def conformance_settings(
    max_examples: int = 200, step_count: int = 50, **overrides: Any
) -> settings:
    """The suite's Hypothesis settings (CI profile: 200 examples of 50 steps)."""
    options: dict[str, Any] = {
        "max_examples": max_examples,
        "stateful_step_count": step_count,
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
    }
    options.update(overrides)
    return settings(**options)


def conformance_machine(
    store_factory: StoreFactory, name: str = "StoreConformance"
) -> type[ConformanceMachine]:
    """A machine class that runs the suite against stores made by ``store_factory``."""
    return type(name, (ConformanceMachine,), {"store_factory": staticmethod(store_factory)})


def conformance_test_case(
    store_factory: StoreFactory,
    max_examples: int = 200,
    step_count: int = 50,
    **overrides: Any,
) -> Any:
    """A unittest/pytest TestCase class that runs the suite; assign it to a ``Test*`` name."""
    machine = conformance_machine(store_factory)
    case = machine.TestCase
    case.settings = conformance_settings(max_examples, step_count, **overrides)
    return case


QUICK = Phase.generate
"""For checks that only need to know *that* a store fails: skip shrinking."""
