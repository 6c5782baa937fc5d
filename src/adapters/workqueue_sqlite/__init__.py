"""SQLite store: the broker's embedded default (one database file, WAL mode)."""

from workqueue_sqlite.connection import migrate
from workqueue_sqlite.schema import SCHEMA_VERSION
from workqueue_sqlite.store import SqliteStore

__all__ = ["SCHEMA_VERSION", "SqliteStore", "migrate"]
