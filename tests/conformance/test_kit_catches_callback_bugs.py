"""The conformance kit catches stores that get completion-callback delivery wrong.

Each broken store is the reference with one callback rule removed; the suite must
report a ConformanceError for it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import anyio.lowlevel
import pytest

from kit_support import factory_for, run_until_caught
from workqueue_core.domain import callbacks
from workqueue_core.domain.models import Event, ExecutionRecord
from workqueue_core.reference.store import ReferenceStore
from workqueue_memory import MemoryStore


class IgnoresRetryAtState(ReferenceStore):
    """A failed delivery is due again at once, not at its ``retry_at``."""

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
        if retry_at is not None:
            retry_at = min(retry_at, now)
        return super().record_callback(
            work_id,
            now,
            delivered=delivered,
            detail=detail,
            retry_at=retry_at,
            finished_at=finished_at,
        )


class IgnoresLeaseState(ReferenceStore):
    """Hands out due callbacks without taking them under the lease."""

    def callbacks_due(
        self, now: datetime, limit: int = 100, lease: timedelta | None = None
    ) -> list[ExecutionRecord]:
        return super().callbacks_due(now, limit, None)


class NeverAbandonsState(ReferenceStore):
    """An abandoned delivery stays pending, due again at once."""

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
        if not delivered and retry_at is None:
            retry_at = now
        return super().record_callback(
            work_id,
            now,
            delivered=delivered,
            detail=detail,
            retry_at=retry_at,
            finished_at=finished_at,
        )


class NoCallbackForCancelState(ReferenceStore):
    """Forgets the delivery of cancelled items."""

    def cancel(self, work_id: UUID, actor: str, now: datetime, reason: str = "") -> ExecutionRecord:
        record = super().cancel(work_id, actor, now, reason)
        self._callbacks.pop(work_id, None)
        return record


class RacyCallbacksStore(MemoryStore):
    """Reads the due callbacks, yields, then leases them: two callers take the same ones."""

    async def callbacks_due(
        self, now: datetime, limit: int = 100, lease: timedelta | None = None
    ) -> list[ExecutionRecord]:
        due = self.state.callbacks_due(now, limit)
        await anyio.lowlevel.checkpoint()
        if lease is not None:
            for record in due:
                self.state._callbacks[record.id] = callbacks.leased_until(now, lease)
        return due


@pytest.mark.parametrize(
    ("state_class", "symptom"),
    [
        (IgnoresRetryAtState, r"callbacks_due"),
        (IgnoresLeaseState, r"callbacks_due"),
        (NeverAbandonsState, r"callbacks_due|record_callback"),
        (NoCallbackForCancelState, r"callbacks_due|record_callback"),
    ],
    ids=["ignores-retry-at", "ignores-lease", "never-abandons", "no-callback-for-cancel"],
)
def test_the_suite_catches_a_broken_callback_store(
    state_class: type[ReferenceStore], symptom: str
) -> None:
    # A callback bug shows only after an item ends with a URL and an attempt is made
    # or the clock passes a due time; allow more examples than for queue bugs (the
    # run stops at the first catch).
    run_until_caught(factory_for(state_class), symptom, examples=2000)


def test_the_suite_catches_callbacks_taken_twice() -> None:
    run_until_caught(
        factory_for(ReferenceStore, RacyCallbacksStore), r"concurrent callbacks_due: both took"
    )
