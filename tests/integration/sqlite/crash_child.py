"""Child process of the crash test: claim and complete work until killed.

Usage: ``python crash_child.py DB_PATH AGENT_ID...``. One task per agent claims
batches of ``crash`` items and completes them; after each completion returns
(committed) it prints ``ACK <work id>`` and flushes, so every line the parent reads
is an acknowledged completion. Prints ``DONE`` when nothing is left to claim.
"""

from __future__ import annotations

import sys
from uuid import UUID

import anyio

from workqueue_core.domain.models import Completion, ExecutionRecord
from workqueue_core.testing import EPOCH
from workqueue_sqlite import SqliteStore


async def main(path: str, agent_ids: list[UUID]) -> None:
    async with await SqliteStore.open(path) as store:

        async def claimer(agent_id: UUID, single: bool) -> None:
            while True:
                got = await store.claim_next(agent_id, EPOCH, ["crash"], 3)
                if not got:
                    return
                if single:
                    for item in got:
                        record = await store.complete(item.token, agent_id, EPOCH, "ok")
                        print(f"ACK {record.id}", flush=True)
                    continue
                done = await store.complete_many(
                    [Completion(i.token, agent_id, "ok") for i in got], EPOCH
                )
                for outcome in done:
                    assert isinstance(outcome, ExecutionRecord), outcome
                    print(f"ACK {outcome.id}", flush=True)

        async with anyio.create_task_group() as tg:
            for n, agent_id in enumerate(agent_ids):
                tg.start_soon(claimer, agent_id, n % 2 == 0)
    print("DONE", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], [UUID(a) for a in sys.argv[2:]])
