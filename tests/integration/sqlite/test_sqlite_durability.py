"""Durability of the SQLite store: close/reopen, and SIGKILL of a process mid-load."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import anyio
import anyio.to_thread
import attrs
import pytest

import workqueue_core
import workqueue_sqlite
from workqueue_core.domain.models import (
    Agent,
    ClaimToken,
    Cursor,
    Failure,
    LogQuery,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.testing import EPOCH, SequentialIds
from workqueue_sqlite import SqliteStore

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("crash_child.py")
ITEMS = 1500
CLAIM_TIMEOUT = timedelta(seconds=60)


def _child_env() -> dict[str, str]:
    """The child imports the same code as this test process."""
    paths = {
        str(Path(module.__file__ or "").resolve().parent.parent)
        for module in (workqueue_core, workqueue_sqlite)
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*sorted(paths), env.get("PYTHONPATH", "")])
    return env


async def _all_logged(store: SqliteStore) -> list[workqueue_core.domain.models.ExecutionRecord]:
    records = []
    query = LogQuery(limit=500)
    while True:
        page = await store.query_log(query)
        records.extend(page)
        if len(page) < query.limit:
            return records
        query = attrs.evolve(query, after=Cursor(page[-1].finished_at, page[-1].id))


async def _all_queued(store: SqliteStore) -> list[WorkItem]:
    items = []
    query = WorkQuery(limit=500)
    while True:
        page = await store.query(query)
        items.extend(page)
        if len(page) < query.limit:
            return items
        query = attrs.evolve(query, after=Cursor(page[-1].created_at, page[-1].id))


async def _kill_after(path: Path, agents: list[UUID], acks_wanted: int) -> tuple[set[UUID], bool]:
    """Run the child until it has acknowledged ``acks_wanted`` completions, then SIGKILL it.

    Returns every acknowledged work id (also those still in the pipe) and whether
    the child was killed (False: it ran out of work first).
    """
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), *map(str, agents)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    acked: set[UUID] = set()
    finished = False
    try:
        while len(acked) < acks_wanted:
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
            if not line or line.strip() == "DONE":
                finished = True
                break
            acked.add(UUID(line.split()[1]))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, errors = await anyio.to_thread.run_sync(proc.communicate)
    for line in rest.splitlines():  # written (so acknowledged) before the kill
        if line.startswith("ACK "):
            acked.add(UUID(line.split()[1]))
        elif line.strip() == "DONE":
            finished = True
    if not finished:
        assert proc.returncode == -signal.SIGKILL, errors
    else:
        assert proc.returncode in (0, -signal.SIGKILL), errors
    return acked, not finished


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


async def _check_consistent(
    store: SqliteStore, all_ids: set[UUID], acked: set[UUID], agents: set[UUID]
) -> None:
    """Nothing lost, nothing twice, every acknowledged completion logged once."""
    queued = await _all_queued(store)
    logged = await _all_logged(store)
    queued_ids = {i.id for i in queued}
    logged_ids = Counter(r.id for r in logged)
    assert not queued_ids & logged_ids.keys(), "an item is in both the queue and the log"
    assert queued_ids | logged_ids.keys() == all_ids, "items were lost or invented"
    assert all(n == 1 for n in logged_ids.values())
    missing = acked - logged_ids.keys()
    assert not missing, f"acknowledged completions lost: {sorted(missing)[:5]}"
    for record in logged:
        assert record.status is WorkStatus.SUCCEEDED
        assert record.item.claimed_by in agents
    for item in queued:
        assert item.status in (WorkStatus.PENDING, WorkStatus.CLAIMED)
    for work_id in acked:
        events = await store.events(work_id)
        succeeded = [e for e in events if e.to_status is WorkStatus.SUCCEEDED]
        assert len(succeeded) == 1, f"{work_id} has {len(succeeded)} succeeded events"
        assert events[0].to_status is WorkStatus.PENDING


async def test_sigkill_during_claim_complete_load_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crash.db"
    ids = SequentialIds()
    agents = [ids() for _ in range(4)]
    all_ids: set[UUID] = set()
    async with await SqliteStore.open(path, synchronous="NORMAL") as store:
        for n, agent_id in enumerate(agents):
            await store.register_agent(Agent(agent_id, f"crash-{n}", EPOCH))
        for _ in range(ITEMS):
            item = WorkItem(
                id=ids(),
                work_type="crash",
                spec="{}",
                targeting=Targeting.everyone(),
                created_at=EPOCH,
                claim_timeout=CLAIM_TIMEOUT,
            )
            await store.submit(item, "test", EPOCH)
            all_ids.add(item.id)

    acked: set[UUID] = set()
    for round_acks in (60, 120):
        new, killed = await _kill_after(path, agents, len(acked) + round_acks)
        assert killed, "the child finished before it could be killed: raise ITEMS"
        acked |= new
        assert _integrity(path) == "ok"
        async with await SqliteStore.open(path) as store:
            await _check_consistent(store, all_ids, acked, set(agents))

    # Recover: expire the dead child's leases, then drain what is left in-process.
    later = EPOCH + CLAIM_TIMEOUT * 2
    async with await SqliteStore.open(path) as store:
        await store.sweep(later)
        assert not await store.query(WorkQuery(status=WorkStatus.CLAIMED))
        due = later + timedelta(hours=2)  # after every swept item's retry delay
        while got := await store.claim_next(agents[0], due, None, 100):
            await store.complete_many(
                [workqueue_core.domain.models.Completion(i.token, agents[0]) for i in got], due
            )
        await _check_consistent(store, all_ids, acked, set(agents))
        assert not await _all_queued(store)
        for work_id in all_ids:
            events = await store.events(work_id)
            assert sum(e.to_status is WorkStatus.SUCCEEDED for e in events) == 1


async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "reopen.db"
    ids = SequentialIds()
    agent = Agent(ids(), "reopen", EPOCH, labels={"zone": "a"}, token_hash="ab" * 32)
    now = EPOCH + timedelta(microseconds=123_457)
    items = [
        WorkItem(
            id=ids(),
            work_type="job",
            spec=f"echo {n}",
            targeting=Targeting.labels("zone in (a,b),!legacy"),
            created_at=now,
            priority=n,
            idempotency_key=f"key-{n}",
            labels={"team": "x"},
        )
        for n in range(3)
    ]
    async with await SqliteStore.open(path) as store:
        await store.register_agent(agent)
        for item in items:
            await store.submit(item, "test", now)
        first, second = await store.claim_next(agent.id, now, None, 2)
        record = await store.complete(first.token, agent.id, now, "digest", 0)
        failed = await store.fail(second.token, agent.id, now, Failure.retryable("Timeout", "slow"))
        touched = await store.touch_agent(agent.id, now)
        before = (
            await _all_queued(store),
            await _all_logged(store),
            [await store.events(i.id) for i in items],
            await store.list_agents(),
            await store.stats(),
        )

    async with await SqliteStore.open(path, migrate=False) as store:
        after = (
            await _all_queued(store),
            await _all_logged(store),
            [await store.events(i.id) for i in items],
            await store.list_agents(),
            await store.stats(),
        )
        assert after == before
        assert await store.get_record(first.id) == record
        assert await store.get(second.id) == failed
        assert await store.agent_by_token_hash("ab" * 32) == touched
        # The idempotency key still names the original after the reopen.
        assert record.id == items[2].id  # the highest priority was claimed first
        again = await store.submit(attrs.evolve(items[2], id=ids()), "test", now)
        assert not again.created
        assert again.item == record
        # A stale token from before the reopen is still refused.
        with pytest.raises(workqueue_core.domain.errors.LeaseLost):
            await store.heartbeat(ClaimToken(second.id, second.attempt), agent.id, now)
