"""The PostgreSQL store: ``WorkStore`` + ``AgentRegistry`` on psycopg 3 and psycopg_pool.

The hot paths (``submit``, ``claim_next``, ``complete``/``complete_many``) are single
statements from ``workqueue_postgres.sql``, one round trip each, that agree with
``workqueue_core.domain.transitions``. Every other operation loads its row ``FOR UPDATE``
in a transaction, applies the pure transition function and writes the result back
with its event, so the rules live in one place. Time is always the caller's ``now``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any
from uuid import UUID

import attrs
import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from workqueue_core._stored import BoundedCache
from workqueue_core.domain import callbacks, transitions
from workqueue_core.domain.errors import (
    AgentExists,
    InvalidInput,
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
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
    quiet_outcomes,
)
from workqueue_core.ports import RandomSource
from workqueue_postgres import codec
from workqueue_postgres.errors import describe
from workqueue_postgres.notifier import PostgresNotifier, channel_for
from workqueue_postgres.schema import check_version, lock_key
from workqueue_postgres.schema import migrate as run_migrations
from workqueue_postgres.sql import ITEM_COLUMNS, Statements, statements

Conn = psycopg.AsyncConnection[tuple[Any, ...]]

TARGET_CACHE_SIZE = 4096
"""Most targetings (and their keys) a store keeps decoded; the rest are read again."""
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed)
_CONNECT_KWARGS = {"options": "-c TimeZone=UTC", "autocommit": True}


async def _configure(conn: Conn) -> None:
    """Set up a new pooled connection: the store's faster ``jsonb`` loader."""
    conn.adapters.register_loader("jsonb", codec.JsonbLoader)
    conn.adapters.register_dumper(codec.UuidArray, codec.UuidArrayDumper)
    conn.adapters.register_dumper(codec.Int4Array, codec.Int4ArrayDumper)


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidInput(f"limit must be >= 1, got {limit}")


