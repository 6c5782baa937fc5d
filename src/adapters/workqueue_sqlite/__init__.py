"""SQLite store: the broker's embedded default (one database file, WAL mode)."""

from workqueue_sqlite.schema import SCHEMA_VERSION
from workqueue_sqlite.store import SqliteStore, migrate

__all__ = ["SCHEMA_VERSION", "SqliteStore", "migrate"]
