"""A PostgreSQL restart in the middle of a claim/complete load.

Operations fail with StoreUnavailable while the server is down and succeed once it
is back; afterwards every item has exactly one log record and one completion.
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import anyio
import pytest
from psycopg import sql

from pg_support import PG_DSN, connect, temporary_schema
from workqueue_core.domain.errors import StoreUnavailable
from workqueue_core.domain.models import (
    Agent,
    ClaimToken,
    Completion,
    ExecutionRecord,
    Targeting,
    WorkItem,
)
from workqueue_core.testing.clock import EPOCH, SequentialIds
from workqueue_postgres import PostgresStore

# serial: restarts the shared server, which every parallel test is using.
pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.serial]

ITEMS = 3000
BATCH = 20
ROOT = Path(__file__).resolve().parents[3]


def _cluster_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    assert versions, "the restart test needs a local Debian PostgreSQL cluster (pg_ctlcluster)"
    return versions[-1]


def _restart() -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _cluster_version(), "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _ensure_up() -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-postgres")], check=False, timeout=120)


async def test_a_restart_mid_load_loses_nothing_and_completes_nothing_twice() -> None:
    new_id = SequentialIds(base=5_000_000)
    try:
        async with temporary_schema() as schema:
            store = await PostgresStore.open(PG_DSN, schema=schema, max_size=2, timeout=2.0)
            try:
                await _run_load(store, new_id)
            finally:
                await store.close()
            await _check_accounting(schema)
    finally:
        _ensure_up()


async def _run_load(store: PostgresStore, new_id: SequentialIds) -> None:
    agent = Agent(id=new_id(), name="restarter", registered_at=EPOCH)
    await store.register_agent(agent)
    items = [
        WorkItem(
            id=new_id(), work_type="r", spec="{}", targeting=Targeting.everyone(), created_at=EPOCH
        )
        for _ in range(ITEMS)
    ]
    for start in range(0, ITEMS, 500):
        await store.submit_many(items[start : start + 500], "test", EPOCH)

    done: set[UUID] = set()
    unacknowledged: list[ClaimToken] = []
    failures = {"during": 0}
    messages: list[str] = []
    restarted = anyio.Event()

    async def restart_when_busy() -> None:
        while len(done) < ITEMS // 5:
            await anyio.sleep(0.01)
        await anyio.to_thread.run_sync(_restart)
        restarted.set()

    async def worker(now_offset: timedelta) -> None:
        now = EPOCH + now_offset
        idle = 0
        while len(done) < ITEMS:
            try:
                if unacknowledged:  # retry completions whose answer was lost: idempotent
                    outcomes = await store.complete_many(
                        [Completion(t, agent.id) for t in unacknowledged], now
                    )
                    for token, outcome in zip(unacknowledged, outcomes, strict=True):
                        assert isinstance(outcome, ExecutionRecord), outcome
                        done.add(token.work_id)
                    unacknowledged.clear()
                got = await store.claim_next(agent.id, now, None, BATCH)
                if not got:
                    if not restarted.is_set():
                        await anyio.sleep(0.05)
                        continue
                    # Claims whose answer was lost hold leases: sweep them two hours later.
                    # Swept items retry after a backoff: the next round's clock is past it.
                    now += timedelta(hours=2)
                    await store.sweep(now, limit=ITEMS)
                    idle += 1
                    assert idle < 5, f"{ITEMS - len(done)} items neither done nor claimable"
                    continue
                idle = 0
                unacknowledged.extend(i.token for i in got)
                outcomes = await store.complete_many(
                    [Completion(i.token, agent.id) for i in got], now
                )
                assert all(isinstance(o, ExecutionRecord) for o in outcomes), outcomes
                done.update(i.id for i in got)
                unacknowledged.clear()
                if len(done) >= ITEMS // 5 and not restarted.is_set():
                    await anyio.sleep(0.05)  # keep the load going until the restart is over
            except StoreUnavailable as error:
                messages.append(str(error))
                failures["during"] += 1
                await anyio.sleep(0.1)

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            tg.start_soon(restart_when_busy)
            tg.start_soon(worker, timedelta(0))
    assert restarted.is_set()
    assert failures["during"] >= 1, "the restart went unnoticed"
    assert all("unavailable during" in m for m in messages), messages
    assert len(done) == ITEMS
    # The listener reconnected too, and wakes waiters again.
    with anyio.fail_after(30):
        while not (store.notifier.listening and store.notifier.connections >= 2):
            await anyio.sleep(0.1)
    mark = store.notifier.mark()
    await store.submit(
        WorkItem(
            id=new_id(), work_type="r2", spec="{}", targeting=Targeting.everyone(), created_at=EPOCH
        ),
        "test",
        EPOCH,
    )
    assert await store.notifier.wait(30.0, since=mark) is True
    (extra,) = await store.claim_next(agent.id, EPOCH, ["r2"], 1)
    await store.complete(extra.token, agent.id, EPOCH)


async def _check_accounting(schema: str) -> None:
    async with await connect() as conn:
        s = sql.Identifier(schema)
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}.work_queue").format(s))
        assert await cur.fetchone() == (0,)
        cur = await conn.execute(
            sql.SQL(
                "SELECT count(*), count(DISTINCT id) FROM {}.work_execution_log "
                "WHERE status = 'SUCCEEDED'"
            ).format(s)
        )
        assert await cur.fetchone() == (ITEMS + 1, ITEMS + 1)
        cur = await conn.execute(
            sql.SQL(
                "SELECT count(*), count(DISTINCT work_id) FROM {}.work_events "
                "WHERE to_status = 'SUCCEEDED'"
            ).format(s)
        )
        assert await cur.fetchone() == (ITEMS + 1, ITEMS + 1)
