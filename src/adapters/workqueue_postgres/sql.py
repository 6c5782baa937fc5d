"""The SQL the PostgreSQL store runs, as named statements.

Every template below names tables as ``{s}.table``; ``statements(schema)`` returns
a ``Statements`` whose fields are those templates with ``{s}`` replaced by the
quoted schema name (``"my_schema"``). Parameters are psycopg named placeholders
(``%(now)s``), so a statement runs as ``await cur.execute(st.claim_next, params)``.

The hot statements (``claim_next``, ``complete_many``, ``submit``, ``insert_event``)
are single statements, one round trip each; the benchmark's bare-SQL floor runs
them directly with psycopg. Their parameters:

- ``claim_next``: ``agent`` (uuid), ``now`` (timestamptz), ``types`` (text[] or NULL
  for every type), ``limit`` (int).
  Returns ``CLAIMED_COLUMNS`` of the claimed rows, in claim order.
- ``complete_many``: ``ids`` (uuid[]), ``attempts`` (int[]), ``agents`` (uuid[], or NULL
  when every entry is ``agent``'s), ``agent`` (uuid or NULL), ``results`` (text[], or NULL
  when every result is NULL), ``local_retries`` (int[], or NULL when all are 0) — one
  element per completion, distinct ids — and ``now``. Completes the entries whose token
  is current and held by the named agent; returns ``LOG_COLUMNS`` of their log records
  (``complete_many_quiet``: only their ``id``).
- ``submit``: the ``ITEM_COLUMNS`` values by name, plus ``actor``, ``now`` and
  ``channel``. Returns ``(inserted, keyed)`` counts.
- ``insert_event``: the ``EVENT_COLUMNS`` values, positional.
"""

from __future__ import annotations

import attrs
from psycopg import sql as pgsql

ITEM_COLUMNS = (
    "id",
    "work_type",
    "spec",
    "target_id",
    "created_at",
    "max_retries",
    "base_delay_us",
    "multiplier",
    "max_delay_us",
    "jitter",
    "claim_timeout_us",
    "priority",
    "not_before",
    "idempotency_key",
    "correlation_id",
    "labels",
    "callback_url",
    "status",
    "attempt",
    "executions",
    "local_retries",
    "claimed_by",
    "claimed_at",
    "lease_expires_at",
    "error_class",
    "error_reason",
    "error_message",
)
"""Columns shared by ``work_queue`` and ``work_execution_log``, in row order."""

CLAIM_KNOWN = ("status", "local_retries", "claimed_by", "claimed_at", "lease_expires_at")
"""What every row ``claim_next`` claims has from the claim itself: CLAIMED, no local
retries, the agent, ``now`` and ``now + claim_timeout``."""

CLAIMED_COLUMNS = tuple(c for c in ITEM_COLUMNS if c not in CLAIM_KNOWN)
"""What ``claim_next`` returns of each claimed row: ``ITEM_COLUMNS`` less ``CLAIM_KNOWN``."""

LOG_COLUMNS = (*ITEM_COLUMNS, "finished_at", "finished_by", "result")
"""Columns of ``work_execution_log``, in row order."""

EVENT_COLUMNS = (
    "work_id",
    "from_status",
    "to_status",
    "actor",
    "at",
    "attempt",
    "executions",
    "claimed_by",
    "correlation_id",
    "detail",
)
"""Columns written for an event (``seq`` is assigned by the database)."""

AGENT_COLUMNS = (
    "id",
    "name",
    "registered_at",
    "labels",
    "annotations",
    "status",
    "last_seen_at",
    "token_hash",
)
"""Columns of ``agents``, in row order."""

_ITEMS = ", ".join(ITEM_COLUMNS)
_LOG = ", ".join(LOG_COLUMNS)
_EVENTS = ", ".join(EVENT_COLUMNS)
_AGENTS = ", ".join(AGENT_COLUMNS)
_ITEM_PARAMS = ", ".join(f"%({c})s" for c in ITEM_COLUMNS)
_Q_ITEMS = ", ".join(f"q.{c}" for c in ITEM_COLUMNS)
_CLAIMED = ", ".join(CLAIMED_COLUMNS)

_ELIGIBLE = """
    q.status = 'PENDING'
    AND (q.not_before IS NULL OR q.not_before <= %(now)s)
    AND q.executions <= q.max_retries
    AND (%(types)s::text[] IS NULL OR q.work_type = ANY(%(types)s::text[]))
"""

