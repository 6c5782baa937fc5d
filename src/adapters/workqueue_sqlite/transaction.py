"""Transactions on the store's one connection, and the rows they load and write.

Every operation is one SQLite transaction (``BEGIN IMMEDIATE`` when it writes) run
on the connection in a worker thread; a capacity limiter of one lets a single
operation use the connection at a time. ``Tx`` is the open transaction as an
operation sees it: rows loaded and written in the core's terms.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import anyio
import anyio.to_thread

from workqueue_core.domain import callbacks
from workqueue_core.domain.errors import InvalidInput, StoreUnavailable, UnknownAgent
from workqueue_core.domain.models import Agent, Event, ExecutionRecord, WorkItem, WorkStatus
from workqueue_sqlite import codec, sql
from workqueue_sqlite.errors import unavailable
from workqueue_sqlite.targets import Targets

T = TypeVar("T")


class Tx:
    """One open transaction: row loading and writing in the core's terms."""

    def __init__(self, conn: sqlite3.Connection, targetings: codec.TargetingCache) -> None:
        self.conn = conn
        self.targetings = targetings
        self.targets = Targets(conn, targetings)
        self.wake = False
        """Set when the transaction made work claimable: waiting claimers are woken
        after the commit."""

    def one(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(statement, params).fetchone()

    def item(self, work_id: UUID) -> WorkItem | None:
        row = self.one(sql.SELECT_ITEM, (str(work_id),))
        return None if row is None else codec.load_item(row, self.targetings)

    def record(self, work_id: UUID) -> ExecutionRecord | None:
        row = self.one(sql.SELECT_RECORD, (str(work_id),))
        return None if row is None else codec.load_record(row, self.targetings)

    def in_log(self, work_id: UUID) -> bool:
        return self.one(sql.IN_LOG, (str(work_id),)) is not None

    def agent(self, agent_id: UUID) -> Agent | None:
        row = self.one(sql.SELECT_AGENT, (str(agent_id),))
        return None if row is None else codec.load_agent(row)

    def require_agent(self, agent_id: UUID) -> Agent:
        agent = self.agent(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent

    def save_agent(self, agent: Agent) -> None:
        values = codec.agent_values(agent)
        self.conn.execute(sql.UPDATE_AGENT, (*values[1:], values[0]))

    def apply(self, state: WorkItem | ExecutionRecord, event: Event | None) -> None:
        """Write the new state to the queue or the log (moving it if needed) and its event."""
        work_id = str(state.id)
        if isinstance(state, ExecutionRecord):
            self.conn.execute(sql.DELETE_TARGETS_OF_ITEM, (work_id,))
            self.apply_records([(state, event)])
            return
        self.conn.execute(sql.DELETE_RECORD, (work_id,))
        self.conn.execute(sql.INSERT_ITEM, codec.item_values(state))
        self.targets.retarget_item(state)
        if state.status is WorkStatus.PENDING:
            self.wake = True
        if event is not None:
            self.conn.execute(sql.INSERT_EVENT, codec.event_values(event))

    def queued(self, ids: Sequence[UUID]) -> dict[str, codec.Row]:
        """The queue rows (``ITEM_SELECT``) among these ids (one statement), by id text."""
        if not ids:
            return {}
        rows = self.conn.execute(
            f"SELECT {codec.ITEM_SELECT} FROM work_queue"
            f" WHERE id IN ({', '.join('?' for _ in ids)})",
            [str(work_id) for work_id in ids],
        ).fetchall()
        return {row[0]: row for row in rows}

    def claim(self, rows: Sequence[codec.Row], agent: Agent, now: datetime) -> list[WorkItem]:
        """Claim the claimable rows (``Targets.claimable_rows``) for ``agent``:
        ``transitions.claim`` of each (``codec.claimed_from``), written with a statement
        per kind of row: their claim columns, no target rows (a CLAIMED item is no
        agent's to claim), their events. Returns the claimed items."""
        if not rows:
            return []
        agent_text, now_us, targetings = str(agent.id), codec.to_us(now), self.targetings
        claims = [
            codec.claimed_from(row, targetings, agent.id, agent_text, now, now_us) for row in rows
        ]
        self.conn.executemany(sql.CLAIM_ITEM, [update for _, update, _ in claims])
        self.targets.forget([row[0] for row in rows])
        self.conn.executemany(sql.INSERT_EVENT, [event for _, _, event in claims])
        return [item for item, _, _ in claims]

    def apply_records(self, ended: Sequence[tuple[ExecutionRecord, Event | None]]) -> None:
        """Move items that ended into the log with their events, a statement per kind.

        A record's submission columns are copied from its queue row (``sql.MOVE_TO_LOG``).
        Their target rows are the caller's: a CLAIMED item has none."""
        self.write_ended(
            [record for record, _ in ended],
            [codec.ended_values(r) for r, _ in ended],
            [codec.event_values(e) for _, e in ended if e is not None],
        )

    def write_ended(
        self,
        records: Sequence[ExecutionRecord],
        moves: Sequence[Sequence[Any]],
        events: Sequence[Sequence[Any]],
    ) -> None:
        """``apply_records`` of encoded values: ``moves`` the parameters of
        ``sql.MOVE_TO_LOG`` of each record in ``records``, ``events`` their events'."""
        moved = self.conn.executemany(sql.MOVE_TO_LOG, moves).rowcount
        if moved != len(records):  # some item is not queued here: write every record whole
            self.conn.executemany(sql.INSERT_RECORD, [codec.record_values(r) for r in records])
        self.conn.executemany(sql.DELETE_ITEM, [(move[-1],) for move in moves])
        due = [
            (move[-1], move[-4], codec.to_us(at))
            for record, move in zip(records, moves, strict=True)
            if (at := callbacks.first_attempt(record)) is not None
        ]
        if due:
            self.conn.executemany(sql.PUT_CALLBACK, due)
        self.conn.executemany(sql.INSERT_EVENT, events)


class Database:
    """The store's one connection: each operation one transaction, one at a time.

    ``run(op)`` runs ``op(tx)`` in a worker thread inside a transaction, commits, and
    calls ``on_wake`` after the commit when the transaction set ``tx.wake``.
    """

    def __init__(self, conn: sqlite3.Connection, path: str, on_wake: Callable[[], None]) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = conn
        self._on_wake = on_wake
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._targetings = codec.TargetingCache()

    def _transaction(self, op: Callable[[Tx], T], write: bool) -> tuple[T, bool]:
        with self._lock:
            conn = self.conn
            if conn is None:
                raise StoreUnavailable(f"the SQLite store {self.path} is closed")
            tx = Tx(conn, self._targetings)
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
                raise unavailable(error, self.path) from error
            except OverflowError as error:  # an integer SQLite cannot store (> 64 bits)
                raise InvalidInput(f"a value is out of the range SQLite stores: {error}") from None
            return result, tx.wake

    async def run(self, op: Callable[[Tx], T], *, write: bool = True) -> T:
        """``op`` in a transaction of its own (``BEGIN IMMEDIATE`` when ``write``)."""
        result, wake = await anyio.to_thread.run_sync(
            self._transaction, op, write, limiter=self._limiter
        )
        if wake:
            self._on_wake()  # after the commit: woken claimers see the change
        return result

    async def read(self, op: Callable[[Tx], T]) -> T:
        """``op`` in a read transaction."""
        return await self.run(op, write=False)

    async def close(self) -> None:
        """Close the connection once every running operation has finished."""

        def run() -> None:
            with self._lock:
                conn, self.conn = self.conn, None
                if conn is not None:
                    conn.close()

        await anyio.to_thread.run_sync(run, limiter=self._limiter)
