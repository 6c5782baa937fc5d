"""Schema migrations and failure reporting of the SQLite store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from workqueue_core.domain.errors import SchemaMismatch, StoreUnavailable
from workqueue_core.domain.models import Targeting, WorkItem
from workqueue_core.testing import EPOCH, SequentialIds
from workqueue_sqlite import SCHEMA_VERSION, SqliteStore, migrate

pytestmark = pytest.mark.anyio


def _schema(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()


def _versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    finally:
        conn.close()


def _item(n: int = 1) -> WorkItem:
    return WorkItem(SequentialIds(n)(), "job", "{}", Targeting.everyone(), EPOCH)


async def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "wq.db"
    assert await migrate(path) == SCHEMA_VERSION
    schema = _schema(path)
    assert {"work_queue", "work_execution_log", "work_events", "agents"} <= {
        name for kind, name, _ in schema if kind == "table"
    }
    assert await migrate(path) == SCHEMA_VERSION
    assert _schema(path) == schema
    assert _versions(path) == list(range(1, SCHEMA_VERSION + 1))
    async with await SqliteStore.open(path) as store:  # migrate=True: a third no-op
        await store.submit(_item(), "test", EPOCH)
    assert _versions(path) == list(range(1, SCHEMA_VERSION + 1))


async def test_migrate_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "wq.db"
    async with await SqliteStore.open(path) as store:
        await store.submit(_item(), "test", EPOCH)
    await migrate(path)
    async with await SqliteStore.open(path, migrate=False) as store:
        assert await store.get(_item().id) == _item()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wq.db"
    await migrate(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')",
            (SCHEMA_VERSION + 1,),
        )
    conn.close()
    schema = _schema(path)
    with pytest.raises(SchemaMismatch, match="newer"):
        await migrate(path)
    with pytest.raises(SchemaMismatch, match="newer"):
        await SqliteStore.open(path)
    with pytest.raises(SchemaMismatch, match="newer"):
        await SqliteStore.open(path, migrate=False)
    assert _schema(path) == schema


async def test_an_unmigrated_file_is_refused_without_migrate(tmp_path: Path) -> None:
    path = tmp_path / "wq.db"
    with pytest.raises(SchemaMismatch, match="workqueue migrate"):
        await SqliteStore.open(path, migrate=False)
    assert [name for _, name, _ in _schema(path)] == []  # nothing was created
    assert await migrate(path) == SCHEMA_VERSION
    async with await SqliteStore.open(path, migrate=False) as store:
        assert await store.stats() is not None


async def test_the_file_is_in_wal_mode_with_the_chosen_sync(tmp_path: Path) -> None:
    path = tmp_path / "wq.db"
    async with await SqliteStore.open(path) as store:
        assert store._db.conn is not None
        assert store._db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store._db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store._db.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert store._db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10_000
    async with await SqliteStore.open(path, synchronous="NORMAL") as store:
        assert store._db.conn is not None
        assert store._db.conn.execute("PRAGMA synchronous").fetchone()[0] == 1


async def test_memory_database_needs_no_file() -> None:
    async with await SqliteStore.open(":memory:") as store:
        result = await store.submit(_item(), "test", EPOCH)
        assert result.created
        assert await store.get(_item().id) == _item()


async def test_a_locked_database_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "wq.db"
    async with await SqliteStore.open(path, busy_timeout=0.05) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.submit(_item(), "test", EPOCH)
            other.execute("ROLLBACK")
        finally:
            other.close()
        # Nothing half-done was left behind: the same submit now works.
        assert (await store.submit(_item(), "test", EPOCH)).created


async def test_an_unreachable_path_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no-such-dir"):
        await SqliteStore.open(tmp_path / "no-such-dir" / "wq.db")


async def test_a_closed_store_is_store_unavailable(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "wq.db")
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get(_item().id)