CLAIM_NEXT = f"""
WITH picked AS (
    SELECT c.id
    FROM {{s}}.target_agents ta
    CROSS JOIN LATERAL (
        SELECT q.id, q.priority, q.created_at
        FROM {{s}}.work_queue q
        WHERE q.target_id = ta.target_id AND {_ELIGIBLE}
        ORDER BY q.priority DESC, q.created_at, q.id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE ta.agent_id = %(agent)s
      AND EXISTS (
        SELECT 1 FROM {{s}}.agents a WHERE a.id = %(agent)s AND a.status = 'ACTIVE')
    ORDER BY c.priority DESC, c.created_at, c.id
    LIMIT %(limit)s
), claimed AS (
    UPDATE {{s}}.work_queue q
    SET status = 'CLAIMED',
        attempt = q.attempt + 1,
        executions = q.executions + 1,
        local_retries = 0,
        claimed_by = %(agent)s,
        claimed_at = %(now)s,
        lease_expires_at = %(now)s + q.claim_timeout_us * interval '1 microsecond'
    -- an array, not a join with picked: joined, a queue of a few thousand rows was read
    -- whole (hash join) for a hundred claimed rows; ids in an array are looked up by key
    WHERE q.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING {", ".join(f"q.{c}" for c in CLAIMED_COLUMNS)}
), events AS (
    INSERT INTO {{s}}.work_events ({_EVENTS})
    SELECT id, 'PENDING', 'CLAIMED', NULL, %(now)s, attempt, executions,
           %(agent)s, correlation_id, NULL
    FROM claimed
)
SELECT {_CLAIMED} FROM claimed ORDER BY priority DESC, created_at, id
"""
"""Claim up to ``limit`` eligible items for one agent, with their events, in one statement.

Eligibility: the agent is ACTIVE, one of the targets it matches (``target_agents``)
is the item's target, the item is PENDING with budget left, due (``not_before``)
and of one of ``types``. Each target's candidates come from the partial index
``work_queue_claim`` in claim order, locked with SKIP LOCKED so concurrent
claimers pass each other; the best ``limit`` over the agent's targets are claimed.
"""

PENDING_FOR = f"""
SELECT {_Q_ITEMS}
FROM {{s}}.target_agents ta
JOIN {{s}}.work_queue q ON q.target_id = ta.target_id
WHERE ta.agent_id = %(agent)s AND {_ELIGIBLE}
ORDER BY q.priority DESC, q.created_at, q.id
LIMIT %(limit)s
"""

_CHARGED_EXECUTIONS = (
    "LEAST(d.executions + GREATEST(d.in_lr - d.local_retries, 0), d.max_retries + 1)"
)
_CHARGED_LOCAL_RETRIES = (
    "CASE WHEN d.in_lr <= d.local_retries THEN d.local_retries "
    "ELSE d.in_lr - GREATEST(d.executions + d.in_lr - d.local_retries - d.max_retries - 1, 0) END"
)
_LOG_FROM_DONE = ", ".join(
    {
        "status": "'SUCCEEDED'",
        "executions": _CHARGED_EXECUTIONS,
        "local_retries": _CHARGED_LOCAL_RETRIES,
        "lease_expires_at": "NULL",
    }.get(c, f"d.{c}")
    for c in ITEM_COLUMNS
)

_COMPLETE_MANY = f"""
WITH input AS (
    -- unnest pads the arrays sent as one NULL (every entry the same: see the module doc)
    SELECT u.work_id, u.attempt, coalesce(u.agent_id, %(agent)s::uuid) AS agent_id, u.result,
           coalesce(u.local_retries, 0) AS local_retries
    FROM unnest(%(ids)b::uuid[], %(attempts)b::int[], %(agents)b::uuid[],
                %(results)s::text[], %(local_retries)b::int[])
         AS u(work_id, attempt, agent_id, result, local_retries)
), done AS (
    DELETE FROM {{s}}.work_queue q
    USING input i
    -- CLAIMED by the holder (work_queue_holder_iff_claimed); no status condition, which
    -- would let the planner pick the lease index and walk its dead entries.
    WHERE q.id = ANY(%(ids)b::uuid[]) AND q.id = i.work_id
      AND q.attempt = i.attempt AND q.claimed_by = i.agent_id
    RETURNING {_Q_ITEMS}, i.result AS in_result, i.local_retries AS in_lr
), logged AS (
    INSERT INTO {{s}}.work_execution_log ({_LOG}, callback_due_at)
    SELECT {_LOG_FROM_DONE}, %(now)s, 'agent:' || d.claimed_by::text, d.in_result,
           CASE WHEN d.callback_url IS NOT NULL THEN %(now)s::timestamptz END
    FROM done d
    RETURNING {{logged}}
), events AS (
    -- the log row carries what the event needs: attempt, charged executions, holder
    INSERT INTO {{s}}.work_events ({_EVENTS})
    SELECT l.id, 'CLAIMED', 'SUCCEEDED', NULL, %(now)s, l.attempt, l.executions,
           l.claimed_by, l.correlation_id, NULL
    FROM logged l
)
{{returns}}
"""
"""Complete every entry whose token is current and held by its agent, in one statement.

The row leaves ``work_queue`` and enters ``work_execution_log`` with its event; the
agent-reported local retries are charged and clamped to the budget exactly as
``transitions.complete`` does. Entries that match nothing (stale token, another
holder, repeated completion) are left for the caller to explain.
"""

