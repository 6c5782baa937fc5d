"""Rules of completion callbacks: due deliveries (leased or not, raced) and their outcomes."""

from __future__ import annotations

import functools
from datetime import timedelta
from uuid import UUID

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from workqueue_core.domain.models import ExecutionRecord
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.conformance.base import (
    FAR_FUTURE,
    UNKNOWN,
    MachineBase,
    mismatch,
    pick_or_none,
)


class CallbackRules(MachineBase):
    """Callback deliveries taken and recorded."""

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
        pending_one = pick_or_none(data, pending, "pending")
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
                raise mismatch(f"concurrent callbacks_due: one failed: {error!r}")
            taken.append([r.id for r in value])
        first, second = taken
        if set(first) & set(second) or len(first) > limit or len(second) > limit:
            raise mismatch(
                f"concurrent callbacks_due: both took {sorted(set(first) & set(second))}"
            )
        want = due[: 2 * limit]
        if sorted(first + second) != sorted(want):
            raise mismatch(
                f"concurrent callbacks_due: took {first} and {second}, the due ones are {due}"
            )
        self.model.callbacks_due(self.now, 2 * limit, lease)
        event(f"concurrent callbacks_due: {min(len(want), 3)} taken")
