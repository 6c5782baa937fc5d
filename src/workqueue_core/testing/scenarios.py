"""Load scenarios any store can be put through: many claimers draining one queue at once."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from uuid import UUID

import anyio
import attrs

from workqueue_core.domain.models import (
    Agent,
    Completion,
    Cursor,
    LogQuery,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.ports import Store
from workqueue_core.testing.clock import EPOCH, SequentialIds


@attrs.frozen
class DrainReport:
    """What a drain observed: who claimed what, and what the log holds afterwards."""

    claims: dict[UUID, UUID]
    double_claims: list[UUID]
    logged: int
    left_in_queue: int
    claims_per_claimer: dict[UUID, int]


async def drain_concurrently(
    store: Store,
    *,
    items: int = 500,
    claimers: int = 8,
    batch: int = 10,
    now: datetime = EPOCH,
    ids: SequentialIds | None = None,
) -> DrainReport:
    """Submit ``items`` items, then let ``claimers`` agents claim and complete them at once.

    Every item must be claimed exactly once and end in the log. The report says
    what happened; ``assert_clean_drain`` checks it.
    """
    new_id = ids or SequentialIds(base=10_000_000)
    agents = [
        Agent(id=new_id(), name=f"drainer-{n}", registered_at=now, labels={"pool": "drain"})
        for n in range(claimers)
    ]
    for agent in agents:
        await store.register_agent(agent)
    for _ in range(items):
        item = WorkItem(
            id=new_id(),
            work_type="drain",
            spec="{}",
            targeting=Targeting.labels("pool=drain"),
            created_at=now,
        )
        await store.submit(item, "scenario", now)

    claims: dict[UUID, UUID] = {}
    doubles: list[UUID] = []

    async def claimer(agent: Agent) -> None:
        while True:
            got = await store.claim_next(agent.id, now, ["drain"], batch)
            if not got:
                return
            for item in got:
                if item.id in claims:
                    doubles.append(item.id)
                claims[item.id] = agent.id
            await store.complete_many([Completion(i.token, agent.id) for i in got], now)

    async with anyio.create_task_group() as tg:
        for agent in agents:
            tg.start_soon(claimer, agent)

    logged = 0
    query = LogQuery(work_type="drain", status=WorkStatus.SUCCEEDED, limit=1000)
    while True:
        page = await store.query_log(query)
        logged += len(page)
        if len(page) < query.limit:
            break
        query = attrs.evolve(query, after=Cursor(page[-1].finished_at, page[-1].id))
    stats = await store.stats()
    left = sum(n for (t, s), n in stats.counts.items() if t == "drain" and not s.is_terminal)
    return DrainReport(claims, doubles, logged, left, dict(Counter(claims.values())))


def assert_clean_drain(report: DrainReport, items: int) -> None:
    """Every item claimed once, logged once, none left."""
    assert not report.double_claims, f"claimed twice: {report.double_claims[:10]}"
    assert len(report.claims) == items, f"claimed {len(report.claims)} of {items}"
    assert report.logged == items, f"logged {report.logged} of {items}"
    assert report.left_in_queue == 0, f"{report.left_in_queue} left in the queue"
