"""A stale token of the *same* agent is refused on every store and every report path.

Agent A claims an item (attempt 1); the claim ends (swept, or failed retryably with
zero delay) and A claims it again (attempt 2). Reporting with the attempt-1 token
must answer ``LeaseLost`` and leave the attempt-2 claim untouched, through
``complete``, ``fail``, ``complete_many`` and ``complete_many_quiet``. Only the
attempt separates the two tokens here (same agent, same item), so a store that
forgets to compare it is caught deterministically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pg_support import fresh_postgres_store
from workqueue_core.domain.errors import LeaseLost
from workqueue_core.domain.models import (
    Agent,
    ClaimToken,
    Completion,
    Failure,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.ports import Store
from workqueue_core.testing import EPOCH, SequentialIds
from workqueue_memory import MemoryStore
from workqueue_sqlite import SqliteStore

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)


@asynccontextmanager
async def _store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    if kind == "memory":
        yield MemoryStore(random_source=lambda: 0.0)
    elif kind == "sqlite":
        async with await SqliteStore.open(tmp_path / "stale.db") as store:
            yield store
    else:
        async with fresh_postgres_store(random_source=lambda: 0.0) as store:
            yield store


async def _report(store: Store, how: str, token: ClaimToken, agent: Agent, now: Any) -> object:
    """Report on ``token`` through ``how``; the answer (or the error raised) is returned."""
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "complete": lambda: store.complete(token, agent.id, now, "late"),
        "fail": lambda: store.fail(token, agent.id, now, Failure.permanent("Late")),
        "complete_many": lambda: store.complete_many([Completion(token, agent.id, "late")], now),
        "complete_many_quiet": lambda: store.complete_many_quiet(
            [Completion(token, agent.id, "late")], now
        ),
        "heartbeat": lambda: store.heartbeat(token, agent.id, now),
    }
    try:
        answer = await calls[how]()
    except LeaseLost as error:
        return error
    if how.startswith("complete_many"):
        (answer,) = answer
    return answer


@pytest.mark.parametrize(
    "how", ["complete", "fail", "complete_many", "complete_many_quiet", "heartbeat"]
)
@pytest.mark.parametrize("ended_by", ["sweep", "retryable-failure"])
@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
async def test_a_token_of_the_same_agents_earlier_claim_is_refused(
    kind: str, ended_by: str, how: str, tmp_path: Path
) -> None:
    ids = SequentialIds()
    agent = Agent(ids(), "a", EPOCH, labels={"pool": "p"})
    item = WorkItem(
        ids(),
        "job",
        "{}",
        Targeting.labels("pool=p"),
        EPOCH,
        retry_policy=RetryPolicy(max_retries=3, base_delay=timedelta(0)),
        claim_timeout=LEASE,
    )
    async with _store(kind, tmp_path) as store:
        await store.register_agent(agent)
        await store.submit(item, "test", EPOCH)
        (first,) = await store.claim_next(agent.id, EPOCH, None, 1)
        now = EPOCH + timedelta(seconds=1)
        if ended_by == "sweep":
            now = EPOCH + LEASE
            (swept,) = await store.sweep(now)
            assert swept.status is WorkStatus.PENDING
        else:
            after = await store.fail(first.token, agent.id, now, Failure.retryable("Flaky"))
            assert after.status is WorkStatus.PENDING
        (second,) = await store.claim_next(agent.id, now, None, 1)
        assert (second.id, second.attempt, second.claimed_by) == (item.id, 2, agent.id)
        events = await store.events(item.id)

        answer = await _report(store, how, first.token, agent, now + timedelta(seconds=1))

        assert isinstance(answer, LeaseLost), f"{how} with the attempt-1 token gave {answer!r}"
        assert await store.get(item.id) == second
        assert await store.get_record(item.id) is None
        assert await store.events(item.id) == events
        # The current claim is still whole: its own token completes it.
        record = await store.complete(second.token, agent.id, now + timedelta(seconds=2), "ok")
        assert (record.status, record.item.attempt, record.result) == (
            WorkStatus.SUCCEEDED,
            2,
            "ok",
        )