class PostgresStore:
    """Queue, execution log, events and agents in one PostgreSQL schema.

    Open with ``await PostgresStore.open(dsn)``; close with ``await store.close()``
    or use it as ``async with``. ``notifier`` wakes claimers on new eligible work.
    """

    def __init__(
        self,
        dsn: str,
        schema: str,
        pool: AsyncConnectionPool[Conn],
        notifier: PostgresNotifier,
        random_source: RandomSource,
    ) -> None:
        self._dsn = dsn
        self.schema = schema
        self._pool = pool
        self.notifier = notifier
        self._random = random_source
        self.sql: Statements = statements(schema)
        self._channel = notifier.channel
        self._target_ids: BoundedCache[str, int] = BoundedCache(TARGET_CACHE_SIZE)
        self._targets: BoundedCache[int, Targeting] = BoundedCache(TARGET_CACHE_SIZE)
        self._targets_lock_key = lock_key(schema, "targets")
        self._checking = False

    # --- lifecycle ------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = "workqueue",
        min_size: int = 1,
        max_size: int = 10,
        random_source: RandomSource | None = None,
        migrate: bool = True,
        timeout: float = 5.0,
    ) -> PostgresStore:
        """Connect (and migrate unless ``migrate=False``); ``timeout`` bounds waits for a
        connection, after which operations raise ``StoreUnavailable``."""
        if migrate:
            await run_migrations(dsn, schema)
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs=dict(_CONNECT_KWARGS),
            timeout=timeout,
            open=False,
            name=f"workqueue:{schema}",
            configure=_configure,
        )
        notifier = PostgresNotifier(
            dsn, channel_for(schema), connect_kwargs={"options": "-c TimeZone=UTC"}
        )
        try:
            # The listener connects while the pool does, and the version is checked
            # on a pooled connection: opening costs one connection time, not three.
            await asyncio.gather(pool.open(wait=True, timeout=timeout), notifier.start(timeout))
            if not migrate:
                async with pool.connection() as conn:
                    await check_version(conn, schema)
        except BaseException as error:
            await notifier.close()
            await pool.close()
            if isinstance(error, _UNAVAILABLE):
                raise StoreUnavailable(describe("open", dsn, error)) from None
            raise
        return cls(dsn, schema, pool, notifier, random_source or random.Random().random)

    async def close(self) -> None:
        """Stop listening and close every connection."""
        await self.notifier.close()
        await self._pool.close()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- plumbing ----------------------------------------------------------------

    @asynccontextmanager
    async def _conn(self, operation: str) -> AsyncIterator[Conn]:
        """A pooled autocommit connection; connection failures become StoreUnavailable."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except _UNAVAILABLE as error:
            self._check_pool_soon()
            raise StoreUnavailable(describe(operation, self._dsn, error)) from None

    @asynccontextmanager
    async def _tx(self, operation: str) -> AsyncIterator[Conn]:
        """A transaction on a pooled connection: committed whole or rolled back."""
        async with self._conn(operation) as conn, conn.transaction():
            yield conn

    def _check_pool_soon(self) -> None:
        """After a connection failure, replace the pool's other dead connections too."""
        if self._checking or self._pool.closed:
            return
        self._checking = True

        async def check() -> None:
            try:
                await self._pool.check()
            except Exception:  # best effort: the next operation reports
                pass
            finally:
                self._checking = False

        asyncio.get_running_loop().create_task(check())

    async def _fetchall(self, conn: Conn, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = conn.cursor(binary=True)
        await cur.execute(query, params)
        return await cur.fetchall()

    async def _fetchone(self, conn: Conn, query: str, params: Any = None) -> tuple[Any, ...] | None:
        cur = conn.cursor(binary=True)
        await cur.execute(query, params)
        return await cur.fetchone()

    # --- targets --------------------------------------------------------------------

    async def _target_id(self, targeting: Targeting) -> int:
        """The id of the targeting's ``work_targets`` row, created (and materialised) if new.

        Created in a transaction of its own so the cache only holds committed rows.
        """
        key = codec.targeting_key(targeting)
        found = self._target_ids.get(key)
        if found is not None:
            return found
        async with self._tx("submit") as conn:
            row = await self._fetchone(conn, self.sql.target_by_key, (key,))
            if row is None:
                await conn.execute(self.sql.lock_targets, (self._targets_lock_key,))
                row = await self._fetchone(
                    conn,
                    self.sql.insert_target,
                    (
                        key,
                        list(targeting.agent_ids),
                        Jsonb(codec.selector_json(targeting.selector))
                        if targeting.selector is not None
                        else None,
                    ),
                )
                if row is None:
                    row = await self._fetchone(conn, self.sql.target_by_key, (key,))
                else:
                    agents = await self._fetchall(conn, self.sql.agent_labels)
                    matching = [a for a, labels in agents if targeting.matches(a, labels)]
                    if matching:
                        await conn.execute(
                            self.sql.insert_target_agents, (matching, [row[0]] * len(matching))
                        )
        assert row is not None
        target_id = int(row[0])
        self._remember(target_id, targeting)
        return target_id

    async def _rematerialise(self, conn: Conn, agent: Agent, *, fresh: bool) -> None:
        """Recompute which targets ``agent`` matches (under the targets lock)."""
        await conn.execute(self.sql.lock_targets, (self._targets_lock_key,))
        if not fresh:
            await conn.execute(self.sql.delete_target_agents, (agent.id,))
        rows = await self._fetchall(conn, self.sql.targets_for_agent, (agent.id,))
        matching = []
        for target_id, agent_ids, selector in rows:
            targeting = self._targets.get(target_id) or codec.targeting_from(agent_ids, selector)
            if targeting.matches(agent.id, agent.labels):
                matching.append(target_id)
        if matching:
            await conn.execute(
                self.sql.insert_target_agents, ([agent.id] * len(matching), matching)
            )

    async def _load_targets(
        self, conn: Conn, rows: Sequence[Sequence[Any]]
    ) -> dict[int, Targeting]:
        """The targeting of every row's target, from the cache or read (and cached)."""
        found: dict[int, Targeting] = {}
        missing: set[int] = set()
        for row in rows:
            target_id = row[3]
            if target_id not in found and target_id not in missing:
                targeting = self._targets.get(target_id)
                if targeting is None:
                    missing.add(target_id)
                else:
                    found[target_id] = targeting
        if missing:
            for target_id, agent_ids, selector in await self._fetchall(
                conn, self.sql.select_targets, (list(missing),)
            ):
                found[target_id] = self._remember(
                    target_id, codec.targeting_from(agent_ids, selector)
                )
        return found

    def _remember(self, target_id: int, targeting: Targeting) -> Targeting:
        self._target_ids.put(codec.targeting_key(targeting), target_id)
        return self._targets.put(target_id, targeting)

    async def _items(self, conn: Conn, rows: Sequence[Sequence[Any]]) -> list[WorkItem]:
        targets = await self._load_targets(conn, rows)
        return [codec.item_from(row, targets) for row in rows]

    async def _records(self, conn: Conn, rows: Sequence[Sequence[Any]]) -> list[ExecutionRecord]:
        targets = await self._load_targets(conn, rows)
        return [codec.record_from(row, targets) for row in rows]

    # --- generic load / apply ------------------------------------------------------------

    async def _load_item(self, conn: Conn, work_id: UUID, lock: bool = True) -> WorkItem | None:
        query = self.sql.select_item_for_update if lock else self.sql.select_item
        row = await self._fetchone(conn, query, (work_id,))
        return None if row is None else (await self._items(conn, [row]))[0]

    async def _load_record(
        self, conn: Conn, work_id: UUID, lock: bool = True
    ) -> ExecutionRecord | None:
        query = self.sql.select_record_for_update if lock else self.sql.select_record
        row = await self._fetchone(conn, query, (work_id,))
        return None if row is None else (await self._records(conn, [row]))[0]

    async def _apply(
        self,
        conn: Conn,
        state: WorkItem | ExecutionRecord,
        event: Event | None,
        *,
        from_log: bool = False,
    ) -> None:
        """Write ``state`` where it belongs (queue or log) with its event, in ``conn``'s tx."""
        item = state.item if isinstance(state, ExecutionRecord) else state
        target_id = await self._target_id(item.targeting)
        if isinstance(state, ExecutionRecord):
            await conn.execute(self.sql.delete_item, (state.id,))
            await conn.execute(
                self.sql.insert_record,
                (*codec.record_params(state, target_id), callbacks.first_attempt(state)),
            )
        else:
            if from_log:
                await conn.execute(self.sql.delete_record, (state.id,))
            await conn.execute(self.sql.upsert_item, codec.item_params(state, target_id))
        if event is not None:
            await conn.execute(self.sql.insert_event, codec.event_params(event))
        if isinstance(state, WorkItem) and state.status is WorkStatus.PENDING:
            await conn.execute(self.sql.notify, (self._channel,))

    async def _agent(self, conn: Conn, agent_id: UUID, lock: bool = False) -> Agent:
        query = self.sql.select_agent_for_update if lock else self.sql.select_agent
        row = await self._fetchone(conn, query, (agent_id,))
        if row is None:
            raise UnknownAgent(agent_id)
        return codec.agent_from(row)

    # --- WorkStore: submit and reads ---------------------------------------------------------

    def _submit_params(self, item: WorkItem, target_id: int, actor: str, now: datetime) -> Any:
        params = dict(zip(ITEM_COLUMNS, codec.item_params(item, target_id), strict=True))
        params.update(actor=actor, now=now, channel=self._channel)
        return params

    async def _existing(self, conn: Conn, key: str) -> SubmitResult | None:
        """The result of a submit whose idempotency key is already taken, if it still is."""
        row = await self._fetchone(conn, self.sql.key_owner, (key,))
        if row is None:
            return None
        known = await self._load_item(conn, row[0], lock=False) or await self._load_record(
            conn, row[0], lock=False
        )
        return None if known is None else SubmitResult(known, created=False)

    async def submit(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        """Store a new PENDING or HELD item, or return the item its idempotency key names."""
        if item.status not in (WorkStatus.PENDING, WorkStatus.HELD):
            return await self._submit_refused(item, actor, now)
        target_id = await self._target_id(item.targeting)
        params = self._submit_params(item, target_id, actor, now)
        for _ in range(3):
            async with self._conn("submit") as conn:
                if item.idempotency_key is None:
                    row = await self._fetchone(conn, self.sql.submit, params)
                    assert row is not None
                    if row[0]:
                        return SubmitResult(item, created=True)
                    raise InvalidInput(f"work item {item.id} already exists")
                async with conn.transaction():  # a refused id must not keep its key
                    row = await self._fetchone(conn, self.sql.submit, params)
                    assert row is not None
                    if row[0]:
                        return SubmitResult(item, created=True)
                    if row[1]:
                        raise InvalidInput(f"work item {item.id} already exists")
                existing = await self._existing(conn, item.idempotency_key)
                if existing is not None:
                    return existing
        raise StoreUnavailable(f"submit of {item.id}: its idempotency key kept changing owner")

    async def submit_many(
        self, items: Sequence[WorkItem], actor: str, now: datetime
    ) -> list[SubmitResult]:
        """Submit several items in one transaction (pipelined); all or nothing.

        Not part of the ``WorkStore`` port: a bulk path for producers and benchmarks.
        A duplicate id refuses the whole batch with ``InvalidInput``.
        """
        if any(i.status not in (WorkStatus.PENDING, WorkStatus.HELD) for i in items):
            return [await self.submit(i, actor, now) for i in items]
        params = [
            self._submit_params(i, await self._target_id(i.targeting), actor, now) for i in items
        ]
        results: list[SubmitResult] = []
        async with self._tx("submit_many") as conn:
            cur = conn.cursor(binary=True)
            await cur.executemany(self.sql.submit, params, returning=True)
            outcomes: list[tuple[Any, ...]] = []
            while True:
                row = await cur.fetchone()
                assert row is not None
                outcomes.append(row)
                if not cur.nextset():
                    break
            for item, (inserted, keyed, _) in zip(items, outcomes, strict=True):
                if inserted:
                    results.append(SubmitResult(item, created=True))
                    continue
                existing = None
                if item.idempotency_key is not None and not keyed:
                    existing = await self._existing(conn, item.idempotency_key)
                if existing is None:
                    raise InvalidInput(f"work item {item.id} already exists")
                results.append(existing)
        return results

    async def _submit_refused(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        """A submit of an item in a state no new item can have: the reference's order of checks."""
        async with self._conn("submit") as conn:
            if item.idempotency_key is not None:
                existing = await self._existing(conn, item.idempotency_key)
                if existing is not None:
                    return existing
            if await self._load_item(conn, item.id, lock=False) is not None or (
                await self._fetchone(conn, self.sql.record_exists, (item.id,))
            ):
                raise InvalidInput(f"work item {item.id} already exists")
        transitions.submitted(item, actor, now)  # raises InvalidTransition
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, work_id: UUID) -> WorkItem | None:
        async with self._conn("get") as conn:
            return await self._load_item(conn, work_id, lock=False)

    async def get_record(self, work_id: UUID) -> ExecutionRecord | None:
        async with self._conn("get_record") as conn:
            return await self._load_record(conn, work_id, lock=False)

    def _query_params(self, query: WorkQuery | LogQuery) -> dict[str, Any]:
        return {
            "work_type": query.work_type,
            "status": None if query.status is None else query.status.value,
            "claimed_by": query.claimed_by,
            "after_at": None if query.after is None else query.after.at,
            "after_id": None if query.after is None else query.after.id,
            "limit": query.limit,
        }

    async def query(self, query: WorkQuery) -> list[WorkItem]:
        _check_limit(query.limit)
        async with self._conn("query") as conn:
            rows = await self._fetchall(conn, self.sql.query, self._query_params(query))
            return await self._items(conn, rows)

    async def query_log(self, query: LogQuery) -> list[ExecutionRecord]:
        _check_limit(query.limit)
        async with self._conn("query_log") as conn:
            rows = await self._fetchall(conn, self.sql.query_log, self._query_params(query))
            return await self._records(conn, rows)

    async def pending_for(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[WorkItem]:
        _check_limit(limit)
        async with self._conn("pending_for") as conn:
            agent = await self._agent(conn, agent_id)
            if agent.status is not AgentStatus.ACTIVE:
                return []
            rows = await self._fetchall(
                conn,
                self.sql.pending_for,
                {
                    "agent": agent_id,
                    "now": now,
                    "types": None if work_types is None else list(work_types),
                    "limit": limit,
                },
            )
            return await self._items(conn, rows)

    # --- claims ---------------------------------------------------------------------------

    async def claim(self, work_id: UUID, agent_id: UUID, now: datetime) -> WorkItem:
        async with self._tx("claim") as conn:
            agent_row = await self._fetchone(conn, self.sql.select_agent, (agent_id,))
            agent = None if agent_row is None else codec.agent_from(agent_row)
            item = await self._load_item(conn, work_id) if agent is not None else None
            finished = (
                agent is not None
                and item is None
                and await self._fetchone(conn, self.sql.record_exists, (work_id,)) is not None
            )
            item = transitions.check_claim(item, work_id, agent, agent_id, now, finished=finished)
            assert agent is not None
            after, event = transitions.claim(item, agent, now)
            await self._apply(conn, after, event)
            return after

    async def claim_next(
        self,
        agent_id: UUID,
        now: datetime,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
    ) -> list[WorkItem]:
        _check_limit(limit)
        params = {
            "agent": agent_id,
            "now": now,
            "types": None if work_types is None else list(work_types),
            "limit": limit,
        }
        async with self._conn("claim_next") as conn:
            rows = await self._fetchall(conn, self.sql.claim_next, params)
            if not rows:
                if await self._fetchone(conn, self.sql.agent_exists, (agent_id,)) is None:
                    raise UnknownAgent(agent_id)
                return []
            targets = await self._load_targets(conn, rows)
        return [codec.claimed_from(row, targets, agent_id, now) for row in rows]

    # --- claim holders ------------------------------------------------------------------------

    async def _held(
        self, conn: Conn, token: ClaimToken, agent_id: UUID
    ) -> tuple[WorkItem | None, ExecutionRecord | None]:
        item = await self._load_item(conn, token.work_id)
        record = None if item is not None else await self._load_record(conn, token.work_id)
        return item, record

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, now: datetime, local_retries: int = 0
    ) -> WorkItem:
        async with self._tx("heartbeat") as conn:
            item, record = await self._held(conn, token, agent_id)
            held = transitions.check_token(item, record, token, agent_id)
            after, event = transitions.heartbeat(held, agent_id, now, local_retries)
            await self._apply(conn, after, event)
            return after

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        (outcome,) = await self.complete_many(
            [Completion(token, agent_id, result, local_retries)], now
        )
        if isinstance(outcome, WorkqueueError):
            raise outcome
        return outcome

    async def complete_many(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[ExecutionRecord | WorkqueueError]:
        if not completions:
            return []
        params = _completion_params(completions, now)
        if params is None:  # entries interact: complete them one by one, in order
            return [await self._complete_one(c, now) for c in completions]
        async with self._conn("complete_many") as conn:
            rows = await self._fetchall(conn, self.sql.complete_many, params)
            records = {r.id: r for r in await self._records(conn, rows)}
        outcomes: list[ExecutionRecord | WorkqueueError] = []
        for c in completions:
            record = records.get(c.token.work_id)
            outcomes.append(record if record is not None else await self._complete_one(c, now))
        return outcomes

    async def complete_many_quiet(
        self, completions: Sequence[Completion], now: datetime
    ) -> list[WorkqueueError | None]:
        if not completions:
            return []
        params = _completion_params(completions, now)
        if params is None:
            return quiet_outcomes([await self._complete_one(c, now) for c in completions])
        async with self._conn("complete_many") as conn:
            rows = await self._fetchall(conn, self.sql.complete_many_quiet, params)
        if len(rows) == len(completions):  # distinct ids, one row each: all completed
            return [None] * len(completions)
        completed = {row[0] for row in rows}
        outcomes: list[WorkqueueError | None] = []
        for c in completions:
            if c.token.work_id in completed:
                outcomes.append(None)
            else:  # refused, or a repeated completion: the one-by-one path explains it
                outcomes.extend(quiet_outcomes([await self._complete_one(c, now)]))
        return outcomes

    async def _complete_one(self, c: Completion, now: datetime) -> ExecutionRecord | WorkqueueError:
        """One completion through the transition functions: the path that explains refusals."""
        try:
            async with self._tx("complete") as conn:
                item, record = await self._held(conn, c.token, c.agent_id)
                repeated = transitions.repeated_report(
                    record, c.token, c.agent_id, WorkStatus.SUCCEEDED
                )
                if repeated is not None:
                    return repeated
                held = transitions.check_token(item, record, c.token, c.agent_id)
                done, event = transitions.complete(held, c.agent_id, now, c.result, c.local_retries)
                await self._apply(conn, done, event)
                return done
        except StoreUnavailable:
            raise
        except WorkqueueError as error:
            return error

    async def fail(
        self,
        token: ClaimToken,
        agent_id: UUID,
        now: datetime,
        failure: Failure,
        local_retries: int = 0,
    ) -> WorkItem | ExecutionRecord:
        async with self._tx("fail") as conn:
            item, record = await self._held(conn, token, agent_id)
            repeated = transitions.repeated_report(record, token, agent_id, WorkStatus.FAILED)
            if repeated is not None:
                return repeated
            held = transitions.check_token(item, record, token, agent_id)
            state, event = transitions.fail(
                held, failure, transitions.agent_actor(agent_id), now, self._random(), local_retries
            )
            await self._apply(conn, state, event)
            return state

    async def release(
        self, token: ClaimToken, agent_id: UUID, now: datetime, reason: str = ""
    ) -> WorkItem:
        async with self._tx("release") as conn:
            item, record = await self._held(conn, token, agent_id)
            held = transitions.check_token(item, record, token, agent_id)
            after, event = transitions.release(held, agent_id, now, reason)
            await self._apply(conn, after, event)
            return after

    # --- admin ------------------------------------------------------------------------------

    async def cancel(
        self, work_id: UUID, actor: str, now: datetime, reason: str = ""
    ) -> ExecutionRecord:
        async with self._tx("cancel") as conn:
            item = await self._load_item(conn, work_id)
            if item is None:
                record = await self._load_record(conn, work_id)
                if record is None:
                    raise UnknownWork(work_id)
                transitions.cancel(record.item, actor, now)  # raises InvalidTransition
                raise AssertionError("unreachable")  # pragma: no cover
            done, event = transitions.cancel(item, actor, now, reason)
            await self._apply(conn, done, event)
            return done

    async def approve(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        async with self._tx("approve") as conn:
            item = await self._load_item(conn, work_id)
            if item is None:
                record = await self._load_record(conn, work_id)
                if record is None:
                    raise UnknownWork(work_id)
                item = record.item
            after, event = transitions.approve(item, actor, now)
            await self._apply(conn, after, event)
            return after

    async def requeue(self, work_id: UUID, actor: str, now: datetime) -> WorkItem:
        async with self._tx("requeue") as conn:
            record = await self._load_record(conn, work_id)
            from_log = record is not None
            if record is None:
                item = await self._load_item(conn, work_id)
                if item is None:
                    raise UnknownWork(work_id)
                record = ExecutionRecord(item, finished_at=now, finished_by=actor)
            after, event = transitions.requeue(record, actor, now)
            await self._apply(conn, after, event, from_log=from_log)
            return after

    # --- maintenance ------------------------------------------------------------------------

    async def sweep(self, now: datetime, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        _check_limit(limit)
        results: list[WorkItem | ExecutionRecord] = []
        async with self._tx("sweep") as conn:
            rows = await self._fetchall(conn, self.sql.expired, {"now": now, "limit": limit})
            for item in await self._items(conn, rows):
                state, event = transitions.expire(item, now, self._random())
                await self._apply(conn, state, event)
                results.append(state)
        return results

    async def prune(self, before: datetime, limit: int = 10_000) -> int:
        _check_limit(limit)
        async with self._conn("prune") as conn:
            row = await self._fetchone(conn, self.sql.prune, {"before": before, "limit": limit})
            return 0 if row is None else int(row[0])

    async def events(self, work_id: UUID) -> list[Event]:
        async with self._conn("events") as conn:
            rows = await self._fetchall(conn, self.sql.events, (work_id,))
        return [codec.event_from(row) for row in rows]

    # --- completion callbacks -------------------------------------------------------------

    async def callbacks_due(
        self, now: datetime, limit: int = 100, lease: timedelta | None = None
    ) -> list[ExecutionRecord]:
        _check_limit(limit)
        callbacks.check_lease(lease)
        until = None if lease is None else callbacks.leased_until(now, lease)
        async with self._conn("callbacks_due") as conn:
            rows = await self._fetchall(
                conn, self.sql.callbacks_due, {"now": now, "limit": limit, "until": until}
            )
            return await self._records(conn, rows)

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
        async with self._tx("record_callback") as conn:
            row = await self._fetchone(conn, self.sql.select_callback_for_update, (work_id,))
            record = None if row is None else (await self._records(conn, [row]))[0]
            queued = None if record is not None else await self._load_item(conn, work_id, False)
            pending = row is not None and row[-1] is not None
            record = callbacks.check_callback(work_id, queued, record, pending, finished_at)
            following = callbacks.next_attempt(delivered, retry_at)
            await conn.execute(self.sql.set_callback_due, (following, work_id))
            event = callbacks.callback_event(record, now, detail)
            seq = await self._fetchone(
                conn, self.sql.insert_event_returning, codec.event_params(event)
            )
            assert seq is not None
            return attrs.evolve(event, seq=seq[0])

    async def stats(self) -> Stats:
        async with self._conn("stats") as conn:
            rows = await self._fetchall(conn, self.sql.stats)
        counts: dict[tuple[str, WorkStatus], int] = {}
        for work_type, status, n in rows:
            key = (work_type, WorkStatus(status))
            counts[key] = counts.get(key, 0) + int(n)
        return Stats(counts)

    # --- AgentRegistry ------------------------------------------------------------------------

    async def register_agent(self, agent: Agent) -> Agent:
        try:
            async with self._tx("register_agent") as conn:
                await conn.execute(self.sql.insert_agent, codec.agent_params(agent))
                await self._rematerialise(conn, agent, fresh=True)
                await conn.execute(self.sql.notify, (self._channel,))
        except psycopg.errors.UniqueViolation as error:
            diag = error.diag.constraint_name or ""
            if diag.endswith("_pkey"):
                raise AgentExists(f"agent {agent.id} is already registered") from None
            raise AgentExists(f"an agent named {agent.name!r} is already registered") from None
        return agent

    async def get_agent(self, agent_id: UUID) -> Agent | None:
        async with self._conn("get_agent") as conn:
            row = await self._fetchone(conn, self.sql.select_agent, (agent_id,))
        return None if row is None else codec.agent_from(row)

    async def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        async with self._conn("list_agents") as conn:
            rows = await self._fetchall(
                conn, self.sql.list_agents, {"status": None if status is None else status.value}
            )
        return [codec.agent_from(row) for row in rows]

    async def update_agent(
        self,
        agent_id: UUID,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        status: AgentStatus | None = None,
        token_hash: str | None = None,
    ) -> Agent:
        async with self._tx("update_agent") as conn:
            agent = await self._agent(conn, agent_id, lock=True)
            updated = attrs.evolve(
                agent,
                labels=agent.labels if labels is None else labels,
                annotations=agent.annotations if annotations is None else annotations,
                status=agent.status if status is None else status,
                token_hash=agent.token_hash if token_hash is None else token_hash,
            )
            await conn.execute(
                self.sql.update_agent,
                (
                    Jsonb(updated.labels),
                    Jsonb(updated.annotations),
                    updated.status.value,
                    updated.token_hash,
                    agent_id,
                ),
            )
            if updated.labels != agent.labels:
                await self._rematerialise(conn, updated, fresh=False)
            await conn.execute(self.sql.notify, (self._channel,))
            return updated

    async def touch_agent(self, agent_id: UUID, now: datetime) -> Agent:
        async with self._conn("touch_agent") as conn:
            row = await self._fetchone(conn, self.sql.touch_agent, (now, agent_id))
        if row is None:
            raise UnknownAgent(agent_id)
        return codec.agent_from(row)

    async def agent_by_token_hash(self, token_hash: str) -> Agent | None:
        async with self._conn("agent_by_token_hash") as conn:
            row = await self._fetchone(conn, self.sql.agent_by_token_hash, (token_hash,))
        return None if row is None else codec.agent_from(row)


def _completion_params(completions: Sequence[Completion], now: datetime) -> dict[str, Any] | None:
    """The parameters of ``complete_many`` for distinct ids; None when an id repeats."""
    ids = [c.token.work_id for c in completions]
    if len(set(ids)) != len(ids):
        return None
    results = [c.result for c in completions]
    agents = [c.agent_id for c in completions]
    local_retries = [c.local_retries for c in completions]
    one_agent = agents[0] if agents.count(agents[0]) == len(agents) else None
    # An array whose entries are all the same (a worker's batch: one agent, no results, no
    # local retries) goes as one NULL that unnest pads: no per-entry array dump.
    return {
        "ids": codec.UuidArray(ids),
        "attempts": codec.Int4Array([c.token.attempt for c in completions]),
        "agents": codec.UuidArray(agents) if one_agent is None else None,
        "agent": one_agent,
        "results": results if any(r is not None for r in results) else None,
        "local_retries": codec.Int4Array(local_retries) if any(local_retries) else None,
        "now": now,
    }
