"""Rules on claims: by id, the next in claim order, pending lists, and claims at once."""

from __future__ import annotations

import functools
from uuid import UUID

import anyio
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import WorkItem, WorkStatus
from workqueue_core.testing.conformance.base import TYPE_FILTERS, UNKNOWN, MachineBase, mismatch


class ClaimRules(MachineBase):
    """Claims; invariants 1, 5 and 7 at claim time."""

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

        self._on_loop(all_at_once)
        # Adopted in the drawn order of the agents, not the order their claims ended
        # in: ``tokens`` (what later rules draw from) is then the same on a replay
        # whose race ends alike, however the tasks were scheduled.
        claimed = [(agent_id, results[agent_id]) for agent_id in agents]
        seen: dict[UUID, UUID] = {}
        for agent_id, items in claimed:
            for item in items:
                if item.id in seen:
                    raise mismatch(
                        f"invariant 1: {item.id} claimed by both {seen[item.id]} and {agent_id}"
                    )
                seen[item.id] = agent_id
        # Replay the successful claims on the reference: each must be legal there.
        for agent_id, items in claimed:
            for item in items:
                try:
                    want = self.model.claim(item.id, agent_id, self.now)
                except WorkqueueError as error:
                    raise mismatch(
                        f"concurrent claim: the store let {agent_id} claim {item.id}, "
                        f"the reference refuses: {error}"
                    ) from error
                if want != item:
                    raise mismatch(f"concurrent claim: the store returned {item!r}, want {want!r}")
            self._check_claimed(items, agent_id)
