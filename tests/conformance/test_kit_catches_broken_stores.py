"""The conformance kit can fail: each deliberately broken store is caught.

Each broken store is the reference with one rule removed. The suite must report a
ConformanceError for it; a kit that passed them would prove nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio
import anyio.lowlevel
import attrs
import pytest

from kit_support import factory_for, run_until_caught
from workqueue_core.domain import transitions
from workqueue_core.domain.errors import BudgetSpent, WorkqueueError
from workqueue_core.domain.models import (
    ClaimToken,
    Completion,
    Event,
    ExecutionRecord,
    Stats,
    SubmitResult,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.service.notifier import InProcessNotifier
from workqueue_memory import MemoryStore


class SecondClaimState(ReferenceStore):
    """Lets a second agent claim an item that is already CLAIMED."""

    def _check_claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        item = self._queue.get(work_id)
        if item is not None and item.status is WorkStatus.CLAIMED:
            self._queue[work_id] = attrs.evolve(item, status=WorkStatus.PENDING)
        return super()._check_claim(work_id, agent_id, now)


class IgnoresNotBeforeState(ReferenceStore):
    """Claims retried items before their ``not_before``."""

    def _without_not_before(self) -> dict[UUID, datetime]:
        saved = {}
        for work_id, item in self._queue.items():
            if item.status is WorkStatus.PENDING and item.not_before is not None:
                saved[work_id] = item.not_before
                self._queue[work_id] = attrs.evolve(item, not_before=None)
        return saved

    def _restore(self, saved: dict[UUID, datetime]) -> None:
        for work_id, not_before in saved.items():
            if work_id in self._queue:
                self._queue[work_id] = attrs.evolve(self._queue[work_id], not_before=not_before)

    def claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        saved = self._without_not_before()
        try:
            super().claim(work_id, agent_id, now)
        finally:
            self._restore(saved)
        return self._queue[work_id]

    def claim_next(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
    ) -> list[WorkItem]:
        saved = self._without_not_before()
        try:
            claimed = super().claim_next(agent_id, now, work_types, limit)
        finally:
            self._restore(saved)
        return [self._queue[i.id] for i in claimed]


class AcceptsStaleTokenState(ReferenceStore):
    """Accepts a token from an earlier claim as long as the item is claimed again."""

    def _check_token(self, token: ClaimToken, agent_id: UUID) -> WorkItem:
        item = self._queue.get(token.work_id)
        if item is not None and item.status is WorkStatus.CLAIMED:
            return transitions.check_token(
                item, None, ClaimToken(token.work_id, item.attempt), item.claimed_by or agent_id
            )
        return super()._check_token(token, agent_id)


class AcceptsOwnStaleCompletionState(ReferenceStore):
    """Completes with a stale token when the same agent holds the item's current claim.

    The bug of a completion that matches id and holder but forgets the attempt: only
    completion is affected, and only when the agent re-claimed the item itself.
    """

    def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        item = self._queue.get(token.work_id)
        if item is not None and item.status is WorkStatus.CLAIMED and item.claimed_by == agent_id:
            token = ClaimToken(token.work_id, item.attempt)
        return super().complete(token, agent_id, now, result, local_retries)


class LosesCancelledState(ReferenceStore):
    """Drops a cancelled item instead of moving it to the log."""

    def cancel(self, work_id: UUID, actor: str, now: datetime, reason: str = "") -> ExecutionRecord:
        record = super().cancel(work_id, actor, now, reason)
        del self._log[work_id]
        return record


class ChargesReleaseState(ReferenceStore):
    """Charges a graceful release to the budget, as a retryable failure would."""

    def _release(
        self, item: WorkItem, agent_id: UUID, now: datetime, reason: str
    ) -> tuple[WorkItem, Event]:
        after, event = super()._release(item, agent_id, now, reason)
        charged = attrs.evolve(after, executions=item.executions)
        return charged, attrs.evolve(event, executions=item.executions)


class IgnoresCursorState(ReferenceStore):
    """Keyset pagination forgotten: every page starts from the first row."""

    def query(self, query: WorkQuery) -> list[WorkItem]:
        return super().query(attrs.evolve(query, after=None))


class PruneKeepsEventsState(ReferenceStore):
    """Prunes log records but leaves their events behind."""

    def prune(self, before: datetime, limit: int = 10_000) -> int:
        saved = {work_id: list(events) for work_id, events in self._events.items()}
        pruned = super().prune(before, limit)
        self._events = saved
        return pruned


def _second(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(microsecond=0)


class TruncatesMicrosecondsState(ReferenceStore):
    """Stores claim times in a column without fractional seconds."""

    def _apply(self, state: WorkItem | ExecutionRecord, event: Event | None) -> None:
        if isinstance(state, WorkItem):
            state = attrs.evolve(
                state,
                claimed_at=_second(state.claimed_at),
                lease_expires_at=_second(state.lease_expires_at),
            )
        super()._apply(state, event)


class EmptyTypesMeansAllState(ReferenceStore):
    """Treats ``work_types=[]`` like None (the ``if work_types:`` bug)."""

    def _eligible(
        self, agent: Any, now: datetime, work_types: Sequence[str] | None
    ) -> list[WorkItem]:
        return super()._eligible(agent, now, work_types or None)


class BatchTrustsTheTokenState(ReferenceStore):
    """A batch completion that checks tokens but not which agent presents them."""

    def complete_many(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[ExecutionRecord | WorkqueueError]:
        fixed = []
        for c in completions:
            item = self._queue.get(c.token.work_id)
            holder = item.claimed_by if item is not None else None
            fixed.append(attrs.evolve(c, agent_id=holder or c.agent_id))
        return super().complete_many(fixed, now)


class RefusesOverReportedCompletionState(ReferenceStore):
    """Refuses a complete that reports too many local retries (instead of clamping)."""

    def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        item = self._queue.get(token.work_id)
        if item is not None and item.attempt == token.attempt:
            extra = max(0, local_retries - item.local_retries)
            if item.executions + extra > item.max_executions:
                raise BudgetSpent(item.id, item.max_executions)
        return super().complete(token, agent_id, now, result, local_retries)


class StatsWithoutLogState(ReferenceStore):
    """Counts only the queue in stats."""

    def stats(self) -> Stats:
        counts = super().stats().counts
        return Stats({key: n for key, n in counts.items() if not key[1].is_terminal})


class GetFindsLoggedState(ReferenceStore):
    """``get`` also returns finished items (it should return only queued ones)."""

    def get(self, work_id: UUID) -> WorkItem | None:
        record = self._log.get(work_id)
        return record.item if record is not None else super().get(work_id)


class MangledTextState(ReferenceStore):
    """Doubles single quotes in specs (an escaping bug) and cuts them at 1 KiB."""

    def submit(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        return super().submit(
            attrs.evolve(item, spec=item.spec.replace("'", "''")[:1024]), actor, now
        )


class RacySweepStore(MemoryStore):
    """A sweep that reads expired leases, yields, then writes without re-checking them."""

    async def sweep(self, now: datetime, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        state = self.state
        expired = [i for i in state._queue.values() if transitions.lease_expired(i, now)]
        await anyio.lowlevel.checkpoint()
        results: list[WorkItem | ExecutionRecord] = []
        for item in sorted(expired, key=lambda i: (i.lease_expires_at, i.id))[:limit]:
            after, event = transitions.expire(item, now, 0.0)
            state._apply(after, event)
            results.append(after)
        return results


class QuietAlwaysDoneStore(MemoryStore):
    """Answers every entry of a quiet batch completion as completed, refused or not."""

    async def complete_many_quiet(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[WorkqueueError | None]:
        await super().complete_many_quiet(completions, now)
        return [None] * len(completions)


class _MutableNotifier(InProcessNotifier):
    muted = False

    def notify(self) -> None:
        if not self.muted:
            super().notify()


class QuietApprovalStore(MemoryStore):
    """Approves held items without waking the claimers waiting for work."""

    def __init__(self, *, state: ReferenceStore) -> None:
        self._quiet = _MutableNotifier()
        super().__init__(state=state, notifier=self._quiet)

    async def approve(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        self._quiet.muted = True
        try:
            return await super().approve(work_id, actor, now)
        finally:
            self._quiet.muted = False


@pytest.mark.parametrize(
    ("state_class", "symptom"),
    [
        (SecondClaimState, r"claim"),
        (IgnoresNotBeforeState, r"claim|invariant 7"),
        (AcceptsStaleTokenState, r"heartbeat|complete|fail|invariant 3"),
        (LosesCancelledState, r"invariant 2|log differs|cancel"),
        (ChargesReleaseState, r"release"),
        (IgnoresCursorState, r"query"),
        (PruneKeepsEventsState, r"prune: .* events of pruned"),
        (TruncatesMicrosecondsState, r"claim|queue differs"),
        (EmptyTypesMeansAllState, r"pending_for|claim_next"),
        (BatchTrustsTheTokenState, r"complete_many"),
        (RefusesOverReportedCompletionState, r"complete"),
        (StatsWithoutLogState, r"stats"),
        (GetFindsLoggedState, r"get/get_record"),
        (MangledTextState, r"submit"),
    ],
    ids=[
        "second-claim",
        "ignores-not-before",
        "accepts-stale-token",
        "loses-on-cancel",
        "charges-release",
        "ignores-cursor",
        "prune-keeps-events",
        "truncates-microseconds",
        "empty-types-means-all",
        "batch-trusts-the-token",
        "refuses-over-reported-completion",
        "stats-without-log",
        "get-finds-logged",
        "mangled-text",
    ],
)
def test_the_suite_catches_a_broken_store(state_class: type[ReferenceStore], symptom: str) -> None:
    run_until_caught(factory_for(state_class), symptom)


def test_the_suite_catches_a_stale_completion_by_the_same_agent_within_its_ci_budget() -> None:
    """200 examples of 50 steps is the CI profile every store runs."""
    run_until_caught(
        factory_for(AcceptsOwnStaleCompletionState), r"complete|invariant 3", examples=200
    )


def test_the_suite_catches_a_sweep_that_races_another() -> None:
    run_until_caught(
        factory_for(ReferenceStore, RacySweepStore), r"concurrent sweeps: .* swept twice"
    )


def test_the_suite_catches_an_approval_that_wakes_nobody() -> None:
    run_until_caught(
        factory_for(ReferenceStore, QuietApprovalStore),
        r"approve: the reference wakes waiting claimers here, but the store's notifier",
    )


def test_the_suite_catches_a_quiet_completion_that_hides_refusals() -> None:
    run_until_caught(factory_for(ReferenceStore, QuietAlwaysDoneStore), r"complete_many_quiet")
