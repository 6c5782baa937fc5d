"""The SQLite store: queue, log, events and agents in one embedded database file.

Every operation is one SQLite transaction (``BEGIN IMMEDIATE`` when it writes)
run on the store's single connection in a worker thread; a capacity limiter of one
lets a single operation use the connection at a time. Inside the transaction the
operation loads the rows it needs, applies the core's pure transition functions
(the same calls, in the same order, as ``workqueue_core.reference.store.ReferenceStore``)
and writes the result back, so the store agrees with the reference exactly.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final, Literal, TypeVar
from uuid import UUID

import anyio
import anyio.to_thread
import attrs

from workqueue_core.domain import callbacks, transitions
from workqueue_core.domain.errors import (
    AgentExists,
    InvalidInput,
    SchemaMismatch,
    StoreUnavailable,
    UnknownAgent,
    UnknownWork,
    WorkqueueError,
)
from workqueue_core.domain.models import (
    Agent,
    AgentStatus,
    ClaimToken,
    Completion,
    Event,
    ExecutionRecord,
    Failure,
    LogQuery,
    Stats,
    SubmitResult,
    WorkItem,
    WorkQuery,
    WorkStatus,
    quiet_outcomes,
)
from workqueue_core.domain.tokens import hashes_equal
from workqueue_core.ports import RandomSource
from workqueue_core.service.notifier import InProcessNotifier
from workqueue_sqlite import codec
from workqueue_sqlite.schema import apply_migrations, check_version

T = TypeVar("T")
Synchronous = Literal["NORMAL", "FULL"]

DEFAULT_BUSY_TIMEOUT: Final = 5.0
"""Seconds a statement waits for another connection's lock before giving up."""

WAL_AUTOCHECKPOINT_PAGES: Final = 10_000
"""WAL pages (about 40 MB) after which a commit copies the WAL back into the database.

SQLite's default, 1,000, checkpointed every few batches of claims and completions;
a tenth as often, the HTTP benchmark's SQLite rounds ran 14-24 % faster."""

_INSERT_ITEM: Final = (
    f"INSERT INTO work_queue ({codec.ITEM_SELECT})"
    f" VALUES ({', '.join('?' for _ in codec.ITEM_COLUMNS)})"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.ITEM_COLUMNS[1:])
)
_INSERT_RECORD: Final = (
    f"INSERT INTO work_execution_log ({codec.RECORD_SELECT})"
    f" VALUES ({', '.join('?' for _ in codec.RECORD_COLUMNS)})"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in codec.RECORD_COLUMNS[1:])
)
_INSERT_EVENT: Final = (
    f"INSERT INTO work_events ({', '.join(codec.EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in codec.EVENT_COLUMNS)})"
)
_INSERT_AGENT: Final = (
    f"INSERT INTO agents ({codec.AGENT_SELECT})"
    f" VALUES ({', '.join('?' for _ in codec.AGENT_COLUMNS)})"
)
_INSERT_TARGET: Final = (
    "INSERT INTO work_targets (agent_id, neg_priority, created_at, work_id) VALUES (?, ?, ?, ?)"
)
_RECORD_COLUMNS_OF_L: Final = ", ".join(f"l.{c}" for c in codec.RECORD_COLUMNS)

CALLBACKS_DUE_SQL: Final = (
    f"SELECT {_RECORD_COLUMNS_OF_L} FROM work_callbacks AS c"
    " CROSS JOIN work_execution_log AS l ON l.id = c.work_id"
    " WHERE c.next_at <= ? ORDER BY c.next_at, c.finished_at, c.work_id LIMIT ?"
)
"""Due deliveries in the order ``callbacks_due`` promises, read in that order from the
index ``work_callbacks_next``: deliveries in backoff are never read."""
_CLAIM_ITEM: Final = (
    "UPDATE work_queue SET status = ?, attempt = ?, executions = ?, local_retries = ?,"
    " claimed_by = ?, claimed_at = ?, lease_expires_at = ? WHERE id = ?"
)
"""Write a claim: exactly the columns ``transitions.claim`` changes."""
_UPDATE_AGENT: Final = (
    "UPDATE agents SET " + ", ".join(f"{c} = ?" for c in codec.AGENT_COLUMNS[1:]) + " WHERE id = ?"
)


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidInput(f"limit must be >= 1, got {limit}")


