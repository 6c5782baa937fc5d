"""The SQLite store: queue, log, events and agents in one embedded database file.

Each operation below is one transaction (``workqueue_sqlite.transaction``). Inside
it the operation loads the rows it needs, applies the core's pure transition
functions (the same calls, in the same order, as
``workqueue_core.reference.store.ReferenceStore``) and writes the result back, so
the store agrees with the reference exactly. The statements are in
``workqueue_sqlite.sql``, the target rows that make claims cheap in
``workqueue_sqlite.targets``, opening and migrating in ``workqueue_sqlite.connection``.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any
from uuid import UUID

import anyio
import anyio.to_thread
import attrs

from workqueue_core.domain import callbacks, transitions
from workqueue_core.domain.errors import (
    AgentExists,
    InvalidInput,
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
from workqueue_sqlite import codec, sql
from workqueue_sqlite.connection import DEFAULT_BUSY_TIMEOUT, Synchronous, open_database
from workqueue_sqlite.transaction import Database, Tx

__all__ = ["SqliteStore"]


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidInput(f"limit must be >= 1, got {limit}")


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
        self._random = random_source or random.Random().random
        self._db = Database(conn, path, self.notifier.notify)
        self._run = self._db.run
        self._read = self._db.read

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
        conn = await anyio.to_thread.run_sync(
            open_database, target, synchronous, busy_timeout, migrate
        )
        return cls(conn, target, random_source)

    async def close(self) -> None:
        """Close the connection once every running operation has finished."""
        await self._db.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- WorkStore ------------------------------------------------------------------

    async def submit(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        return await self._run(lambda tx: _submit(tx, item, actor, now))

    async def submit_many(
        self, items: Sequence[WorkItem], actor: str, now: datetime
    ) -> list[SubmitResult]:
        """``submit`` of each item in order, in one transaction: all or nothing (one commit).

        Not part of the ``WorkStore`` port: the bulk path of batch submits.
        """

        def op(tx: Tx) -> list[SubmitResult]:
            return [_submit(tx, item, actor, now) for item in items]

        return await self._run(op)

    async def get(self, work_id: UUID) -> WorkItem | None:
        return await self._read(lambda tx: tx.item(work_id))

    async def get_record(self, work_id: UUID) -> ExecutionRecord | None:
        return await self._read(lambda tx: tx.record(work_id))

    async def query(self, query: WorkQuery) -> list[WorkItem]:
        _check_limit(query.limit)
        conditions, params = _filters(query.work_type, query.status, query.claimed_by)
        if query.after is not None:
            conditions.append("(created_at, id) > (?, ?)")
            params += [codec.to_us(query.after.at), str(query.after.id)]
        text = (
            f"SELECT {codec.ITEM_SELECT} FROM work_queue{_where(conditions)}"
            " ORDER BY created_at, id LIMIT ?"
        )

        def op(tx: Tx) -> list[WorkItem]:
            rows = tx.conn.execute(text, [*params, query.limit]).fetchall()
            return [codec.load_item(row, tx.targetings) for row in rows]

        return await self._read(op)

    async def query_log(self, query: LogQuery) -> list[ExecutionRecord]:
        _check_limit(query.limit)
        conditions, params = _filters(query.work_type, query.status, query.claimed_by)
        if query.after is not None:
            conditions.append("(finished_at, id) > (?, ?)")
            params += [codec.to_us(query.after.at), str(query.after.id)]
        text = (
            f"SELECT {codec.RECORD_SELECT} FROM work_execution_log{_where(conditions)}"
            " ORDER BY finished_at, id LIMIT ?"
        )

        def op(tx: Tx) -> list[ExecutionRecord]:
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

        def op(tx: Tx) -> list[WorkItem]:
            agent = tx.require_agent(agent_id)
            return tx.targets.claimable(agent, now, work_types, limit)

        return await self._read(op)

    async def claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        def op(tx: Tx) -> WorkItem:
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

        def op(tx: Tx) -> list[WorkItem]:
            agent = tx.require_agent(agent_id)
            return tx.claim(tx.targets.claimable_rows(agent, now, work_types, limit), agent, now)

        return await self._run(op)

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, now: datetime, local_retries: int = 0
    ) -> WorkItem:
        def op(tx: Tx) -> WorkItem:
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

        def one(tx: Tx, c: Completion) -> ExecutionRecord | WorkqueueError:
            # Every refusal is raised before anything is written, so a refused entry
            # leaves no trace in the shared transaction.
            try:
                return _complete(tx, c.token, c.agent_id, now, c.result, c.local_retries)
            except WorkqueueError as error:
                return error

        def op(tx: Tx) -> list[ExecutionRecord | WorkqueueError]:
            ids = [c.token.work_id for c in batch]
            if len(set(ids)) != len(ids):  # entries interact: one by one, in order
                return [one(tx, c) for c in batch]
            held = tx.queued(ids)
            now_us, targetings = codec.to_us(now), tx.targetings
            outcomes: list[ExecutionRecord | WorkqueueError] = []
            records: list[ExecutionRecord] = []
            moves: list[tuple[Any, ...]] = []
            events: list[tuple[Any, ...]] = []
            for c in batch:
                row = held.get(str(c.token.work_id))
                if row is None or not codec.held_under(row, c.token.attempt, c.agent_id):
                    outcomes.append(one(tx, c))  # explains the refusal; writes nothing
                    continue
                record, move, event = codec.completed_from(
                    row, targetings, c.agent_id, now, now_us, c.result, c.local_retries
                )
                records.append(record)
                moves.append(move)
                events.append(event)
                outcomes.append(record)
            if records:
                tx.write_ended(records, moves, events)
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
        def op(tx: Tx) -> WorkItem | ExecutionRecord:
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
        def op(tx: Tx) -> WorkItem:
            item = _check_token(tx, token, agent_id)
            after, event = transitions.release(item, agent_id, now, reason)
            tx.apply(after, event)
            return after

        return await self._run(op)

    async def cancel(
        self, work_id: UUID, actor: str, now: datetime, reason: str = ""
    ) -> ExecutionRecord:
        def op(tx: Tx) -> ExecutionRecord:
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
        def op(tx: Tx) -> WorkItem:
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
        def op(tx: Tx) -> WorkItem:
            record = tx.record(work_id)
            if record is None:
                item = tx.item(work_id)
                if item is None:
                    raise UnknownWork(work_id)
                record = ExecutionRecord(item, finished_at=now, finished_by=actor)
            after, event = transitions.requeue(record, actor, now)
            tx.apply(after, event)
            tx.conn.execute(sql.DELETE_CALLBACK, (str(work_id),))
            return after

        return await self._run(op)

    async def sweep(self, now: datetime, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        _check_limit(limit)

        def op(tx: Tx) -> list[WorkItem | ExecutionRecord]:
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

        def op(tx: Tx) -> int:
            doomed = tx.conn.execute(
                "SELECT id FROM work_execution_log WHERE finished_at < ?"
                " ORDER BY finished_at, id LIMIT ?",
                (codec.to_us(before), limit),
            ).fetchall()
            tx.conn.executemany("DELETE FROM work_events WHERE work_id = ?", doomed)
            tx.conn.executemany(sql.DELETE_CALLBACK, doomed)
            tx.conn.executemany(sql.DELETE_RECORD, doomed)
            return len(doomed)

        return await self._run(op)

    async def events(self, work_id: UUID) -> list[Event]:
        def op(tx: Tx) -> list[Event]:
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

        def op(tx: Tx) -> list[ExecutionRecord]:
            rows = tx.conn.execute(sql.CALLBACKS_DUE_SQL, (codec.to_us(now), limit)).fetchall()
            records = [codec.load_record(row, tx.targetings) for row in rows]
            if lease is not None:
                until = codec.to_us(callbacks.leased_until(now, lease))
                tx.conn.executemany(
                    sql.MOVE_CALLBACK,
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

        def op(tx: Tx) -> Event:
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
                tx.conn.execute(sql.DELETE_CALLBACK, key)
            else:
                tx.conn.execute(
                    sql.MOVE_CALLBACK,
                    (codec.to_us(following), str(work_id)),
                )
            event = callbacks.callback_event(record, now, detail)
            cursor = tx.conn.execute(sql.INSERT_EVENT, codec.event_values(event))
            return attrs.evolve(event, seq=int(cursor.lastrowid or 0))

        return await self._run(op)

    async def stats(self) -> Stats:
        def op(tx: Tx) -> Stats:
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
        def op(tx: Tx) -> Agent:
            if tx.one("SELECT 1 FROM agents WHERE id = ?", (str(agent.id),)) is not None:
                raise AgentExists(f"agent {agent.id} is already registered")
            if tx.one("SELECT 1 FROM agents WHERE name = ?", (agent.name,)) is not None:
                raise AgentExists(f"an agent named {agent.name!r} is already registered")
            tx.conn.execute(sql.INSERT_AGENT, codec.agent_values(agent))
            tx.targets.retarget_agent(agent)
            tx.wake = True
            return agent

        return await self._run(op)

    async def get_agent(self, agent_id: UUID) -> Agent | None:
        return await self._read(lambda tx: tx.agent(agent_id))

    async def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        def op(tx: Tx) -> list[Agent]:
            text = f"SELECT {codec.AGENT_SELECT} FROM agents"
            params: tuple[str, ...] = ()
            if status is not None:
                text += " WHERE status = ?"
                params = (status.value,)
            rows = tx.conn.execute(text + " ORDER BY name, id", params).fetchall()
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
        def op(tx: Tx) -> Agent:
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
                tx.targets.retarget_agent(updated)
            tx.wake = True
            return updated

        return await self._run(op)

    async def touch_agent(self, agent_id: UUID, now: datetime) -> Agent:
        def op(tx: Tx) -> Agent:
            updated = attrs.evolve(tx.require_agent(agent_id), last_seen_at=now)
            tx.save_agent(updated)
            return updated

        return await self._run(op)

    async def agent_by_token_hash(self, token_hash: str) -> Agent | None:
        def op(tx: Tx) -> Agent | None:
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
    tx: Tx, token: ClaimToken, agent_id: UUID, record: ExecutionRecord | None = None
) -> WorkItem:
    """``transitions.check_token`` on the rows of the token's item (``record`` if loaded)."""
    item = tx.item(token.work_id)
    if item is None and record is None:
        record = tx.record(token.work_id)
    return transitions.check_token(item, record, token, agent_id)


def _complete(
    tx: Tx,
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
    conditions: list[str] = []
    params: list[Any] = []
    if work_type is not None:
        conditions.append("work_type = ?")
        params.append(work_type)
    if status is not None:
        conditions.append("status = ?")
        params.append(status.value)
    if claimed_by is not None:
        conditions.append("claimed_by = ?")
        params.append(str(claimed_by))
    return conditions, params


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _submit(tx: Tx, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
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
