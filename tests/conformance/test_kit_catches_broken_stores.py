"""The conformance kit can fail: each deliberately broken store is caught.

Each broken store is the reference with one rule removed. The suite must report a
ConformanceError for it; a kit that passed them would prove nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from uuid import UUID

import attrs
import pytest
from hypothesis import Phase
from hypothesis.stateful import run_state_machine_as_test

from workqueue_core import transitions
from workqueue_core.models import ClaimToken, ExecutionRecord, WorkItem, WorkStatus
from workqueue_core.ports import Store
from workqueue_core.queue_state import QueueState
from workqueue_core.testing import ConformanceError, conformance_machine, conformance_settings
from workqueue_memory import MemoryStore


class SecondClaimState(QueueState):
    """Lets a second agent claim an item that is already CLAIMED."""

    def _check_claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        item = self._queue.get(work_id)
        if item is not None and item.status is WorkStatus.CLAIMED:
            self._queue[work_id] = attrs.evolve(item, status=WorkStatus.PENDING)
        return super()._check_claim(work_id, agent_id, now)


class IgnoresNotBeforeState(QueueState):
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


class AcceptsStaleTokenState(QueueState):
    """Accepts a token from an earlier claim as long as the item is claimed again."""

    def _check_token(self, token: ClaimToken, agent_id: UUID) -> WorkItem:
        item = self._queue.get(token.work_id)
        if item is not None and item.status is WorkStatus.CLAIMED:
            return transitions.check_token(
                item, None, ClaimToken(token.work_id, item.attempt), item.claimed_by or agent_id
            )
        return super()._check_token(token, agent_id)


class LosesCancelledState(QueueState):
    """Drops a cancelled item instead of moving it to the log."""

    def cancel(self, work_id: UUID, actor: str, now: datetime, reason: str = "") -> ExecutionRecord:
        record = super().cancel(work_id, actor, now, reason)
        del self._log[work_id]
        return record


def factory_for(state_class: type[QueueState]) -> Callable[[], object]:
    @asynccontextmanager
    async def fresh() -> AsyncIterator[Store]:
        yield MemoryStore(state=state_class(random_source=lambda: 0.0))

    return fresh


@pytest.mark.parametrize(
    ("state_class", "symptom"),
    [
        (SecondClaimState, r"claim"),
        (IgnoresNotBeforeState, r"claim|invariant 7"),
        (AcceptsStaleTokenState, r"heartbeat|complete|fail|invariant 3"),
        (LosesCancelledState, r"invariant 2|log differs|cancel"),
    ],
    ids=["second-claim", "ignores-not-before", "accepts-stale-token", "loses-on-cancel"],
)
def test_the_suite_catches_a_broken_store(state_class: type[QueueState], symptom: str) -> None:
    machine = conformance_machine(factory_for(state_class))  # type: ignore[arg-type]
    with pytest.raises(ConformanceError, match=symptom):
        run_state_machine_as_test(
            machine,
            settings=conformance_settings(
                300,
                50,
                phases=[Phase.generate],
                derandomize=True,
                database=None,
                print_blob=False,
            ),
        )
