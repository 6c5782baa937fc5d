"""The checks after every step: the store equals the reference; invariants 1, 2, 6 and 9."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import attrs
from hypothesis.stateful import invariant

from workqueue_core.domain.models import (
    Cursor,
    ExecutionRecord,
    LogQuery,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.replay import ReplayError, agrees, replay
from workqueue_core.testing.conformance.base import (
    MAX_ITEMS,
    PAGE,
    MachineBase,
    T,
    comparable,
    mismatch,
)


class Invariants(MachineBase):
    """Checked after every step, from what the store returns through its port."""

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
                raise mismatch(f"{what}: a page is not ordered after its cursor: {page!r}")
            query = attrs.evolve(query, after=cursor)
        raise mismatch(f"{what}: paging never ended")

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
            raise mismatch(
                f"queue differs:\n store     {queued_rows!r}\n reference {want_queued!r}"
            )
        if comparable(logged_rows) != comparable(want_logged):
            raise mismatch(f"log differs:\n store     {logged_rows!r}\n reference {want_logged!r}")
        self._nothing_lost_nothing_twice(queued_rows, logged_rows)

    def _nothing_lost_nothing_twice(
        self, queued_rows: list[WorkItem], logged_rows: list[ExecutionRecord]
    ) -> None:
        """Invariant 2 (and 1, 6): every live item is in exactly one of queue or log."""
        queued = {i.id: i for i in queued_rows}
        logged = {r.id: r for r in logged_rows}
        both = queued.keys() & logged.keys()
        if both:
            raise mismatch(f"invariant 2: {sorted(both)} are in both the queue and the log")
        live = set(self.work_ids) - self.pruned
        if live != queued.keys() | logged.keys():
            missing = live - (queued.keys() | logged.keys())
            extra = (queued.keys() | logged.keys()) - live
            raise mismatch(f"invariant 2: lost {sorted(missing)}, unexpected {sorted(extra)}")
        for item in [*queued.values(), *(r.item for r in logged.values())]:
            if item.executions > item.max_executions:
                raise mismatch(f"invariant 6: {item.id} ran {item.executions} times")
            if item.status in (WorkStatus.CLAIMED,) and (
                item.claimed_by is None or item.lease_expires_at is None
            ):
                raise mismatch(f"invariant 1: claimed {item.id} has no holder or lease")
            if item.status.is_terminal != (item.id in logged):
                raise mismatch(f"invariant 2: {item.id} is {item.status} in the wrong table")

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
            want = (self.model.get(work_id), comparable(self.model.get_record(work_id)))
            if (queued, comparable(logged)) != want:
                raise mismatch(
                    f"get/get_record({work_id}): the store gave {(queued, logged)!r}, "
                    f"the reference {want!r}"
                )
            current = queued or logged
            if current is None:
                continue  # never created (idempotent resubmit) — checked elsewhere
            try:
                state = replay(events)
            except ReplayError as error:
                raise mismatch(f"invariant 9: timeline of {work_id} is broken: {error}") from error
            if not agrees(state, current):
                raise mismatch(
                    f"invariant 9: timeline of {work_id} replays to {state}, not {current}"
                )
            if comparable(events) != comparable(self.model.events(work_id)):
                raise mismatch(
                    f"timeline of {work_id} differs:\n store     {events!r}\n"
                    f" reference {self.model.events(work_id)!r}"
                )
