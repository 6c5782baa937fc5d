"""sqlite3 failures as the core's errors, with a message that says what to do."""

from __future__ import annotations

import sqlite3

from workqueue_core.domain.errors import SchemaMismatch, StoreUnavailable, WorkqueueError


def unavailable(error: sqlite3.Error, path: str) -> WorkqueueError:
    """The core error for a sqlite3 failure on the database at ``path``."""
    text = str(error)
    if "no such table" in text or "no such column" in text:
        return SchemaMismatch(
            f"the SQLite database {path} is missing part of the schema ({text}):"
            " run `workqueue migrate`"
        )
    if "locked" in text or "busy" in text:
        return StoreUnavailable(
            f"the SQLite database {path} is locked by another process ({text});"
            " only one broker may use a database file"
        )
    return StoreUnavailable(f"the SQLite database {path} failed: {text}")
