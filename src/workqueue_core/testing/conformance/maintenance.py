"""Rules of time and maintenance: the clock, sweeps (also racing a holder), pruning."""

from __future__ import annotations

import copy
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import ClaimToken, LogQuery, WorkItem, WorkQuery, WorkStatus
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.conformance.base import (
    LOCAL_RETRIES,
    MachineBase,
    Outcome,
    comparable,
    mismatch,
    pick_or_none,
)


class MaintenanceRules(MachineBase):
    """Time passes, leases are swept, old records pruned."""

    @rule(seconds=st.sampled_from([0, 1, 5, 30, 61, 120, 301, 700]), micros=wst.micro_offsets())
    def advance_time(self, seconds: int, micros: timedelta) -> None:
        self.now += timedelta(seconds=seconds) + micros

    @rule(limit=st.sampled_from([1, 2, 1000]))
    def sweep(self, limit: int) -> None:
        self._sweep(limit)

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
                raise mismatch(f"prune: {len(left)} events of pruned {work_id} are still stored")
            if self._snapshot_item(work_id) != (None, None):
                raise mismatch(
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
        expiry = pick_or_none(data, sorted(leases), "now")
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
                raise mismatch(f"concurrent sweeps: a sweep failed: {error!r}")
            for state in value:
                if state.id in swept:
                    raise mismatch(f"concurrent sweeps: {state.id} was swept twice")
                swept[state.id] = comparable(state)
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
                raise mismatch(f"concurrent sweeps: the sweep after them failed: {error!r}")
            for state in later:
                if state.id != token.work_id:
                    raise mismatch(
                        f"concurrent sweeps: {state.id} was left to a later sweep, but only "
                        f"the racer's item {token.work_id} may be"
                    )
                swept[state.id] = comparable(state)
            explained = self._explain_sweeps(on_model, outcomes, swept, tried)
            if explained is not None:
                event("concurrent sweeps: the racer's lease left to the next sweep")
        if explained is None:
            raise mismatch(
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
        want_swept = {state.id: comparable(state) for state in model.sweep(self.now, 1000)}
        if racer is not None and not racer_first:
            want_racer = self._outcome(functools.partial(racer, model))
        return model, want_racer, want_swept

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
        return bool(comparable(got[0]) == comparable(want[0]))
