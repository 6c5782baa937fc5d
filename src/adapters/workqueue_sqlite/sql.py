"""The SQL the SQLite store runs, as named statements.

Parameters are positional (``?``), in the column orders of ``workqueue_sqlite.codec``.
Statements whose text depends on the call (type filters, query filters, ``IN``
lists) are built where they run.
"""

from __future__ import annotations

from typing import Final

from workqueue_sqlite import codec

INSERT_ITEM: Final = (
    f"INSERT INTO work_queue ({codec.ITEM_SELECT})"
    f" VALUES ({', '.join('?' for _ in codec.ITEM_COLUMNS)})"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.ITEM_COLUMNS[1:])
)
"""Write a queued item whole (insert, or overwrite the row of its id)."""
INSERT_RECORD: Final = (
    f"INSERT INTO work_execution_log ({codec.RECORD_SELECT})"
    f" VALUES ({', '.join('?' for _ in codec.RECORD_COLUMNS)})"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.RECORD_COLUMNS[1:])
)
"""Write a log record whole (insert, or overwrite the row of its id)."""
_ENDED: Final = (*codec.STATE_COLUMNS, "finished_at", "finished_by", "result")
_MOVED: Final = (*codec.SUBMITTED_COLUMNS, *_ENDED)
MOVE_TO_LOG: Final = (
    f"INSERT INTO work_execution_log ({', '.join(_MOVED)})"
    f" SELECT {', '.join(codec.SUBMITTED_COLUMNS)}, {', '.join('?' for _ in _ENDED)}"
    " FROM work_queue WHERE id = ?"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _MOVED if c != "id")
)
"""Write the log record of a queued item: its submission's columns copied in SQLite
(no re-encoding of spec, targeting, policy and labels), the rest from the record;
parameters ``codec.ended_values``. Writes nothing when the item is not queued."""
INSERT_EVENT: Final = (
    f"INSERT INTO work_events ({', '.join(codec.EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in codec.EVENT_COLUMNS)})"
)
INSERT_AGENT: Final = (
    f"INSERT INTO agents ({codec.AGENT_SELECT})"
    f" VALUES ({', '.join('?' for _ in codec.AGENT_COLUMNS)})"
)
UPDATE_AGENT: Final = (
    "UPDATE agents SET " + ", ".join(f"{c} = ?" for c in codec.AGENT_COLUMNS[1:]) + " WHERE id = ?"
)
"""Write an agent's columns; the id comes last."""
INSERT_TARGET: Final = (
    "INSERT INTO work_targets (agent_id, neg_priority, created_at, work_id) VALUES (?, ?, ?, ?)"
)
CLAIM_ITEM: Final = (
    "UPDATE work_queue SET status = ?, attempt = ?, executions = ?, local_retries = ?,"
    " claimed_by = ?, claimed_at = ?, lease_expires_at = ? WHERE id = ?"
)
"""Write a claim: exactly the columns ``transitions.claim`` changes."""

SELECT_ITEM: Final = f"SELECT {codec.ITEM_SELECT} FROM work_queue WHERE id = ?"
SELECT_RECORD: Final = f"SELECT {codec.RECORD_SELECT} FROM work_execution_log WHERE id = ?"
SELECT_AGENT: Final = f"SELECT {codec.AGENT_SELECT} FROM agents WHERE id = ?"
IN_LOG: Final = "SELECT 1 FROM work_execution_log WHERE id = ?"
DELETE_ITEM: Final = "DELETE FROM work_queue WHERE id = ?"
DELETE_RECORD: Final = "DELETE FROM work_execution_log WHERE id = ?"
DELETE_TARGETS_OF_ITEM: Final = "DELETE FROM work_targets WHERE work_id = ?"
DELETE_TARGETS_OF_AGENT: Final = "DELETE FROM work_targets WHERE agent_id = ?"
DELETE_CALLBACK: Final = "DELETE FROM work_callbacks WHERE work_id = ?"
PUT_CALLBACK: Final = (
    "INSERT OR REPLACE INTO work_callbacks (work_id, finished_at, next_at) VALUES (?, ?, ?)"
)
MOVE_CALLBACK: Final = "UPDATE work_callbacks SET next_at = ? WHERE work_id = ?"

_ITEM_COLUMNS_OF_Q: Final = ", ".join(f"q.{c}" for c in codec.ITEM_COLUMNS)

CLAIMABLE: Final = (
    f"SELECT {_ITEM_COLUMNS_OF_Q} FROM work_targets AS t CROSS JOIN work_queue AS q"
    " ON q.id = t.work_id"
    " WHERE t.agent_id = ? AND q.status = 'PENDING'"
    " AND q.executions < q.max_executions"
    " AND (q.not_before IS NULL OR q.not_before <= ?)"
)
"""An agent's claimable items (``ITEM_COLUMNS``) by its target rows; the caller adds the
type filter and ``CLAIM_ORDER``."""
CLAIM_ORDER: Final = " ORDER BY t.neg_priority, t.created_at, t.work_id LIMIT ?"
AGENT_LABELS: Final = "SELECT id, labels FROM agents"
PENDING_TARGETING: Final = (
    "SELECT id, targeting, priority, created_at FROM work_queue WHERE status = 'PENDING'"
)

_RECORD_COLUMNS_OF_L: Final = ", ".join(f"l.{c}" for c in codec.RECORD_COLUMNS)

CALLBACKS_DUE_SQL: Final = (
    f"SELECT {_RECORD_COLUMNS_OF_L} FROM work_callbacks AS c"
    " CROSS JOIN work_execution_log AS l ON l.id = c.work_id"
    " WHERE c.next_at <= ? ORDER BY c.next_at, c.finished_at, c.work_id LIMIT ?"
)
"""Due deliveries in the order ``callbacks_due`` promises, read in that order from the
index ``work_callbacks_next``: deliveries in backoff are never read."""
