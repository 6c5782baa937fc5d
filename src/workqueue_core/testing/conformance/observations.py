"""Rules that read: lookups, paged queries, stats, agent listings, token lookups."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import attrs
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import rule

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import AgentStatus, Cursor, LogQuery, WorkQuery, WorkStatus
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.conformance.base import (
    MAX_ITEMS,
    UNKNOWN,
    MachineBase,
    comparable,
    mismatch,
    sampled,
)


class ObservationRules(MachineBase):
    """Reads compared with the reference."""

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
                want = (self.model.get(work_id), comparable(self.model.get_record(work_id)))
                if got != want:
                    raise mismatch(
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
            sampled(keys),
            shift,
            st.booleans(),
        )

    def _filters(self) -> dict[str, st.SearchStrategy[Any]]:
        return {
            "work_type": st.none() | st.sampled_from([*wst.WORK_TYPES, "other"]),
            "claimed_by": st.none() | sampled([*self.agent_ids, UNKNOWN]),
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
                raise mismatch(f"{op}({query!r}) failed: {error!r}") from error
            want = on_model(query)
            if comparable(got) != comparable(want):
                raise mismatch(
                    f"{op} page {page} of {query!r}:\n store     {got!r}\n reference {want!r}"
                )
            if len(want) < query.limit:
                return
            query = attrs.evolve(query, after=key(want[-1]))