def _unavailable(error: sqlite3.Error, path: str) -> WorkqueueError:
    """The core error for a sqlite3 failure, with a message that says what to do."""
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


def _connect(path: str, synchronous: Synchronous, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if path != ":memory:" and str(mode).lower() != "wal":
            raise StoreUnavailable(f"the SQLite database {path} cannot use WAL mode ({mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    except BaseException:
        conn.close()
        raise
    return conn


async def migrate(
    path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> int:
    """Create or upgrade the schema of the database at ``path``; returns its version.

    Idempotent; refuses (``SchemaMismatch``) a file written by a newer workqueue.
    """
    target = os.fspath(path)

    def run() -> int:
        try:
            conn = _connect(target, "FULL", busy_timeout)
        except sqlite3.Error as error:
            raise _unavailable(error, target) from error
        try:
            return apply_migrations(conn)
        except sqlite3.Error as error:
            raise _unavailable(error, target) from error
        finally:
            conn.close()

    return await anyio.to_thread.run_sync(run)


class _Tx:
    """One open transaction: row loading and writing in the core's terms."""

    def __init__(self, conn: sqlite3.Connection, targetings: codec.TargetingCache) -> None:
        self.conn = conn
        self.targetings = targetings
        self.wake = False
        self._agent_labels: list[tuple[UUID, dict[str, str]]] | None = None

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()

    def item(self, work_id: UUID) -> WorkItem | None:
        row = self.one(f"SELECT {codec.ITEM_SELECT} FROM work_queue WHERE id = ?", (str(work_id),))
        return None if row is None else codec.load_item(row, self.targetings)

    def record(self, work_id: UUID) -> ExecutionRecord | None:
        row = self.one(
            f"SELECT {codec.RECORD_SELECT} FROM work_execution_log WHERE id = ?", (str(work_id),)
        )
        return None if row is None else codec.load_record(row, self.targetings)

    def in_log(self, work_id: UUID) -> bool:
        return (
            self.one("SELECT 1 FROM work_execution_log WHERE id = ?", (str(work_id),)) is not None
        )

    def agent(self, agent_id: UUID) -> Agent | None:
        row = self.one(f"SELECT {codec.AGENT_SELECT} FROM agents WHERE id = ?", (str(agent_id),))
        return None if row is None else codec.load_agent(row)

    def require_agent(self, agent_id: UUID) -> Agent:
        agent = self.agent(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent

    def save_agent(self, agent: Agent) -> None:
        values = codec.agent_values(agent)
        self.conn.execute(_UPDATE_AGENT, (*values[1:], values[0]))

    def apply(self, state: WorkItem | ExecutionRecord, event: Event | None) -> None:
        """Write the new state to the queue or the log (moving it if needed) and its event."""
        work_id = str(state.id)
        if isinstance(state, ExecutionRecord):
            self.conn.execute("DELETE FROM work_targets WHERE work_id = ?", (work_id,))
            self.apply_records([(state, event)])
            return
        self.conn.execute("DELETE FROM work_execution_log WHERE id = ?", (work_id,))
        self.conn.execute(_INSERT_ITEM, codec.item_values(state))
        self.retarget_item(state)
        if state.status is WorkStatus.PENDING:
            self.wake = True
        if event is not None:
            self.conn.execute(_INSERT_EVENT, codec.event_values(event))

    def claimable_ids(
        self, agent: Agent, now: datetime, work_types: Sequence[str] | None, limit: int
    ) -> list[UUID]:
        """Ids of the first ``limit`` items ``agent`` may claim at ``now``, in claim order.

        The agent's own ``work_targets`` rows are read in claim order (the table's
        key) and checked against the queue for status, budget, ``not_before`` and
        work type: the cost does not grow with work targeted at other agents.
        """
        if agent.status is not AgentStatus.ACTIVE:
            return []
        sql = (
            "SELECT t.work_id FROM work_targets AS t CROSS JOIN work_queue AS q"
            " ON q.id = t.work_id"
            " WHERE t.agent_id = ? AND q.status = 'PENDING'"
            " AND q.executions < q.max_executions"
            " AND (q.not_before IS NULL OR q.not_before <= ?)"
        )
        params: list[Any] = [str(agent.id), codec.to_us(now)]
        if work_types is not None:
            types = sorted(set(work_types))
            if not types:
                return []
            sql += f" AND q.work_type IN ({', '.join('?' for _ in types)})"
            params.extend(types)
        sql += " ORDER BY t.neg_priority, t.created_at, t.work_id LIMIT ?"
        params.append(limit)
        return [UUID(row[0]) for row in self.conn.execute(sql, params)]

    # --- materialised targets -------------------------------------------------------

    def agent_labels(self) -> list[tuple[UUID, dict[str, str]]]:
        """Every agent's id and labels, loaded once per transaction."""
        if self._agent_labels is None:
            rows = self.conn.execute("SELECT id, labels FROM agents").fetchall()
            self._agent_labels = [(UUID(a), codec.load_map(labels)) for a, labels in rows]
        return self._agent_labels

    def retarget_item(self, item: WorkItem) -> None:
        """Rows for ``item``: one per matching agent while it is PENDING, none otherwise."""
        work_id = str(item.id)
        self.conn.execute("DELETE FROM work_targets WHERE work_id = ?", (work_id,))
        if item.status is not WorkStatus.PENDING:
            return
        created = codec.to_us(item.created_at)
        self.conn.executemany(
            _INSERT_TARGET,
            [
                (str(agent_id), -item.priority, created, work_id)
                for agent_id, labels in self.agent_labels()
                if item.targeting.matches(agent_id, labels)
            ],
        )

    def retarget_agent(self, agent: Agent) -> None:
        """Rows for ``agent``: one per PENDING item whose targeting matches it now."""
        agent_id = str(agent.id)
        self.conn.execute("DELETE FROM work_targets WHERE agent_id = ?", (agent_id,))
        rows = self.conn.execute(
            "SELECT id, targeting, priority, created_at FROM work_queue WHERE status = 'PENDING'"
        ).fetchall()
        self.conn.executemany(
            _INSERT_TARGET,
            [
                (agent_id, -priority, created, work_id)
                for work_id, targeting, priority, created in rows
                if self.targetings.get(targeting).matches(agent.id, agent.labels)
            ],
        )
        self._agent_labels = None

    def queued(self, ids: Sequence[UUID]) -> dict[UUID, WorkItem]:
        """The queued items among these ids (one statement), by id."""
        if not ids:
            return {}
        rows = self.conn.execute(
            f"SELECT {codec.ITEM_SELECT} FROM work_queue"
            f" WHERE id IN ({', '.join('?' for _ in ids)})",
            [str(work_id) for work_id in ids],
        ).fetchall()
        found = (codec.load_item(row, self.targetings) for row in rows)
        return {item.id: item for item in found}

    def items(self, ids: Sequence[UUID]) -> list[WorkItem]:
        """The queued items with these ids, in the order given."""
        found = self.queued(ids)
        return [found[work_id] for work_id in ids]

    def apply_claims(self, claims: Sequence[tuple[WorkItem, Event]]) -> None:
        """Write ``transitions.claim`` results: their claim columns, no target rows (a
        CLAIMED item is no agent's to claim), their events; a statement per kind."""
        self.conn.executemany(
            _CLAIM_ITEM,
            [
                (
                    item.status.value,
                    item.attempt,
                    item.executions,
                    item.local_retries,
                    codec.opt_id(item.claimed_by),
                    codec.opt_us(item.claimed_at),
                    codec.opt_us(item.lease_expires_at),
                    str(item.id),
                )
                for item, _ in claims
            ],
        )
        ids = [(str(item.id),) for item, _ in claims]
        self.conn.executemany("DELETE FROM work_targets WHERE work_id = ?", ids)
        self.conn.executemany(_INSERT_EVENT, [codec.event_values(e) for _, e in claims])

    def apply_records(self, ended: Sequence[tuple[ExecutionRecord, Event | None]]) -> None:
        """Move items that ended into the log with their events, a statement per kind.

        Their target rows are the caller's: a CLAIMED item has none."""
        ids = [(str(record.id),) for record, _ in ended]
        self.conn.executemany("DELETE FROM work_queue WHERE id = ?", ids)
        self.conn.executemany(_INSERT_RECORD, [codec.record_values(r) for r, _ in ended])
        due = [
            (str(record.id), codec.to_us(record.finished_at), codec.to_us(at))
            for record, _ in ended
            if (at := callbacks.first_attempt(record)) is not None
        ]
        if due:
            self.conn.executemany(
                "INSERT OR REPLACE INTO work_callbacks (work_id, finished_at, next_at)"
                " VALUES (?, ?, ?)",
                due,
            )
        events = [codec.event_values(e) for _, e in ended if e is not None]
        self.conn.executemany(_INSERT_EVENT, events)


class SqliteStore:
    """The ``Store`` port on one SQLite database file, for a single broker process."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str,
        random_source: RandomSource | None = None,
    ) -> None:
        """Use ``SqliteStore.open``; this wraps a connection ``open`` prepared."""
        self.path = path
        self.notifier = InProcessNotifier()
        self._conn: sqlite3.Connection | None = conn
        self._random = random_source or random.Random().random
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._targetings = codec.TargetingCache()

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        random_source: RandomSource | None = None,
        migrate: bool = True,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> SqliteStore:
        """Open the database at ``path`` (``":memory:"`` for a private, temporary one).

        With ``migrate`` the schema is created or upgraded first; without it a file
        not at this code's schema version is refused with ``SchemaMismatch``.
        ``synchronous="FULL"`` (the default) makes every acknowledged write survive
        power loss too; ``"NORMAL"`` only a crash of the process.
        """
        target = os.fspath(path)
        if synchronous not in ("NORMAL", "FULL"):
            raise InvalidInput(f"synchronous must be NORMAL or FULL, got {synchronous!r}")

        def run() -> sqlite3.Connection:
            try:
                conn = _connect(target, synchronous, busy_timeout)
            except sqlite3.Error as error:
                raise _unavailable(error, target) from error
            try:
                if migrate:
                    apply_migrations(conn)
                else:
                    check_version(conn)
            except sqlite3.Error as error:
                conn.close()
                raise _unavailable(error, target) from error
            except BaseException:
                conn.close()
                raise
            return conn

        conn = await anyio.to_thread.run_sync(run)
        return cls(conn, target, random_source)

    async def close(self) -> None:
        """Close the connection once every running operation has finished."""

        def run() -> None:
            with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()

        await anyio.to_thread.run_sync(run, limiter=self._limiter)

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- plumbing -------------------------------------------------------------------

    def _transaction(self, op: Callable[[_Tx], T], write: bool) -> tuple[T, bool]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreUnavailable(f"the SQLite store {self.path} is closed")
            tx = _Tx(conn, self._targetings)
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = op(tx)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise _unavailable(error, self.path) from error
            except OverflowError as error:  # an integer SQLite cannot store (> 64 bits)
                raise InvalidInput(f"a value is out of the range SQLite stores: {error}") from None
            return result, tx.wake

    async def _run(self, op: Callable[[_Tx], T], *, write: bool = True) -> T:
        result, wake = await anyio.to_thread.run_sync(
            self._transaction, op, write, limiter=self._limiter
        )
        if wake:
            self.notifier.notify()  # after the commit: woken claimers see the change
        return result

    async def _read(self, op: Callable[[_Tx], T]) -> T:
        return await self._run(op, write=False)

    # --- WorkStore ------------------------------------------------------------------

    async def submit(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        return await self._run(lambda tx: _submit(tx, item, actor, now))

    async def submit_many(
        self, items: Sequence[WorkItem], actor: str, now: datetime
    ) -> list[SubmitResult]:
        """``submit`` of each item in order, in one transaction: all or nothing (one commit).

        Not part of the ``WorkStore`` port: the bulk path of batch submits.
        """

        def op(tx: _Tx) -> list[SubmitResult]:
            return [_submit(tx, item, actor, now) for item in items]

        return await self._run(op)

    async def get(self, work_id: UUID) -> WorkItem | None:
        return await self._read(lambda tx: tx.item(work_id))

    async def get_record(self, work_id: UUID) -> ExecutionRecord | None:
        return await self._read(lambda tx: tx.record(work_id))

    async def query(self, query: WorkQuery) -> list[WorkItem]:
        _check_limit(query.limit)
        sql, params = _filters(query.work_type, query.status, query.claimed_by)
        if query.after is not None:
            sql.append("(created_at, id) > (?, ?)")
            params += [codec.to_us(query.after.at), str(query.after.id)]
        text = (
            f"SELECT {codec.ITEM_SELECT} FROM work_queue{_where(sql)}"
            " ORDER BY created_at, id LIMIT ?"
        )

        def op(tx: _Tx) -> list[WorkItem]:
            rows = tx.conn.execute(text, [*params, query.limit]).fetchall()
            return [codec.load_item(row, tx.targetings) for row in rows]

        return await self._read(op)

    async def query_log(self, query: LogQuery) -> list[ExecutionRecord]:
        _check_limit(query.limit)
        sql, params = _filters(query.work_type, query.status, query.claimed_by)
        if query.after is not None:
            sql.append("(finished_at, id) > (?, ?)")
            params += [codec.to_us(query.after.at), str(query.after.id)]
        text = (
            f"SELECT {codec.RECORD_SELECT} FROM work_execution_log{_where(sql)}"
            " ORDER BY finished_at, id LIMIT ?"
        )

        def op(tx: _Tx) -> list[ExecutionRecord]:
            rows = tx.conn.execute(text, [*params, query.limit]).fetchall()
            return [codec.load_record(row, tx.targetings) for row in rows]

        return await self._read(op)

    async def pending_for(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[WorkItem]:
        _check_limit(limit)

        def op(tx: _Tx) -> list[WorkItem]:
            agent = tx.require_agent(agent_id)
            return tx.items(tx.claimable_ids(agent, now, work_types, limit))

        return await self._read(op)

    async def claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        def op(tx: _Tx) -> WorkItem:
            item = transitions.check_claim(
                tx.item(work_id),
                work_id,
                tx.agent(agent_id),
                agent_id,
                now,
                finished=tx.in_log(work_id),
            )
            after, event = transitions.claim(item, tx.require_agent(agent_id), now)
            tx.apply(after, event)
            return after

        return await self._run(op)

    async def claim_next(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
    ) -> list[WorkItem]:
        _check_limit(limit)

        def op(tx: _Tx) -> list[WorkItem]:
            agent = tx.require_agent(agent_id)
            claims = [
                transitions.claim(item, agent, now)
                for item in tx.items(tx.claimable_ids(agent, now, work_types, limit))
            ]
            tx.apply_claims(claims)
            return [item for item, _ in claims]

        return await self._run(op)

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, now: datetime, local_retries: int = 0
    ) -> WorkItem:
        def op(tx: _Tx) -> WorkItem:
            item = _check_token(tx, token, agent_id)
            after, event = transitions.heartbeat(item, agent_id, now, local_retries)
            tx.apply(after, event)
            return after

        return await self._run(op)

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        return await self._run(
            lambda tx: _complete(tx, token, agent_id, now, result, local_retries)
        )

    async def complete_many(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[ExecutionRecord | WorkqueueError]:
        batch = list(completions)

        def one(tx: _Tx, c: Completion) -> ExecutionRecord | WorkqueueError:
            # Every refusal is raised before anything is written, so a refused entry
            # leaves no trace in the shared transaction.
            try:
                return _complete(tx, c.token, c.agent_id, now, c.result, c.local_retries)
            except WorkqueueError as error:
                return error

        def op(tx: _Tx) -> list[ExecutionRecord | WorkqueueError]:
            ids = [c.token.work_id for c in batch]
            if len(set(ids)) != len(ids):  # entries interact: one by one, in order
                return [one(tx, c) for c in batch]
            held = tx.queued(ids)
            outcomes: list[ExecutionRecord | WorkqueueError] = []
            ended: list[tuple[ExecutionRecord, Event]] = []
            for c in batch:
                item = held.get(c.token.work_id)
                if (
                    item is None
                    or item.status is not WorkStatus.CLAIMED
                    or item.attempt != c.token.attempt
                    or item.claimed_by != c.agent_id
                ):
                    outcomes.append(one(tx, c))  # explains the refusal; writes nothing
                    continue
                try:
                    record, event = transitions.complete(
                        item, c.agent_id, now, c.result, c.local_retries
                    )
                except WorkqueueError as error:
                    outcomes.append(error)
                    continue
                ended.append((record, event))
                outcomes.append(record)
            tx.apply_records(ended)
            return outcomes

        return await self._run(op)

    async def complete_many_quiet(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[WorkqueueError | None]:
        return quiet_outcomes(await self.complete_many(completions, now))

    async def fail(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        failure: Failure,
        local_retries: int = 0,
    ) -> WorkItem | ExecutionRecord:
        def op(tx: _Tx) -> WorkItem | ExecutionRecord:
            logged = tx.record(token.work_id)
            repeated = transitions.repeated_report(logged, token, agent_id, WorkStatus.FAILED)
            if repeated is not None:
                return repeated
            item = _check_token(tx, token, agent_id, logged)
            state, event = transitions.fail(
                item, failure, transitions.agent_actor(agent_id), now, self._random(), local_retries
            )
            tx.apply(state, event)
            return state

        return await self._run(op)

    async def release(
        self, token: ClaimToken, agent_id: UUID, now: datetime, reason: str = ""
    ) -> WorkItem:
        def op(tx: _Tx) -> WorkItem:
            item = _check_token(tx, token, agent_id)
            after, event = transitions.release(item, agent_id, now, reason)
            tx.apply(after, event)
            return after

        return await self._run(op)

    async def cancel(
        self, work_id: UUID, actor: str, now: datetime, reason: str = ""
    ) -> ExecutionRecord:
        def op(tx: _Tx) -> ExecutionRecord:
            item = tx.item(work_id)
            if item is None:
                record = tx.record(work_id)
                if record is None:
                    raise UnknownWork(work_id)
                transitions.cancel(record.item, actor, now)  # raises InvalidTransition
                raise AssertionError("unreachable")  # pragma: no cover
            record, event = transitions.cancel(item, actor, now, reason)
            tx.apply(record, event)
            return record

        return await self._run(op)

    async def approve(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        def op(tx: _Tx) -> WorkItem:
            item = tx.item(work_id)
            if item is None:
                record = tx.record(work_id)
                if record is None:
                    raise UnknownWork(work_id)
                item = record.item
            after, event = transitions.approve(item, actor, now)
            tx.apply(after, event)
            return after

        return await self._run(op)

    async def requeue(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        def op(tx: _Tx) -> WorkItem:
            record = tx.record(work_id)
            if record is None:
                item = tx.item(work_id)
                if item is None:
                    raise UnknownWork(work_id)
                record = ExecutionRecord(item, finished_at=now, finished_by=actor)
            after, event = transitions.requeue(record, actor, now)
            tx.apply(after, event)
            tx.conn.execute("DELETE FROM work_callbacks WHERE work_id = ?", (str(work_id),))
            return after

        return await self._run(op)

    async def sweep(self, now: datetime, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        _check_limit(limit)

        def op(tx: _Tx) -> list[WorkItem | ExecutionRecord]:
            rows = tx.conn.execute(
                f"SELECT {codec.ITEM_SELECT} FROM work_queue"
                " WHERE status = 'CLAIMED' AND lease_expires_at <= ?"
                " ORDER BY lease_expires_at, id LIMIT ?",
                (codec.to_us(now), limit),
            ).fetchall()
            results: list[WorkItem | ExecutionRecord] = []
            for row in rows:
                item = codec.load_item(row, tx.targetings)
                state, event = transitions.expire(item, now, self._random())
                tx.apply(state, event)
                results.append(state)
            return results

        return await self._run(op)

    async def prune(self, before: datetime, limit: int = 10_000) -> int:
        _check_limit(limit)

        def op(tx: _Tx) -> int:
            doomed = tx.conn.execute(
                "SELECT id FROM work_execution_log WHERE finished_at < ?"
                " ORDER BY finished_at, id LIMIT ?",
                (codec.to_us(before), limit),
            ).fetchall()
            tx.conn.executemany("DELETE FROM work_events WHERE work_id = ?", doomed)
            tx.conn.executemany("DELETE FROM work_callbacks WHERE work_id = ?", doomed)
            tx.conn.executemany("DELETE FROM work_execution_log WHERE id = ?", doomed)
            return len(doomed)

        return await self._run(op)

    async def events(self, work_id: UUID) -> list[Event]:
        def op(tx: _Tx) -> list[Event]:
            rows = tx.conn.execute(
                f"SELECT {codec.EVENT_SELECT} FROM work_events WHERE work_id = ? ORDER BY seq",
                (str(work_id),),
            ).fetchall()
            return [codec.load_event(row) for row in rows]

        return await self._read(op)

    async def callbacks_due(
        self, now: datetime, limit: int = 100, lease: timedelta | None = None
    ) -> list[ExecutionRecord]:
        _check_limit(limit)
        callbacks.check_lease(lease)

        def op(tx: _Tx) -> list[ExecutionRecord]:
            rows = tx.conn.execute(CALLBACKS_DUE_SQL, (codec.to_us(now), limit)).fetchall()
            records = [codec.load_record(row, tx.targetings) for row in rows]
            if lease is not None:
                until = codec.to_us(callbacks.leased_until(now, lease))
                tx.conn.executemany(
                    "UPDATE work_callbacks SET next_at = ? WHERE work_id = ?",
                    [(until, str(r.id)) for r in records],
                )
            return records

        return await self._run(op, write=lease is not None)

    async def record_callback(
        self,
        work_id: UUID,
        now: datetime,
        *,
        delivered: bool,
        detail: str,
        retry_at: datetime | None,
        finished_at: datetime | None = None,
    ) -> Event:
        callbacks.check_retry_at(retry_at)

        def op(tx: _Tx) -> Event:
            key = (str(work_id),)
            record = tx.record(work_id)
            pending = (
                record is not None
                and tx.one("SELECT 1 FROM work_callbacks WHERE work_id = ?", key) is not None
            )
            record = callbacks.check_callback(
                work_id, tx.item(work_id) if record is None else None, record, pending, finished_at
            )
            following = callbacks.next_attempt(delivered, retry_at)
            if following is None:
                tx.conn.execute("DELETE FROM work_callbacks WHERE work_id = ?", key)
            else:
                tx.conn.execute(
                    "UPDATE work_callbacks SET next_at = ? WHERE work_id = ?",
                    (codec.to_us(following), str(work_id)),
                )
            event = callbacks.callback_event(record, now, detail)
            cursor = tx.conn.execute(_INSERT_EVENT, codec.event_values(event))
            return attrs.evolve(event, seq=int(cursor.lastrowid or 0))

        return await self._run(op)

    async def stats(self) -> Stats:
        def op(tx: _Tx) -> Stats:
            rows = tx.conn.execute(
                "SELECT work_type, status, COUNT(*) FROM work_queue GROUP BY work_type, status"
                " UNION ALL SELECT work_type, status, COUNT(*) FROM work_execution_log"
                " GROUP BY work_type, status"
            ).fetchall()
            counts: dict[tuple[str, WorkStatus], int] = {}
            for work_type, status, n in rows:
                key = (work_type, WorkStatus(status))
                counts[key] = counts.get(key, 0) + n
            return Stats(counts)

        return await self._read(op)

    # --- AgentRegistry ------------------------------------------------------------------

    async def register_agent(self, agent: Agent) -> Agent:
        def op(tx: _Tx) -> Agent:
            if tx.one("SELECT 1 FROM agents WHERE id = ?", (str(agent.id),)) is not None:
                raise AgentExists(f"agent {agent.id} is already registered")
            if tx.one("SELECT 1 FROM agents WHERE name = ?", (agent.name,)) is not None:
                raise AgentExists(f"an agent named {agent.name!r} is already registered")
            tx.conn.execute(_INSERT_AGENT, codec.agent_values(agent))
            tx.retarget_agent(agent)
            tx.wake = True
            return agent

        return await self._run(op)

    async def get_agent(self, agent_id: UUID) -> Agent | None:
        return await self._read(lambda tx: tx.agent(agent_id))

    async def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        def op(tx: _Tx) -> list[Agent]:
            sql = f"SELECT {codec.AGENT_SELECT} FROM agents"
            params: tuple[str, ...] = ()
            if status is not None:
                sql += " WHERE status = ?"
                params = (status.value,)
            rows = tx.conn.execute(sql + " ORDER BY name, id", params).fetchall()
            return [codec.load_agent(row) for row in rows]

        return await self._read(op)

    async def update_agent(
        self,
        agent_id: UUID,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        status: AgentStatus | None = None,
        token_hash: str | None = None,
    ) -> Agent:
        def op(tx: _Tx) -> Agent:
            agent = tx.require_agent(agent_id)
            updated = attrs.evolve(
                agent,
                labels=agent.labels if labels is None else labels,
                annotations=agent.annotations if annotations is None else annotations,
                status=agent.status if status is None else status,
                token_hash=agent.token_hash if token_hash is None else token_hash,
            )
            tx.save_agent(updated)
            if updated.labels != agent.labels:
                tx.retarget_agent(updated)
            tx.wake = True
            return updated

        return await self._run(op)

    async def touch_agent(self, agent_id: UUID, now: datetime) -> Agent:
        def op(tx: _Tx) -> Agent:
            updated = attrs.evolve(tx.require_agent(agent_id), last_seen_at=now)
            tx.save_agent(updated)
            return updated

        return await self._run(op)

    async def agent_by_token_hash(self, token_hash: str) -> Agent | None:
        def op(tx: _Tx) -> Agent | None:
            row = tx.one(
                f"SELECT {codec.AGENT_SELECT} FROM agents WHERE token_hash = ?"
                " ORDER BY name, id LIMIT 1",
                (token_hash,),
            )
            if row is None:
                return None
            agent = codec.load_agent(row)
            assert agent.token_hash is not None
            return agent if hashes_equal(agent.token_hash, token_hash) else None

        return await self._read(op)


# --- helpers shared by several operations ---------------------------------------------


def _check_token(
    tx: _Tx, token: ClaimToken, agent_id: UUID, record: ExecutionRecord | None = None
) -> WorkItem:
    """``transitions.check_token`` on the rows of the token's item (``record`` if loaded)."""
    item = tx.item(token.work_id)
    if item is None and record is None:
        record = tx.record(token.work_id)
    return transitions.check_token(item, record, token, agent_id)


def _complete(
    tx: _Tx,
    token: ClaimToken,
    agent_id: UUID,
    now: datetime,
    result: str | None,
    local_retries: int,
) -> ExecutionRecord:
    logged = tx.record(token.work_id)
    repeated = transitions.repeated_report(logged, token, agent_id, WorkStatus.SUCCEEDED)
    if repeated is not None:
        return repeated
    item = _check_token(tx, token, agent_id, logged)
    record, event = transitions.complete(item, agent_id, now, result, local_retries)
    tx.apply(record, event)
    return record


def _filters(
    work_type: str | None, status: WorkStatus | None, claimed_by: UUID | None
) -> tuple[list[str], list[Any]]:
    sql: list[str] = []
    params: list[Any] = []
    if work_type is not None:
        sql.append("work_type = ?")
        params.append(work_type)
    if status is not None:
        sql.append("status = ?")
        params.append(status.value)
    if claimed_by is not None:
        sql.append("claimed_by = ?")
        params.append(str(claimed_by))
    return sql, params


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _submit(tx: _Tx, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
    """``submit`` of one item inside ``tx``: the item its key names, or the new item."""
    key = item.idempotency_key
    if key is not None:
        for table in ("work_queue", "work_execution_log"):
            row = tx.one(f"SELECT id FROM {table} WHERE idempotency_key = ?", (key,))
            if row is not None:
                known = UUID(row[0])
                found = tx.item(known) or tx.record(known)
                assert found is not None
                return SubmitResult(found, created=False)
    if tx.item(item.id) is not None or tx.in_log(item.id):
        raise InvalidInput(f"work item {item.id} already exists")
    event = transitions.submitted(item, actor, now)
    tx.apply(item, event)
    return SubmitResult(item, created=True)