COMPLETE_MANY = _COMPLETE_MANY.replace("{logged}", _LOG).replace(
    "{returns}", f"SELECT {_LOG} FROM logged"
)
COMPLETE_MANY_QUIET = _COMPLETE_MANY.replace(
    "{logged}", "id, attempt, executions, claimed_by, correlation_id"
).replace("{returns}", "SELECT id FROM logged")
"""``complete_many`` returning only the ids of the completed entries."""

SUBMIT = f"""
WITH k AS (
    INSERT INTO {{s}}.idempotency_keys (key, work_id)
    SELECT %(idempotency_key)s, %(id)s WHERE %(idempotency_key)s::text IS NOT NULL
    ON CONFLICT (key) DO NOTHING
    RETURNING work_id
), ins AS (
    INSERT INTO {{s}}.work_queue ({_ITEMS})
    SELECT {_ITEM_PARAMS}
    WHERE (%(idempotency_key)s::text IS NULL OR EXISTS (SELECT 1 FROM k))
      AND NOT EXISTS (SELECT 1 FROM {{s}}.work_execution_log l WHERE l.id = %(id)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id, status, attempt, executions, claimed_by, correlation_id
), events AS (
    INSERT INTO {{s}}.work_events ({_EVENTS})
    SELECT id, NULL, status, %(actor)s, %(now)s, attempt, executions, claimed_by,
           correlation_id, 'submitted'
    FROM ins
)
SELECT (SELECT count(*) FROM ins),
       (SELECT count(*) FROM k),
       (SELECT count(*) FROM (
            SELECT pg_notify(%(channel)s, '') FROM ins WHERE ins.status = 'PENDING') n)
"""
"""Store a new item with its first event (and its idempotency key), in one statement.

Returns ``(inserted, keyed)``: ``(1, _)`` stored; ``(0, 0)`` with a key: the key is
taken (look up the item it names); ``(0, _)`` otherwise: the id already exists.
"""

INSERT_EVENT = f"INSERT INTO {{s}}.work_events ({_EVENTS}) VALUES ({', '.join(['%s'] * 10)})"

SELECT_ITEM = f"SELECT {_ITEMS} FROM {{s}}.work_queue WHERE id = %s"
SELECT_ITEM_FOR_UPDATE = SELECT_ITEM + " FOR UPDATE"
SELECT_RECORD = f"SELECT {_LOG} FROM {{s}}.work_execution_log WHERE id = %s"
SELECT_RECORD_FOR_UPDATE = SELECT_RECORD + " FOR UPDATE"
UPSERT_ITEM = (
    f"INSERT INTO {{s}}.work_queue ({_ITEMS}) VALUES ({', '.join(['%s'] * len(ITEM_COLUMNS))}) "
    f"ON CONFLICT (id) DO UPDATE SET ({_ITEMS}) = ROW("
    + ", ".join(f"EXCLUDED.{c}" for c in ITEM_COLUMNS)
    + ")"
)
INSERT_RECORD = (
    f"INSERT INTO {{s}}.work_execution_log ({_LOG}, callback_due_at) "
    f"VALUES ({', '.join(['%s'] * (len(LOG_COLUMNS) + 1))})"
)
"""A log record's ``LOG_COLUMNS`` values, then when its first callback attempt is due."""

