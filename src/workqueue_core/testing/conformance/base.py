"""The machine's state and plumbing: both sides, one step at a time.

``MachineBase`` holds the store under test, the reference (``ReferenceStore``) and
what the run has made (agents, items, tokens); ``_both`` runs one operation on both
sides and requires the same outcome. The rules, grouped by subject, are mixins
on it (``agents``, ``admin``, ``claims``, ``holders``, ``maintenance``,
``callbacks``, ``observations``) and the checks after each step are in
``invariants``; ``machine`` puts them together.

Races (``concurrent_claims``, ``concurrent_sweeps``, ``concurrent_callbacks_due``)
run on the real store and the machine adopts whatever outcome the store produced,
so after one the reference's state (who holds what, what was swept, hence what
is CLAIMED, logged or pruned) may differ between a run and Hypothesis's replay of
the same choices. The machine's *choices* must therefore never depend on it:

* preconditions read only state that no race changes: ``agent_ids``,
  ``work_ids`` being non-empty, ``submits``, and ``tokens`` being non-empty (a race
  of claims succeeds at least once in any order, or else changes nothing);
* every draw has the same shape whatever the state offers: an index with fixed
  bounds resolved modulo the list (``pick``, ``pick_or_none``, ``sampled``), and
  no draw made or skipped because of race-dependent state;
* an outcome is adopted in a canonical order (e.g. the racers' drawn order, not
  the order they finished in).

Otherwise Hypothesis sees other rules enabled, or other draws, for the same
prefix and raises ``FlakyStrategyDefinition`` instead of passing or shrinking a
bug (see docs/testing.md).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

import anyio
import attrs
from anyio.from_thread import start_blocking_portal
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import (
    ClaimToken,
    Event,
    ExecutionRecord,
    Stats,
    SubmitResult,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
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


def mismatch(message: str) -> ConformanceError:
    """The error to raise when the store is caught: ``raise mismatch("invariant 3: …")``."""
    return ConformanceError(message)


def pick_or_none(data: st.DataObject, choices: Sequence[T], label: str) -> T | None:
    """Like ``pick``, but None when there is nothing to choose; draws the same either way,
    so whether the store's state offers a choice does not change what is drawn."""
    index = data.draw(st.integers(0, 2**16), label=label)
    return choices[index % len(choices)] if choices else None


def sampled(choices: Sequence[T]) -> st.SearchStrategy[T]:
    """``sampled_from`` with fixed bounds, for non-empty lists that come from the state."""
    chosen = list(choices)
    return st.integers(0, 2**16).map(lambda i: chosen[i % len(chosen)])


def pick(data: st.DataObject, choices: Sequence[T], label: str) -> T:
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


def comparable(value: Any) -> Any:
    """What must be equal between the store and the reference."""
    if isinstance(value, ExecutionRecord):
        return ("record", value.item, value.finished_at, value.finished_by, value.result)
    if isinstance(value, SubmitResult):
        return ("submitted", comparable(value.item), value.created)
    if isinstance(value, Event):
        return attrs.evolve(value, seq=0, detail="")
    if isinstance(value, list | tuple):
        return [comparable(v) for v in value]
    if isinstance(value, Stats):
        return ("stats", {key: n for key, n in value.counts.items() if n})
    if isinstance(value, WorkqueueError):
        return type(value)
    return value


