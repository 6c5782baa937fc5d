"""The store conformance suite: one stateful Hypothesis machine, run against any ``Store``.

The machine drives the store under test and the reference semantics
(``ReferenceStore``) side by side with the same operations and the same ``now``. After
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

Beyond the transitions, the machine compares lookups (``get``/``get_record`` of
every id), filtered and paginated queries, ``pending_for`` with type filters,
stats, agent listings and token lookups, pruning (records, events and keys gone),
and races: concurrent claims, and two sweeps racing each other and a claim
holder's heartbeat, complete or fail. One rule replays a fixed scenario: a holder's
lease is swept, the same agent claims the item again, and reports with its first
claim's token (refused: only the attempt tells the two tokens apart). Times carry
microseconds and payloads come from all of Unicode (NUL excluded), up to a few KiB.
When the store has a ``notifier`` (the ``Notifier`` port), every step on which the
reference wakes claimers must wake a waiter armed before it.
"""

from __future__ import annotations

import copy
import functools
import itertools
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

from workqueue_core.domain.errors import LeaseLost, WorkqueueError
from workqueue_core.domain.models import (
    Agent,
    AgentStatus,
    ClaimToken,
    Completion,
    Cursor,
    Event,
    ExecutionRecord,
    Failure,
    LogQuery,
    Stats,
    SubmitResult,
    WorkItem,
    WorkQuery,
    WorkStatus,
    quiet_outcomes,
)
from workqueue_core.domain.replay import ReplayError, agrees, replay
from workqueue_core.ports import Notifier, Store
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.clock import EPOCH

StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]
"""Returns an async context manager that yields a fresh, empty store."""

T = TypeVar("T")

MAX_AGENTS = 4
MAX_ITEMS = 24
PAGE = 7
"""Page size of the full reads after every step: small, so keyset pagination is always used."""


class ConformanceError(AssertionError):
    """The store under test broke an invariant or disagreed with the reference."""


def _fail(message: str) -> ConformanceError:
    return ConformanceError(message)


def _pick_or_none(data: st.DataObject, choices: Sequence[T], label: str) -> T | None:
    """Like ``_pick``, but None when there is nothing to choose; draws the same either way,
    so whether the store's state offers a choice does not change what is drawn."""
    index = data.draw(st.integers(0, 2**16), label=label)
    return choices[index % len(choices)] if choices else None


def _sampled(choices: Sequence[T]) -> st.SearchStrategy[T]:
    """``sampled_from`` with fixed bounds, for non-empty lists that come from the state."""
    chosen = list(choices)
    return st.integers(0, 2**16).map(lambda i: chosen[i % len(chosen)])


def _pick(data: st.DataObject, choices: Sequence[T], label: str) -> T:
    """One of ``choices``, drawn with fixed bounds.

    The lists come from the store's state, whose size can differ between a run and
    its replay when operations race; ``sampled_from`` would then draw with other
    bounds and Hypothesis reports inconsistent data generation instead of the bug.
    """
    return choices[data.draw(st.integers(0, 2**16), label=label) % len(choices)]


Outcome = tuple[Any, WorkqueueError | None]

LOCAL_RETRIES = st.sampled_from([0, 0, 0, 1, 1, 2, 3, 6])
"""Reported local retries: often more than the budget allows (heartbeats refuse, the
final reports clamp)."""

TYPE_FILTERS: st.SearchStrategy[list[str] | None] = st.one_of(
    st.none(),
    st.just([]),
    st.lists(st.sampled_from([*wst.WORK_TYPES, "other"]), min_size=1, max_size=2),
)
"""``work_types`` arguments: all types (None), none at all ([]), or a few."""

FAR_FUTURE = timedelta(days=3650)
"""Far enough ahead that every pending callback is due."""

UNKNOWN = UUID(int=10**12)
"""An id no generated agent or item has."""