CALLBACKS_DUE = f"""
WITH due AS (
    SELECT id, callback_due_at AS due_at, finished_at FROM {{s}}.work_execution_log
    WHERE callback_due_at IS NOT NULL AND callback_due_at <= %(now)s
    ORDER BY callback_due_at, finished_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE {{s}}.work_execution_log l SET callback_due_at = %(until)s::timestamptz
    FROM due
    WHERE l.id = due.id AND %(until)s::timestamptz IS NOT NULL
)
SELECT {", ".join(f"l.{c}" for c in LOG_COLUMNS)}
FROM {{s}}.work_execution_log l JOIN due ON l.id = due.id
ORDER BY due.due_at, due.finished_at, due.id
"""
"""Log records whose callback is due, longest due first (then by finish, id), read in
that order from ``work_execution_log_callback_due``; with ``until`` their next attempt
moves there in the same statement. Rows another caller is taking are skipped."""

SELECT_CALLBACK_FOR_UPDATE = (
    f"SELECT {_LOG}, callback_due_at FROM {{s}}.work_execution_log WHERE id = %s FOR UPDATE"
)
SET_CALLBACK_DUE = "UPDATE {s}.work_execution_log SET callback_due_at = %s WHERE id = %s"
INSERT_EVENT_RETURNING = INSERT_EVENT + " RETURNING seq"
DELETE_ITEM = "DELETE FROM {s}.work_queue WHERE id = %s"
DELETE_RECORD = "DELETE FROM {s}.work_execution_log WHERE id = %s"
KEY_OWNER = "SELECT work_id FROM {s}.idempotency_keys WHERE key = %s"
RECORD_EXISTS = "SELECT 1 FROM {s}.work_execution_log WHERE id = %s"
NOTIFY = "SELECT pg_notify(%s, '')"

EXPIRED = f"""
SELECT {_ITEMS} FROM {{s}}.work_queue
WHERE status = 'CLAIMED' AND lease_expires_at <= %(now)s
ORDER BY lease_expires_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
"""Expired leases, oldest first, skipping rows another sweeper (or holder) has locked."""

PRUNE = """
WITH doomed AS (
    SELECT id, idempotency_key FROM {s}.work_execution_log
    WHERE finished_at < %(before)s
    ORDER BY finished_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), records AS (
    DELETE FROM {s}.work_execution_log l USING doomed WHERE l.id = doomed.id
), events AS (
    DELETE FROM {s}.work_events e USING doomed WHERE e.work_id = doomed.id
), keys AS (
    DELETE FROM {s}.idempotency_keys k USING doomed
    WHERE k.key = doomed.idempotency_key AND k.work_id = doomed.id
)
SELECT count(*) FROM doomed
"""
"""Delete up to ``limit`` old log records with their events and idempotency keys."""

_QUERY_FILTERS = """
  (%(work_type)s::text IS NULL OR work_type = %(work_type)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(claimed_by)s::uuid IS NULL OR claimed_by = %(claimed_by)s)
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) > (%(after_at)s, %(after_id)s::uuid))
"""

QUERY = f"""
(SELECT {_ITEMS} FROM {{s}}.work_queue
 WHERE status <> 'CLAIMED' AND {_QUERY_FILTERS}
   AND (%(status)s::text IS NULL OR %(status)s::text <> 'CLAIMED')
   AND %(claimed_by)s::uuid IS NULL
 ORDER BY created_at, id
 LIMIT %(limit)s)
UNION ALL
(SELECT {_ITEMS} FROM {{s}}.work_queue
 WHERE status = 'CLAIMED' AND {_QUERY_FILTERS}
   AND (%(status)s::text IS NULL OR %(status)s::text = 'CLAIMED')
 ORDER BY created_at, id
 LIMIT %(limit)s)
ORDER BY created_at, id
LIMIT %(limit)s
"""
"""A page of the queue in (created_at, id) order. Unclaimed rows come in that order from
``work_queue_created``, which leaves claimed rows out (so a claim writes no entry in
it); claimed rows, as many as the agents hold, from ``work_queue_lease``, sorted.
Conditions on the parameters alone skip a branch that cannot match."""

QUERY_LOG = f"""
SELECT {_LOG} FROM {{s}}.work_execution_log
WHERE (%(work_type)s::text IS NULL OR work_type = %(work_type)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(claimed_by)s::uuid IS NULL OR claimed_by = %(claimed_by)s)
  AND (%(after_at)s::timestamptz IS NULL
       OR (finished_at, id) > (%(after_at)s, %(after_id)s::uuid))
