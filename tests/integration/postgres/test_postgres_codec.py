"""The codec's unvalidated fast path builds exactly what the models' constructors build."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import attrs
import pytest
from psycopg.errors import NumericValueOutOfRange

from pg_support import connect
from workqueue_core.domain import transitions
from workqueue_core.domain.models import (
    Agent,
    ExecutionRecord,
    Failure,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_postgres import codec, sql


def test_a_decoded_row_equals_the_item_and_record_it_came_from() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    targeting = Targeting(agent_ids=frozenset({uuid4()}))
    item = WorkItem(
        id=uuid4(),
        work_type="build",
        spec="echo ü",
        targeting=targeting,
        created_at=now,
        claim_timeout=timedelta(seconds=90, microseconds=7),
        priority=2,
        not_before=now + timedelta(seconds=5),
        idempotency_key="k",
        correlation_id="c",
        labels={"team": "x"},
        callback_url="https://example.invalid/hook",
        status=WorkStatus.FAILED,
        attempt=2,
        executions=2,
        local_retries=0,
        claimed_by=uuid4(),
        claimed_at=now,
        last_error=Failure.retryable("boom", "it broke"),
    )
    record = ExecutionRecord(item, finished_at=now, finished_by="agent:x", result="r")
    row = (*codec.record_params(record, 7), None)
    row = tuple(v.obj if hasattr(v, "obj") else v for v in row)  # Jsonb wrappers
    decoded = codec.record_from(row, {7: targeting})
    assert decoded == record
    assert decoded.item == item and hash(decoded.item.token) == hash(item.token)
    assert attrs.evolve(decoded.item, priority=3).priority == 3


def test_a_claimed_row_decodes_to_the_item_the_claim_made() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, 654321, tzinfo=UTC)
    agent_id = uuid4()
    targeting = Targeting(agent_ids=frozenset({agent_id}))
    pending = WorkItem(
        id=uuid4(),
        work_type="build",
        spec="x",
        targeting=targeting,
        created_at=now - timedelta(minutes=1),
        claim_timeout=timedelta(seconds=90, microseconds=7),
        priority=-1,
        correlation_id="c",
        labels={"team": "x"},
        attempt=2,  # one claim swept without charge: attempt and executions differ
        executions=1,
        last_error=Failure.retryable("boom", "it broke"),
    )
    agent = Agent(id=agent_id, name="a", registered_at=now)
    claimed, _ = transitions.claim(pending, agent, now)
    full = dict(
        zip(
            sql.ITEM_COLUMNS,
            (v.obj if hasattr(v, "obj") else v for v in codec.item_params(claimed, 7)),
            strict=True,
        )
    )
    row = tuple(full[c] for c in sql.CLAIMED_COLUMNS)
    decoded = codec.claimed_from(row, {7: targeting}, agent_id, now)
    assert decoded == claimed
    assert decoded.lease_expires_at == now + timedelta(seconds=90, microseconds=7)
    assert (decoded.attempt, decoded.executions, decoded.last_error) == (3, 2, pending.last_error)


@pytest.mark.anyio
async def test_batch_arrays_reach_the_server_as_the_lists_they_replace() -> None:
    """``UuidArray`` / ``Int4Array`` write the binary arrays themselves: the server reads
    back the same elements (and an empty array) as from psycopg's own list dump, and a
    value out of ``integer`` range is refused as the server refuses the cast."""
    ids = [uuid4() for _ in range(5)]
    numbers = [0, 1, -2, 2**31 - 1, -(2**31)]
    async with await connect() as conn:
        conn.adapters.register_dumper(codec.UuidArray, codec.UuidArrayDumper)
        conn.adapters.register_dumper(codec.Int4Array, codec.Int4ArrayDumper)
        cur = conn.cursor(binary=True)
        for uuids, ints in ((ids, numbers), ([], [])):
            await cur.execute(
                "SELECT %(u)b::uuid[], %(i)b::int[], %(u)b::uuid[] = %(lu)s::uuid[],"
                " cardinality(%(i)b::int[])",
                {
                    "u": codec.UuidArray(uuids),
                    "i": codec.Int4Array(ints),
                    "lu": [str(u) for u in uuids],
                },
            )
            assert await cur.fetchone() == (uuids, ints, True, len(ints))
        await cur.execute(
            "SELECT * FROM unnest(%(u)b::uuid[], %(i)b::int[])",
            {"u": codec.UuidArray(ids), "i": codec.Int4Array(numbers)},
        )
        assert await cur.fetchall() == list(zip(ids, numbers, strict=True))
        with pytest.raises(NumericValueOutOfRange):
            await cur.execute("SELECT %(i)b::int[]", {"i": codec.Int4Array([1, 2**31])})