WAKE_TIMEOUT = 5.0
"""How long a store's notifier may take to deliver a wake-up the reference sends (seconds)."""


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
    if isinstance(value, Stats):
        return ("stats", {key: n for key, n in value.counts.items() if n})
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
        self._wake_listener = self._reference_woke
        """One bound method object, shared (not copied) by every copy of the reference."""
        self.model = ReferenceStore(random_source=lambda: 0.0, on_pending=self._wake_listener)
        notifier = getattr(self.store, "notifier", None)
        self.notifier: Notifier | None = notifier if isinstance(notifier, Notifier) else None
        self._woken = False
        self.now = EPOCH
        self.agent_ids: list[UUID] = []
        self.work_ids: list[UUID] = []
        self.pruned: set[UUID] = set()
        self.tokens: list[tuple[ClaimToken, UUID]] = []
        self.touched: set[UUID] = set()
        self._next_id = 0
        self._rotations = 0

    def teardown(self) -> None:
        # Only release resources: a check raised here would mask the step that failed.
        self._stack.close()

    # --- plumbing ------------------------------------------------------------

    def _new_id(self) -> UUID:
        self._next_id += 1
        return UUID(int=self._next_id)

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return self.portal.call(functools.partial(fn, *args, **kwargs))

    def _reference_woke(self) -> None:
        self._woken = True

    def _mark(self) -> int | None:
        """The store's notifier position now (None when it has no notifier)."""
        return None if self.notifier is None else self.portal.call(self.notifier.mark)

    def _both(
        self,
        op: str,
        on_store: Callable[[], Awaitable[Any]],
        on_model: Callable[[], Any],
    ) -> tuple[Outcome, Outcome]:
        """Run one operation on both sides and require the same outcome.

        When the store has a ``notifier`` and the reference wakes claimers on this
        step (an item became PENDING, an agent registered or changed), the store's
        notifier must wake a waiter armed before the step.
        """
        mark = self._mark()
        try:
            got: Outcome = (self.portal.call(on_store), None)
        except WorkqueueError as error:
            got = (None, error)
        self._woken = False
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
        if self._woken:
            self._require_wake(mark, f"{op}: the reference wakes waiting claimers here")
        return got, want

    def _require_wake(self, mark: int | None, why: str) -> None:
        """The store's notifier, if any, woke after ``mark`` (or within ``WAKE_TIMEOUT``)."""
        notifier = self.notifier
        if notifier is not None and not self.portal.call(notifier.wait, WAKE_TIMEOUT, mark):
            raise _fail(f"{why}, but the store's notifier did not wake within {WAKE_TIMEOUT} s")

    def _agent(self, data: st.DataObject) -> UUID:
        return _pick(data, self.agent_ids, "agent")

    def _work(self, data: st.DataObject, status: WorkStatus | None = None) -> UUID:
        """Any item; with ``status``, mostly one the reference has in that status."""
        if status is not None and data.draw(st.integers(0, 3), label="biased") > 0:
            candidates = [i.id for i in self.model.query(WorkQuery(status=status, limit=10_000))]
            if candidates:
                return _pick(data, candidates, "work")
        return _pick(data, self.work_ids, "work")

    def _token(self, data: st.DataObject) -> tuple[ClaimToken, UUID]:
        """Mostly a token of a claim held now, otherwise any token ever issued (often stale)."""
        held = [
            (i.token, i.claimed_by)
            for i in self.model.query(WorkQuery(status=WorkStatus.CLAIMED, limit=10_000))
            if i.claimed_by is not None
        ]
        use_held = data.draw(st.integers(0, 2), label="held") > 0
        pool = held if held and use_held else self.tokens
        token, holder = _pick(data, pool, "token")
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

    @rule(data=st.data(), action=st.sampled_from(["annotate", "rotate", "touch", "duplicate"]))
    def agent_admin(self, data: st.DataObject, action: str) -> None:
        """Re-annotate, rotate a token hash, touch, or register a taken id or name."""
        agent_id = self._agent(data)
        if action == "annotate":
            annotations = data.draw(wst.agent_annotations(), label="annotations")
            self._both(
                "update_agent(annotations)",
                functools.partial(self.store.update_agent, agent_id, annotations=annotations),
                functools.partial(self.model.update_agent, agent_id, annotations=annotations),
            )
        elif action == "rotate":
            self._rotations += 1
            token_hash = wst.token_hash_for(agent_id, self._rotations)
            self._both(
                "update_agent(token_hash)",
                functools.partial(self.store.update_agent, agent_id, token_hash=token_hash),
                functools.partial(self.model.update_agent, agent_id, token_hash=token_hash),
            )
        elif action == "touch":
            if data.draw(st.integers(0, 5), label="unknown agent") == 0:
                agent_id = UNKNOWN
            self._both(
                "touch_agent",
                functools.partial(self.store.touch_agent, agent_id, self.now),
                functools.partial(self.model.touch_agent, agent_id, self.now),
            )
        else:
            existing = self.model.get_agent(agent_id)
            assert existing is not None
            if data.draw(st.booleans(), label="same id"):
                agent = Agent(id=agent_id, name=f"{existing.name}-again", registered_at=self.now)
            else:
                agent = Agent(id=self._new_id(), name=existing.name, registered_at=self.now)
            self._both(
                "register_agent(taken id or name)",
                functools.partial(self.store.register_agent, agent),
                functools.partial(self.model.register_agent, agent),
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
        reason = data.draw(wst.payloads(["test"], wst.MAX_MESSAGE_CHARS), label="reason")
        self._both(
            "cancel",
            functools.partial(self.store.cancel, work_id, "admin", self.now, reason),
            functools.partial(self.model.cancel, work_id, "admin", self.now, reason),
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
        chosen: bool = data.draw(st.booleans(), label="a failed one")
        failed_one = _pick_or_none(data, failed, "failed")
        if chosen and failed_one is not None:
            work_id = failed_one
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

    @rule(data=st.data(), limit=st.integers(1, 4), types=TYPE_FILTERS)
    def claim_next(self, data: st.DataObject, limit: int, types: list[str] | None) -> None:
        agent_id = self._agent(data)
        got, _ = self._both(
            "claim_next",
            functools.partial(self.store.claim_next, agent_id, self.now, types, limit),
            functools.partial(self.model.claim_next, agent_id, self.now, types, limit),
        )
        if got[1] is None:
            self._check_claimed(got[0], agent_id)

    @rule(data=st.data(), types=TYPE_FILTERS, limit=st.sampled_from([1, 2, 3, 100]))
    def pending_for(self, data: st.DataObject, types: list[str] | None, limit: int) -> None:
        agent_id = self._agent(data) if data.draw(st.integers(0, 9)) else UNKNOWN
        self._both(
            "pending_for",
            functools.partial(self.store.pending_for, agent_id, self.now, types, limit),
            functools.partial(self.model.pending_for, agent_id, self.now, types, limit),
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
    @rule(data=st.data(), local_retries=LOCAL_RETRIES)
    def heartbeat(self, data: st.DataObject, local_retries: int) -> None:
        token, agent_id = self._token(data)
        self._holder_step(
            "heartbeat",
            functools.partial(self.store.heartbeat, token, agent_id, self.now, local_retries),
            functools.partial(self.model.heartbeat, token, agent_id, self.now, local_retries),
            token,
        )

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), local_retries=LOCAL_RETRIES, result=wst.results())
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
    @rule(data=st.data(), size=st.integers(1, 4))
    def complete_many(self, data: st.DataObject, size: int) -> None:
        """A batch of current, stale, foreign and repeated tokens; entries stand alone.

        Half the time through ``complete_many_quiet``, whose answers must be the
        reference's with each record replaced by ``None``.
        """
        batch: list[Completion] = []
        for _ in range(size):
            if batch and data.draw(st.integers(0, 3), label="repeat an entry") == 0:
                entry = _pick(data, batch, "repeated")
                if data.draw(st.booleans(), label="by another agent"):
                    entry = attrs.evolve(entry, agent_id=self._agent(data))
                batch.append(entry)
                continue
            token, agent_id = self._token(data)
            if data.draw(st.integers(0, 4), label="foreign agent") == 0:
                agent_id = self._agent(data)
            result = data.draw(wst.results(), label="result")
            batch.append(Completion(token, agent_id, result, data.draw(LOCAL_RETRIES)))
        before = {c.token.work_id: self._snapshot_item(c.token.work_id) for c in batch}
        if data.draw(st.booleans(), label="quiet"):
            got, _ = self._both(
                "complete_many_quiet",
                functools.partial(self.store.complete_many_quiet, batch, self.now),
                lambda: quiet_outcomes(self.model.complete_many(batch, self.now)),
            )
        else:
            got, _ = self._both(
                "complete_many",
                functools.partial(self.store.complete_many, batch, self.now),
                functools.partial(self.model.complete_many, batch, self.now),
            )
        completed = {
            c.token.work_id
            for c, outcome in zip(batch, got[0], strict=True)
            if not isinstance(outcome, WorkqueueError)
        }
        for completion, outcome in zip(batch, got[0], strict=True):
            work_id = completion.token.work_id
            if (
                isinstance(outcome, LeaseLost)
                and work_id not in completed
                and self._snapshot_item(work_id) != before[work_id]
            ):
                raise _fail(f"invariant 3: complete_many with stale {completion.token} changed it")
        self.touched.update(c.token.work_id for c in batch)

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), failure=wst.failures(), local_retries=LOCAL_RETRIES)
    def fail(self, data: st.DataObject, failure: Failure, local_retries: int) -> None:
        token, agent_id = self._token(data)
        self._holder_step(
            "fail",
            functools.partial(self.store.fail, token, agent_id, self.now, failure, local_retries),
            functools.partial(self.model.fail, token, agent_id, self.now, failure, local_retries),
            token,
        )

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), reason=st.sampled_from(["", "shutdown", "drain: grace period over"]))
    def release(self, data: st.DataObject, reason: str) -> None:
        """A graceful hand-back: PENDING at once, the run refunded, the token stale after."""
        token, agent_id = self._token(data)
        before = self.model.get(token.work_id)
        got = self._holder_step(
            "release",
            functools.partial(self.store.release, token, agent_id, self.now, reason),
            functools.partial(self.model.release, token, agent_id, self.now, reason),
            token,
        )
        if got[1] is None and before is not None:
            after: WorkItem = got[0]
            if after.executions != before.executions - 1 or after.attempt != before.attempt:
                raise _fail(
                    f"release: {token.work_id} went from executions {before.executions}, "
                    f"attempt {before.attempt} to {after.executions}, {after.attempt}"
                )

    @precondition(lambda self: self._claimed())
    @rule(
        data=st.data(),
        how=st.sampled_from(["complete", "fail", "complete_many", "complete_many_quiet"]),
    )
    def stale_token_after_own_reclaim(self, data: st.DataObject, how: str) -> None:
        """The holder's lease runs out, it is swept, the same agent claims the item again,
        and then reports with its first claim's token: the two tokens differ only in the
        attempt, so a store that forgets to compare it is caught here at once."""
        item = _pick(data, self._claimed(), "claimed")
        agent_id = item.claimed_by
        assert agent_id is not None and item.lease_expires_at is not None
        self.now = max(self.now, item.lease_expires_at)
        self.sweep(1000)
        after = self.model.get(item.id)
        if after is None or after.status is not WorkStatus.PENDING:
            return  # the budget was spent: nothing to claim again
        if after.not_before is not None:
            self.now = max(self.now, after.not_before)
        got, _ = self._both(
            "claim",
            functools.partial(self.store.claim, item.id, agent_id, self.now),
            functools.partial(self.model.claim, item.id, agent_id, self.now),
        )
        if got[1] is not None:
            return  # the agent may no longer claim it (relabelled, draining)
        self._check_claimed([got[0]], agent_id)
        stale = item.token
        if how in ("complete_many", "complete_many_quiet"):
            batch = [Completion(stale, agent_id, "late")]
            quiet = how == "complete_many_quiet"
            before = self._snapshot_item(item.id)
            got, _ = self._both(
                how,
                functools.partial(
                    self.store.complete_many_quiet if quiet else self.store.complete_many,
                    batch,
                    self.now,
                ),
                lambda: (
                    quiet_outcomes(self.model.complete_many(batch, self.now))
                    if quiet
                    else self.model.complete_many(batch, self.now)
                ),
            )
            if isinstance(got[0][0], LeaseLost) and self._snapshot_item(item.id) != before:
                raise _fail(f"invariant 3: {how} with stale {stale} changed the item")
            return
        report: tuple[Callable[[], Awaitable[Any]], Callable[[], Any]] = (
            functools.partial(self.store.complete, stale, agent_id, self.now, "late"),
            functools.partial(self.model.complete, stale, agent_id, self.now, "late"),
        )
        if how == "fail":
            failure = Failure.permanent("Late")
            report = (
                functools.partial(self.store.fail, stale, agent_id, self.now, failure),
                functools.partial(self.model.fail, stale, agent_id, self.now, failure),
            )
        self._holder_step(how, report[0], report[1], stale)

    def _claimed(self) -> list[WorkItem]:
        """The items the reference holds CLAIMED now."""
        return self.model.query(WorkQuery(status=WorkStatus.CLAIMED, limit=10_000))

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

    @rule(seconds=st.sampled_from([0, 1, 5, 30, 61, 120, 301, 700]), micros=wst.micro_offsets())
    def advance_time(self, seconds: int, micros: timedelta) -> None:
        self.now += timedelta(seconds=seconds) + micros

    @rule(limit=st.sampled_from([1, 2, 1000]))
    def sweep(self, limit: int) -> None:
        got, _ = self._both(
            "sweep",
            functools.partial(self.store.sweep, self.now, limit),
            functools.partial(self.model.sweep, self.now, limit),
        )
        self.touched.update(state.id for state in got[0])

    @rule(age=st.sampled_from([0, 60, 600]), limit=st.sampled_from([1, 2, 10_000]))
    def prune(self, age: int, limit: int) -> None:
        """Oldest first; a pruned item is gone whole: no record, no events, no lookup."""
        before = self.now - timedelta(seconds=age)
        logged = {r.id for r in self.model.query_log(LogQuery(limit=10_000))}
        self._both(
            "prune",
            functools.partial(self.store.prune, before, limit),
            functools.partial(self.model.prune, before, limit),
        )
        doomed = logged - {r.id for r in self.model.query_log(LogQuery(limit=10_000))}
        self.pruned |= doomed
        for work_id in sorted(doomed):
            left = self._call(self.store.events, work_id)
            if left:
                raise _fail(f"prune: {len(left)} events of pruned {work_id} are still stored")
            if self._snapshot_item(work_id) != (None, None):
                raise _fail(
                    f"prune: pruned {work_id} can still be read: {self._snapshot_item(work_id)}"
                )

    @precondition(lambda self: self.work_ids)
    @rule(data=st.data(), racer=st.sampled_from(["none", "heartbeat", "complete", "fail"]))
    def concurrent_sweeps(self, data: st.DataObject, racer: str) -> None:
        """Two sweeps at once, racing a holder's heartbeat, complete or fail.

        The store may split the expired leases between the sweeps any way it likes,
        but no lease may be swept twice, and the outcome must be that of the racer
        running wholly before, or wholly after, the sweeping. Time often jumps to a
        lease's expiry first, so there is something to sweep.
        """
        leases = [
            i.lease_expires_at
            for i in self.model.query(WorkQuery(status=WorkStatus.CLAIMED, limit=10_000))
            if i.lease_expires_at is not None and i.lease_expires_at > self.now
        ]
        jump: int = data.draw(st.integers(0, 3), label="jump to a lease expiry")
        expiry = _pick_or_none(data, sorted(leases), "now")
        if expiry is not None and jump:
            self.now = expiry
        ops: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[ReferenceStore], Any]]] = [
            (
                "sweep",
                functools.partial(self.store.sweep, self.now, 1000),
                lambda m: m.sweep(self.now, 1000),
            )
        ] * 2
        token: ClaimToken | None = None
        if racer != "none" and self.tokens:
            token, agent_id = self._token(data)
            retries = data.draw(LOCAL_RETRIES, label="local retries")
            if racer == "heartbeat":
                ops.append(
                    (
                        racer,
                        functools.partial(self.store.heartbeat, token, agent_id, self.now, retries),
                        lambda m: m.heartbeat(token, agent_id, self.now, retries),
                    )
                )
            elif racer == "complete":
                ops.append(
                    (
                        racer,
                        functools.partial(
                            self.store.complete, token, agent_id, self.now, "raced", retries
                        ),
                        lambda m: m.complete(token, agent_id, self.now, "raced", retries),
                    )
                )
            else:
                failure = data.draw(wst.failures(), label="failure")
                ops.append(
                    (
                        racer,
                        functools.partial(
                            self.store.fail, token, agent_id, self.now, failure, retries
                        ),
                        lambda m: m.fail(token, agent_id, self.now, failure, retries),
                    )
                )
        mark = self._mark()
        outcomes = self._run_at_once([on_store for _, on_store, _ in ops])
        swept: dict[UUID, Any] = {}
        for value, error in outcomes[:2]:
            if error is not None:
                raise _fail(f"concurrent sweeps: a sweep failed: {error!r}")
            for state in value:
                if state.id in swept:
                    raise _fail(f"concurrent sweeps: {state.id} was swept twice")
                swept[state.id] = _comparable(state)
        on_model = ops[2][2] if len(ops) == 3 else None
        tried: list[tuple[bool, Outcome | None, dict[UUID, Any]]] = []
        explained = self._explain_sweeps(on_model, outcomes, swept, tried)
        if explained is None and token is not None and token.work_id not in swept:
            # A sweep skips rows another transaction holds locked (SKIP LOCKED): a racer
            # that locked its item and then changed nothing (refused, as the serial
            # orders say) may leave that lease to the next sweep, and to no other.
            ((later, error),) = self._run_at_once(
                [functools.partial(self.store.sweep, self.now, 1000)]
            )
            if error is not None:
                raise _fail(f"concurrent sweeps: the sweep after them failed: {error!r}")
            for state in later:
                if state.id != token.work_id:
                    raise _fail(
                        f"concurrent sweeps: {state.id} was left to a later sweep, but only "
                        f"the racer's item {token.work_id} may be"
                    )
                swept[state.id] = _comparable(state)
            explained = self._explain_sweeps(on_model, outcomes, swept, tried)
            if explained is not None:
                event("concurrent sweeps: the racer's lease left to the next sweep")
        if explained is None:
            raise _fail(
                f"concurrent sweeps: no serial order explains the store's outcome: swept "
                f"{swept!r}, {racer} gave {outcomes[2:]!r}; serial orders (racer first?, "
                f"racer, swept) gave {tried!r}"
            )
        self.model = explained
        event(f"concurrent sweeps: swept {min(len(swept), 3)}{'+' if len(swept) >= 3 else ''}")
        retried = [state for state in swept.values() if isinstance(state, WorkItem)]
        retried += [
            value
            for value, _ in outcomes[2:]
            if isinstance(value, WorkItem) and value.status is WorkStatus.PENDING
        ]
        if retried:
            self._require_wake(mark, f"concurrent sweeps: {retried[0].id} went back to PENDING")
        self.touched.update(swept)
        if token is not None:
            self.touched.add(token.work_id)

    def _explain_sweeps(
        self,
        on_model: Callable[[ReferenceStore], Any] | None,
        outcomes: Sequence[Outcome],
        swept: dict[UUID, Any],
        tried: list[tuple[bool, Outcome | None, dict[UUID, Any]]],
    ) -> ReferenceStore | None:
        """The reference after the serial order that explains the store's outcome, if any."""
        for racer_first in (True, False) if on_model is not None else (True,):
            model, want_racer, want_swept = self._serially(on_model, racer_first)
            tried.append((racer_first, want_racer, want_swept))
            if want_swept == swept and (
                want_racer is None or self._same_outcome(outcomes[2], want_racer)
            ):
                event(f"concurrent sweeps: racer {'before' if racer_first else 'after'}")
                return model
        return None

    def _serially(
        self, racer: Callable[[ReferenceStore], Any] | None, racer_first: bool
    ) -> tuple[ReferenceStore, Outcome | None, dict[UUID, Any]]:
        """On a copy of the reference: the racer, then one full sweep (or the other way)."""
        model = copy.deepcopy(self.model, {id(self._wake_listener): self._wake_listener})
        want_racer: Outcome | None = None
        if racer is not None and racer_first:
            want_racer = self._outcome(functools.partial(racer, model))
        want_swept = {state.id: _comparable(state) for state in model.sweep(self.now, 1000)}
        if racer is not None and not racer_first:
            want_racer = self._outcome(functools.partial(racer, model))
        return model, want_racer, want_swept

    def _run_at_once(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Outcome]:
        """Start every call at once on the store; their outcomes, in order."""
        outcomes: list[Outcome] = [(None, None)] * len(calls)

        async def one(index: int) -> None:
            try:
                outcomes[index] = (await calls[index](), None)
            except WorkqueueError as error:
                outcomes[index] = (None, error)

        async def all_at_once() -> None:
            async with anyio.create_task_group() as tg:
                for index in range(len(calls)):
                    tg.start_soon(one, index)

        self.portal.call(all_at_once)
        return outcomes

    @staticmethod
    def _outcome(call: Callable[[], Any]) -> Outcome:
        try:
            return (call(), None)
        except WorkqueueError as error:
            return (None, error)

    @staticmethod
    def _same_outcome(got: Outcome, want: Outcome) -> bool:
        if got[1] is not None or want[1] is not None:
            return type(got[1]) is type(want[1])
        return bool(_comparable(got[0]) == _comparable(want[0]))

    # --- completion callbacks -------------------------------------------------------------

    def _pending_callbacks(self) -> list[ExecutionRecord]:
        """Every record of the reference whose callback delivery is pending, due or not."""
        return self.model.callbacks_due(self.now + FAR_FUTURE, 10_000)

    @rule(
        limit=st.sampled_from([1, 2, 100]),
        lease=st.sampled_from(
            [None, None, timedelta(seconds=30), timedelta(seconds=301, microseconds=7)]
        ),
        later=st.sampled_from([timedelta(0), timedelta(0), FAR_FUTURE]),
    )
    def callbacks_due(self, limit: int, lease: timedelta | None, later: timedelta) -> None:
        """Due callbacks (now, or all pending ones far ahead), taken under a lease or not."""
        when = self.now + later
        if lease is not None:
            when = self.now  # taking one far ahead would hide it for the rest of the run
        self._both(
            "callbacks_due",
            functools.partial(self.store.callbacks_due, when, limit, lease),
            functools.partial(self.model.callbacks_due, when, limit, lease),
        )

    @precondition(lambda self: self.work_ids)
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["delivered", "failed", "failed", "abandoned"]),
        delay=st.sampled_from([0, 10, 300]),
        micros=wst.micro_offsets(),
    )
    def record_callback(
        self, data: st.DataObject, outcome: str, delay: int, micros: timedelta
    ) -> None:
        """A delivery attempt: delivered, failed (retry later) or abandoned.

        Mostly on a record whose delivery is pending; sometimes on any item (queued,
        delivered, abandoned, without a URL) or an unknown one, which is refused.
        """
        pending = [r.id for r in self._pending_callbacks()]
        # Every draw is made whatever the state offers (see ``_pick_or_none``).
        prefer_pending = data.draw(st.integers(0, 3), label="a pending one") > 0
        pending_one = _pick_or_none(data, pending, "pending")
        unknown = data.draw(st.integers(0, 9), label="unknown") == 0
        any_one = self._work(data)
        if prefer_pending and pending_one is not None:
            work_id = pending_one
        else:
            work_id = UNKNOWN if unknown else any_one
        detail = data.draw(wst.payloads(["callback failed: HTTP 500"], 300), label="detail")
        retry_at = self.now + timedelta(seconds=delay) + micros if outcome == "failed" else None
        delivered = outcome == "delivered"
        # As taken: mostly the record's own finished_at; sometimes none, or another
        # record's (a delivery posted before a requeue and a new end), refused.
        record = self.model.get_record(work_id) if work_id != UNKNOWN else None
        taken = data.draw(st.integers(0, 9), label="finished_at as taken")
        finished_at = None
        if record is not None and taken > 0:
            finished_at = record.finished_at
            if taken == 1:
                finished_at -= timedelta(microseconds=1)
        self._both(
            "record_callback",
            functools.partial(
                self.store.record_callback,
                work_id,
                self.now,
                delivered=delivered,
                detail=detail,
                retry_at=retry_at,
                finished_at=finished_at,
            ),
            functools.partial(
                self.model.record_callback,
                work_id,
                self.now,
                delivered=delivered,
                detail=detail,
                retry_at=retry_at,
                finished_at=finished_at,
            ),
        )
        if work_id != UNKNOWN:
            self.touched.add(work_id)
        # What is due right after the attempt (read only, no lease): a retry time that
        # is not honoured, or a delivery that does not end, shows at once.
        self._both(
            "callbacks_due after record_callback",
            functools.partial(self.store.callbacks_due, self.now, 100),
            functools.partial(self.model.callbacks_due, self.now, 100),
        )

    @rule(limit=st.sampled_from([1, 2, 100]))
    def concurrent_callbacks_due(self, limit: int) -> None:
        """Two brokers take due callbacks at once under a lease: no record goes to both."""
        lease = timedelta(seconds=60)
        due = [r.id for r in self.model.callbacks_due(self.now, 10_000)]
        outcomes = self._run_at_once(
            [functools.partial(self.store.callbacks_due, self.now, limit, lease)] * 2
        )
        taken: list[list[UUID]] = []
        for value, error in outcomes:
            if error is not None:
                raise _fail(f"concurrent callbacks_due: one failed: {error!r}")
            taken.append([r.id for r in value])
        first, second = taken
        if set(first) & set(second) or len(first) > limit or len(second) > limit:
            raise _fail(f"concurrent callbacks_due: both took {sorted(set(first) & set(second))}")
        want = due[: 2 * limit]
        if sorted(first + second) != sorted(want):
            raise _fail(
                f"concurrent callbacks_due: took {first} and {second}, the due ones are {due}"
            )
        self.model.callbacks_due(self.now, 2 * limit, lease)
        event(f"concurrent callbacks_due: {min(len(want), 3)} taken")

    # --- observations ---------------------------------------------------------------------

    @rule(
        data=st.data(),
        what=st.sampled_from(["lookups", "query", "query_log", "stats", "agents", "token"]),
    )
    def observe(self, data: st.DataObject, what: str) -> None:
        """A read compared with the reference: lookups, paged queries, stats or agents."""
        event(f"observe: {what}")
        if what == "lookups":
            for work_id in [*self.work_ids, UNKNOWN]:
                got = self._snapshot_item(work_id)
                want = (self.model.get(work_id), _comparable(self.model.get_record(work_id)))
                if got != want:
                    raise _fail(
                        f"get/get_record({work_id}): the store gave {got!r}, the reference {want!r}"
                    )
        elif what == "query":
            self._compare_pages(
                "query",
                data.draw(self._work_queries(), label="query"),
                self.store.query,
                self.model.query,
                lambda i: Cursor(i.created_at, i.id),
            )
        elif what == "query_log":
            self._compare_pages(
                "query_log",
                data.draw(self._log_queries(), label="query"),
                self.store.query_log,
                self.model.query_log,
                lambda r: Cursor(r.finished_at, r.id),
            )
        elif what == "stats":
            self._both("stats", self.store.stats, self.model.stats)
        elif what == "agents":
            status = data.draw(st.none() | st.sampled_from(list(AgentStatus)), label="status")
            self._both(
                "list_agents",
                functools.partial(self.store.list_agents, status),
                functools.partial(self.model.list_agents, status),
            )
            agent_id = self._agent(data) if data.draw(st.integers(0, 4)) else UNKNOWN
            self._both(
                "get_agent",
                functools.partial(self.store.get_agent, agent_id),
                functools.partial(self.model.get_agent, agent_id),
            )
        else:
            agent_id = self._agent(data)
            generation = data.draw(st.sampled_from([0, self._rotations, 10**6]), label="gen")
            token_hash = wst.token_hash_for(agent_id, generation)
            self._both(
                "agent_by_token_hash",
                functools.partial(self.store.agent_by_token_hash, token_hash),
                functools.partial(self.model.agent_by_token_hash, token_hash),
            )

    def _cursors(self) -> st.SearchStrategy[Cursor | None]:
        """No cursor, or one at (or a microsecond either side of) a row's key."""
        keys = [Cursor(i.created_at, i.id) for i in self.model.query(WorkQuery(limit=10_000))]
        keys += [Cursor(r.finished_at, r.id) for r in self.model.query_log(LogQuery(limit=10_000))]
        keys.append(Cursor(self.now, UUID(int=0)))
        shift = st.sampled_from([timedelta(0), timedelta(0), timedelta(microseconds=1)])
        return st.none() | st.builds(
            lambda c, d, later: Cursor(c.at + d if later else c.at - d, c.id),
            _sampled(keys),
            shift,
            st.booleans(),
        )

    def _filters(self) -> dict[str, st.SearchStrategy[Any]]:
        return {
            "work_type": st.none() | st.sampled_from([*wst.WORK_TYPES, "other"]),
            "claimed_by": st.none() | _sampled([*self.agent_ids, UNKNOWN]),
            "limit": st.integers(1, 5),
            "after": self._cursors(),
        }

    def _work_queries(self) -> st.SearchStrategy[WorkQuery]:
        status = st.none() | st.sampled_from(list(WorkStatus))
        return st.builds(WorkQuery, status=status, **self._filters())

    def _log_queries(self) -> st.SearchStrategy[LogQuery]:
        status = st.none() | st.sampled_from(list(WorkStatus))
        return st.builds(LogQuery, status=status, **self._filters())

    def _compare_pages(
        self,
        op: str,
        query: Any,
        on_store: Callable[[Any], Awaitable[list[Any]]],
        on_model: Callable[[Any], list[Any]],
        key: Callable[[Any], Cursor],
    ) -> None:
        """Page through both with the cursor; every page must be the reference's."""
        for page in range(MAX_ITEMS + 2):
            try:
                got = self._call(on_store, query)
            except WorkqueueError as error:
                raise _fail(f"{op}({query!r}) failed: {error!r}") from error
            want = on_model(query)
            if _comparable(got) != _comparable(want):
                raise _fail(
                    f"{op} page {page} of {query!r}:\n store     {got!r}\n reference {want!r}"
                )
            if len(want) < query.limit:
                return
            query = attrs.evolve(query, after=key(want[-1]))

    # --- invariants --------------------------------------------------------------------

    def _snapshot_item(self, work_id: UUID) -> tuple[Any, Any]:
        return (
            self._call(self.store.get, work_id),
            _comparable(self._call(self.store.get_record, work_id)),
        )

    def _read_all(
        self,
        first: Any,
        read: Callable[[Any], Awaitable[list[T]]],
        key: Callable[[T], Cursor],
        what: str,
    ) -> list[T]:
        """Every row, ``PAGE`` at a time; refuses a page that does not move past the cursor."""
        rows: list[T] = []
        query = first
        for _ in range(MAX_ITEMS * 4):
            page = self._call(read, query)
            rows.extend(page)
            if len(page) < PAGE:
                return rows
            cursor = key(page[-1])
            keys = [key(row) for row in page]
            if (
                query.after is not None
                and (keys[0].at, keys[0].id) <= (query.after.at, query.after.id)
            ) or any((a.at, a.id) >= (b.at, b.id) for a, b in itertools.pairwise(keys)):
                raise _fail(f"{what}: a page is not ordered after its cursor: {page!r}")
            query = attrs.evolve(query, after=cursor)
        raise _fail(f"{what}: paging never ended")

    def _all_queued(self) -> list[WorkItem]:
        return self._read_all(
            WorkQuery(limit=PAGE), self.store.query, lambda i: Cursor(i.created_at, i.id), "query"
        )

    def _all_logged(self) -> list[ExecutionRecord]:
        return self._read_all(
            LogQuery(limit=PAGE),
            self.store.query_log,
            lambda r: Cursor(r.finished_at, r.id),
            "query_log",
        )

    @invariant()
    def store_agrees_with_reference(self) -> None:
        """The whole queue and log equal the reference's; invariants 1, 2 and 6 on them."""
        queued_rows = self._all_queued()
        logged_rows = self._all_logged()
        want_queued = self.model.query(WorkQuery(limit=10_000))
        want_logged = self.model.query_log(LogQuery(limit=10_000))
        if queued_rows != want_queued:
            raise _fail(f"queue differs:\n store     {queued_rows!r}\n reference {want_queued!r}")
        if _comparable(logged_rows) != _comparable(want_logged):
            raise _fail(f"log differs:\n store     {logged_rows!r}\n reference {want_logged!r}")
        self._nothing_lost_nothing_twice(queued_rows, logged_rows)

    def _nothing_lost_nothing_twice(
        self, queued_rows: list[WorkItem], logged_rows: list[ExecutionRecord]
    ) -> None:
        """Invariant 2 (and 1, 6): every live item is in exactly one of queue or log."""
        queued = {i.id: i for i in queued_rows}
        logged = {r.id: r for r in logged_rows}
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
            queued = self._call(self.store.get, work_id)
            logged = self._call(self.store.get_record, work_id)
            want = (self.model.get(work_id), _comparable(self.model.get_record(work_id)))
            if (queued, _comparable(logged)) != want:
                raise _fail(
                    f"get/get_record({work_id}): the store gave {(queued, logged)!r}, "
                    f"the reference {want!r}"
                )
            current = queued or logged
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