ORDER BY finished_at, id
LIMIT %(limit)s
"""

_EVENT_READ = {
    # written NULL by claim_next and complete_many (migration 5): the holder, and the word
    # transitions.claim / transitions.complete give
    "actor": "coalesce(actor, 'agent:' || claimed_by::text)",
    "detail": (
        "coalesce(detail, CASE to_status WHEN 'CLAIMED' THEN 'claimed' "
        "WHEN 'SUCCEEDED' THEN 'succeeded' END)"
    ),
}
EVENTS = (
    f"SELECT {', '.join(_EVENT_READ.get(c, c) for c in EVENT_COLUMNS)}, seq "
    "FROM {s}.work_events WHERE work_id = %s ORDER BY seq"
)
"""An item's timeline: ``EVENT_COLUMNS`` then ``seq``, the hot statements' NULLs filled in."""

STATS = """
SELECT work_type, status, count(*) FROM {s}.work_queue GROUP BY work_type, status
UNION ALL
SELECT work_type, status, count(*) FROM {s}.work_execution_log GROUP BY work_type, status
"""

TARGET_BY_KEY = "SELECT id FROM {s}.work_targets WHERE key = %s"
INSERT_TARGET = (
    "INSERT INTO {s}.work_targets (key, agent_ids, selector) VALUES (%s, %s, %s) "
    "ON CONFLICT (key) DO NOTHING RETURNING id"
)
SELECT_TARGETS = "SELECT id, agent_ids, selector FROM {s}.work_targets WHERE id = ANY(%s)"
TARGETS_FOR_AGENT = (
    "SELECT id, agent_ids, selector FROM {s}.work_targets "
    "WHERE selector IS NOT NULL OR %s = ANY(agent_ids)"
)
INSERT_TARGET_AGENTS = (
    "INSERT INTO {s}.target_agents (agent_id, target_id) "
    "SELECT * FROM unnest(%s::uuid[], %s::bigint[]) ON CONFLICT DO NOTHING"
)
DELETE_TARGET_AGENTS = "DELETE FROM {s}.target_agents WHERE agent_id = %s"
AGENT_LABELS = "SELECT id, labels FROM {s}.agents"
LOCK_TARGETS = "SELECT pg_advisory_xact_lock(%s)"

INSERT_AGENT = f"INSERT INTO {{s}}.agents ({_AGENTS}) VALUES ({', '.join(['%s'] * 8)})"
SELECT_AGENT = f"SELECT {_AGENTS} FROM {{s}}.agents WHERE id = %s"
SELECT_AGENT_FOR_UPDATE = SELECT_AGENT + " FOR UPDATE"
LIST_AGENTS = (
    f"SELECT {_AGENTS} FROM {{s}}.agents WHERE (%(status)s::text IS NULL OR status = %(status)s) "
    'ORDER BY name COLLATE "C", id'
)
UPDATE_AGENT = (
    "UPDATE {s}.agents SET labels = %s, annotations = %s, status = %s, token_hash = %s "
    "WHERE id = %s"
)
TOUCH_AGENT = f"UPDATE {{s}}.agents SET last_seen_at = %s WHERE id = %s RETURNING {_AGENTS}"
AGENT_BY_TOKEN_HASH = f"SELECT {_AGENTS} FROM {{s}}.agents WHERE token_hash = %s"
AGENT_EXISTS = "SELECT 1 FROM {s}.agents WHERE id = %s"


@attrs.frozen
class Statements:
    """Every statement of the store, formatted for one schema."""

    claim_next: str
    pending_for: str
    complete_many: str
    complete_many_quiet: str
    submit: str
    insert_event: str
    select_item: str
    select_item_for_update: str
    select_record: str
    select_record_for_update: str
    upsert_item: str
    insert_record: str
    callbacks_due: str
    select_callback_for_update: str
    set_callback_due: str
    insert_event_returning: str
    delete_item: str
    delete_record: str
    key_owner: str
    record_exists: str
    notify: str
    expired: str
    prune: str
    query: str
    query_log: str
    events: str
    stats: str
    target_by_key: str
    insert_target: str
    select_targets: str
    targets_for_agent: str
    insert_target_agents: str
    delete_target_agents: str
    agent_labels: str
    lock_targets: str
    insert_agent: str
    select_agent: str
    select_agent_for_update: str
    list_agents: str
    update_agent: str
    touch_agent: str
    agent_by_token_hash: str
    agent_exists: str


def quote_schema(schema: str) -> str:
    """The schema name as a quoted SQL identifier."""
    return pgsql.Identifier(schema).as_string(None)


def statements(schema: str) -> Statements:
    """Every template of this module with ``{s}`` replaced by the quoted ``schema``."""
    quoted = quote_schema(schema)
    values = {
        field.name: globals()[field.name.upper()].replace("{s}", quoted)
        for field in attrs.fields(Statements)
    }
    return Statements(**values)
