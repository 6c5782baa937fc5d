"""Rules of claim holders: heartbeat, complete (one, many, quiet), fail, release, stale tokens."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from workqueue_core.domain.errors import LeaseLost, WorkqueueError
from workqueue_core.domain.models import (
    ClaimToken,
    Completion,
    Failure,
    WorkItem,
    WorkQuery,
    WorkStatus,
    quiet_outcomes,
)
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.conformance.base import (
    LOCAL_RETRIES,
    MachineBase,
    Outcome,
    comparable,
    mismatch,
    pick,
    pick_or_none,
)


class HolderRules(MachineBase):
    """Steps by claim holders; invariant 3: a refused stale token changes nothing."""

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
            if comparable(again) != comparable(got[0]):
                raise mismatch(f"invariant 4: repeated complete gave {again!r}, first {got[0]!r}")

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
                entry = pick(data, batch, "repeated")
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
                raise mismatch(
                    f"invariant 3: complete_many with stale {completion.token} changed it"
                )
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
                raise mismatch(
                    f"release: {token.work_id} went from executions {before.executions}, "
                    f"attempt {before.attempt} to {after.executions}, {after.attempt}"
                )

    @precondition(lambda self: self.tokens)
    @rule(
        data=st.data(),
        how=st.sampled_from(["complete", "fail", "complete_many", "complete_many_quiet"]),
    )
    def stale_token_after_own_reclaim(self, data: st.DataObject, how: str) -> None:
        """The holder's lease runs out, it is swept, the same agent claims the item again,
        and then reports with its first claim's token: the two tokens differ only in the
        attempt, so a store that forgets to compare it is caught here at once.

        When no claim is held (whether one is can depend on how a race came out, so
        it may not enable the rule), an agent claims the next item first.
        """
        item = pick_or_none(data, self._claimed(), "claimed")
        claimer = self._agent(data)
        if item is None:
            got, _ = self._both(
                "claim_next",
                functools.partial(self.store.claim_next, claimer, self.now, None, 1),
                functools.partial(self.model.claim_next, claimer, self.now, None, 1),
            )
            if got[1] is not None or not got[0]:
                return  # nothing the agent may claim
            self._check_claimed(got[0], claimer)
            (item,) = got[0]
        agent_id = item.claimed_by
        assert agent_id is not None and item.lease_expires_at is not None
        self.now = max(self.now, item.lease_expires_at)
        self._sweep(1000)
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
                raise mismatch(f"invariant 3: {how} with stale {stale} changed the item")
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
            raise mismatch(f"invariant 3: {op} with stale token {token} changed the item")
        return got
