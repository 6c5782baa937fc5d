"""Callback delivery state in the SQLite store: schema versions 2 and 3, durability,
upgrade, and the plan that takes due deliveries."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from workqueue_core.domain.callbacks import CALLBACK_ACTOR
from workqueue_core.domain.errors import SchemaMismatch
from workqueue_core.domain.models import (
    Agent,
    ClaimToken,
    ExecutionRecord,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.testing import EPOCH, SequentialIds
from workqueue_sqlite import SCHEMA_VERSION, SqliteStore, codec
from workqueue_sqlite.schema import MIGRATIONS
from workqueue_sqlite.sql import CALLBACKS_DUE_SQL

pytestmark = pytest.mark.anyio

HOOK = "https://hooks.example.com/done"


def _item(n: int, callback_url: str | None = HOOK) -> WorkItem:
    return WorkItem(
        SequentialIds(n)(), "noop", "{}", Targeting.everyone(), EPOCH, callback_url=callback_url
    )


async def _finish(store: SqliteStore, item: WorkItem, agent: Agent) -> None:
    await store.submit(item, "test", EPOCH)
    await store.claim(item.id, agent.id, EPOCH)
    await store.complete(ClaimToken(item.id, 1), agent.id, EPOCH + timedelta(seconds=1))


def _version_1(path: Path) -> None:
    """A file at schema version 1, as the previous release left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY,"
            " applied_at TEXT NOT NULL)"
        )
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1, 'before')")
    finally:
        conn.close()


def test_version_2_adds_the_callback_table() -> None:
    assert SCHEMA_VERSION >= 2
    assert any("work_callbacks" in statement for statement in MIGRATIONS[1])
    assert not any("work_callbacks" in statement for statement in MIGRATIONS[0])


async def test_the_delivery_state_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "wq.db"
    agent = Agent(SequentialIds(100)(), "a", EPOCH)
    async with await SqliteStore.open(path) as store:
        await store.register_agent(agent)
        await _finish(store, _item(1), agent)
        await _finish(store, _item(2, callback_url=None), agent)
        now = EPOCH + timedelta(seconds=5)
        [due] = await store.callbacks_due(now, lease=timedelta(minutes=5))
        assert due.id == _item(1).id
        retry_at = now + timedelta(seconds=10, microseconds=7)
        event = await store.record_callback(
            due.id, now, delivered=False, detail="callback failed: HTTP 500", retry_at=retry_at
        )
        assert event.seq > 0 and event.actor == CALLBACK_ACTOR
        assert event.from_status is event.to_status is WorkStatus.SUCCEEDED
    async with await SqliteStore.open(path, migrate=False) as store:
        assert await store.callbacks_due(retry_at - timedelta(microseconds=1)) == []
        assert [r.id for r in await store.callbacks_due(retry_at)] == [_item(1).id]
        assert (await store.events(_item(1).id))[-1] == event


async def test_upgrading_from_version_1_keeps_the_log_and_calls_nothing_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wq.db"
    _version_1(path)
    with pytest.raises(SchemaMismatch, match="workqueue migrate"):
        await SqliteStore.open(path, migrate=False)
    old = ExecutionRecord(
        attrs.evolve(_item(1), status=WorkStatus.CANCELED), EPOCH, "admin", "not needed"
    )
    conn = sqlite3.connect(path, isolation_level=None)
    try:  # a record the previous release wrote, with a callback URL
        conn.execute(
            f"INSERT INTO work_execution_log ({codec.RECORD_SELECT})"
            f" VALUES ({', '.join('?' for _ in codec.RECORD_COLUMNS)})",
            codec.record_values(old),
        )
    finally:
        conn.close()
    async with await SqliteStore.open(path) as store:  # migrates to version 2
        assert await store.get_record(_item(1).id) == old
        assert await store.callbacks_due(EPOCH + timedelta(days=3650)) == []
    conn = sqlite3.connect(path)
    try:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    finally:
        conn.close()
    assert versions == list(range(1, SCHEMA_VERSION + 1))


async def test_due_deliveries_are_read_in_order_from_their_index(tmp_path: Path) -> None:
    """Deliveries in backoff (a receiver down) are never read: the due rows come from
    ``work_callbacks_next`` in the promised order, with no sort of every pending one."""
    path = tmp_path / "wq.db"
    agent = Agent(SequentialIds(100)(), "a", EPOCH)
    async with await SqliteStore.open(path) as store:
        await store.register_agent(agent)
        for n in range(1, 4):
            await _finish(store, _item(n), agent)
        now = EPOCH + timedelta(seconds=5)
        later = now + timedelta(hours=1)
        for record in await store.callbacks_due(now):  # the first two go into backoff
            if record.id != _item(3).id:
                await store.record_callback(
                    record.id, now, delivered=False, detail="HTTP 503", retry_at=later
                )
        assert [r.id for r in await store.callbacks_due(now)] == [_item(3).id]
        # by next attempt first: the one that waited longest goes first
        due = await store.callbacks_due(later)
        assert [r.id for r in due] == [_item(3).id, _item(1).id, _item(2).id]
    conn = sqlite3.connect(path)
    try:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + CALLBACKS_DUE_SQL, (0, 100))]
    finally:
        conn.close()
    assert any("work_callbacks_next" in step and "next_at<" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