class MachineBase(RuleBasedStateMachine):
    """Drives a store and the reference side by side; the rules are in the mixins."""

    store_factory: StoreFactory

    def __init__(self) -> None:
        super().__init__()
        self._stack = ExitStack()
        self.portal = self._stack.enter_context(start_blocking_portal())
        self._loop: asyncio.AbstractEventLoop = self.portal.call(asyncio.get_running_loop)
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
        self.submits = 0
        """Submits made (created or not): what enables ``submit``, unlike ``work_ids``."""
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
        result: T = self._on_loop(functools.partial(fn, *args, **kwargs))
        return result

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` run (and awaited, if it returns an awaitable) on the portal's
        event loop, as ``self.portal.call`` would; its result or its exception.

        The loop keeps running in the portal's thread between calls, as before; only
        the hand-over is leaner (``run_coroutine_threadsafe`` rather than a task the
        portal spawns in its task group): a few times cheaper per call on a busy
        machine, and the suite makes some 250 calls per example.
        """

        async def run() -> Any:
            value = fn(*args)
            return await value if inspect.isawaitable(value) else value

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def _reference_woke(self) -> None:
        self._woken = True

    def _mark(self) -> int | None:
        """The store's notifier position now (None when it has no notifier)."""
        return None if self.notifier is None else self._on_loop(self.notifier.mark)

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
            got: Outcome = (self._on_loop(on_store), None)
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
            raise mismatch(
                f"{op}: the store gave {got[1]!r} / {got[0]!r}, "
                f"the reference {want[1]!r} / {want[0]!r}"
            )
        if got[1] is None and comparable(got[0]) != comparable(want[0]):
            raise mismatch(f"{op}: the store returned {got[0]!r}, the reference {want[0]!r}")
        if self._woken:
            self._require_wake(mark, f"{op}: the reference wakes waiting claimers here")
        return got, want

    def _require_wake(self, mark: int | None, why: str) -> None:
        """The store's notifier, if any, woke after ``mark`` (or within ``WAKE_TIMEOUT``)."""
        notifier = self.notifier
        if notifier is not None and not self._on_loop(notifier.wait, WAKE_TIMEOUT, mark):
            raise mismatch(f"{why}, but the store's notifier did not wake within {WAKE_TIMEOUT} s")

    def _agent(self, data: st.DataObject) -> UUID:
        return pick(data, self.agent_ids, "agent")

    def _work(self, data: st.DataObject, status: WorkStatus | None = None) -> UUID:
        """Any item; with ``status``, mostly one the reference has in that status."""
        if status is not None and data.draw(st.integers(0, 3), label="biased") > 0:
            candidates = [i.id for i in self.model.query(WorkQuery(status=status, limit=10_000))]
            if candidates:
                return pick(data, candidates, "work")
        return pick(data, self.work_ids, "work")

    def _token(self, data: st.DataObject) -> tuple[ClaimToken, UUID]:
        """Mostly a token of a claim held now, otherwise any token ever issued (often stale)."""
        held = [
            (i.token, i.claimed_by)
            for i in self.model.query(WorkQuery(status=WorkStatus.CLAIMED, limit=10_000))
            if i.claimed_by is not None
        ]
        use_held = data.draw(st.integers(0, 2), label="held") > 0
        pool = held if held and use_held else self.tokens
        token, holder = pick(data, pool, "token")
        if data.draw(st.integers(0, 9), label="other agent") == 0:
            holder = self._agent(data)
        return token, holder

    def _check_claimed(self, items: Sequence[WorkItem], agent_id: UUID) -> None:
        """Invariants 5 and 7 at claim time, from the agent's state before the claim."""
        agent = self.model.get_agent(agent_id)
        assert agent is not None
        for item in items:
            if not agent.eligible_for(item.targeting):
                raise mismatch(f"invariant 5: {agent_id} claimed {item.id} without being eligible")
            if item.not_before is not None and item.not_before > self.now:
                raise mismatch(f"invariant 7: {item.id} claimed before its not_before")
            self.tokens.append((item.token, agent_id))
            self.touched.add(item.id)

    def _snapshot_item(self, work_id: UUID) -> tuple[Any, Any]:
        return (
            self._call(self.store.get, work_id),
            comparable(self._call(self.store.get_record, work_id)),
        )

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

        self._on_loop(all_at_once)
        return outcomes

    def _sweep(self, limit: int) -> None:
        """One sweep on both sides (the ``sweep`` rule, and a step of other rules)."""
        got, _ = self._both(
            "sweep",
            functools.partial(self.store.sweep, self.now, limit),
            functools.partial(self.model.sweep, self.now, limit),
        )
        self.touched.update(state.id for state in got[0])
