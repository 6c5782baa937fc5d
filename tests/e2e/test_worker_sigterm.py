"""A real worker process (examples/worker.py) on PostgreSQL gets SIGTERM mid-load.

Two slow items (60 s each, claimed first by priority) and many quick ones are
queued. Once some quick ones are done the process gets SIGTERM with a 1 s grace
period: it must exit cleanly long before the slow handlers could finish, leaving
nothing claimed (the slow attempts are released, uncharged, as "Shutdown"). Another
worker then finishes the rest, and every item ends in the log exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import anyio
import anyio.to_thread
import attrs
import httpx
import pytest

from pg_support import PG_DSN, temporary_schema
from workqueue_core.domain.models import (
    Cursor,
    LogQuery,
    SubmitRequest,
    Targeting,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.executor.worker import SHUTDOWN, Job, Worker, WorkerOptions
from workqueue_core.service.broker import BrokerService
from workqueue_postgres import PostgresStore

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
GRACE = 1.0
EXIT_BOUND = 20.0  # a hang guard far below the slow handlers' 60 s, not a timing assertion
QUICK = 30
SLOW = 2


class SystemClock:
    """The worker process runs on the wall clock, so the test does too."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def url_with_schema(schema: str) -> str:
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"


def process_env(schema: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "src" / "adapters"), str(ROOT / "src" / "entrypoints")]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["WORKQUEUE_DATABASE_URL"] = url_with_schema(schema)
    return env


async def submit(broker: BrokerService, image: str, seconds: float, priority: int) -> UUID:
    submitted = await broker.submit(
        SubmitRequest(
            work_type="thumbnail",
            spec=f'{{"image": "{image}", "seconds": {seconds}}}',
            targeting=Targeting.labels("role=thumbnails"),
            retry_policy=RetryPolicy(max_retries=3, base_delay=timedelta(0)),
            claim_timeout=timedelta(seconds=120),
            priority=priority,
        )
    )
    return submitted.item.id


async def succeeded(store: PostgresStore) -> int:
    stats = await store.stats()
    return stats.counts.get(("thumbnail", WorkStatus.SUCCEEDED), 0)


async def whole_log(broker: BrokerService) -> list[UUID]:
    ids: list[UUID] = []
    query = LogQuery(work_type="thumbnail", limit=100)
    while True:
        page = await broker.list_log(query)
        ids.extend(r.id for r in page)
        if len(page) < query.limit:
            return ids
        query = attrs.evolve(query, after=Cursor(page[-1].finished_at, page[-1].id))


async def test_sigterm_mid_load_exits_within_grace_and_loses_nothing(tmp_path: Path) -> None:
    output = tmp_path / "worker.log"
    async with temporary_schema() as schema:
        store = await PostgresStore.open(PG_DSN, schema=schema)
        try:
            broker = BrokerService(
                store,
                SystemClock(),
                uuid.uuid4,
                lambda: uuid.uuid4().hex,
                notifier=store.notifier,
                poll_interval=0.2,
            )
            slow = [await submit(broker, f"huge-{n}.png", 60, priority=10) for n in range(SLOW)]
            quick = [await submit(broker, f"img-{n}.png", 0.2, priority=0) for n in range(QUICK)]

            with output.open("w") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "examples" / "worker.py"),
                        "--name",
                        "sigterm-victim",
                        "--concurrency",
                        "4",
                        "--grace",
                        str(GRACE),
                    ],
                    cwd=ROOT,
                    env=process_env(schema),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                with anyio.fail_after(60):
                    while await succeeded(store) < 6:
                        assert process.poll() is None, output.read_text()
                        await anyio.sleep(0.05)
                process.send_signal(signal.SIGTERM)
                code = await anyio.to_thread.run_sync(
                    lambda: process.wait(timeout=GRACE + EXIT_BOUND)
                )
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            text = output.read_text()
            assert code == 0, text
            assert "stopping gracefully" in text, text
            assert f"{SLOW} released" in text, text

            # nothing is left claimed by the process that left
            assert await broker.list_work(WorkQuery(status=WorkStatus.CLAIMED)) == []
            for work_id in slow:
                item = await store.get(work_id)
                assert item is not None
                assert item.status is WorkStatus.PENDING
                assert (item.attempt, item.executions, item.last_error) == (1, 0, None)
                events = await store.events(work_id)
                assert events[-1].detail.startswith(f"released: {SHUTDOWN}")

            finisher = Worker(
                broker,
                name="finisher",
                labels={"role": "thumbnails"},
                options=WorkerOptions(concurrency=8, batch=8, claim_wait=0.2),
            )

            @finisher.handler("thumbnail")
            async def finish(job: Job) -> str:
                return f"finished {job.id} on attempt {job.attempt}"

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    await tg.start(finisher.run)
                    while await succeeded(store) < SLOW + QUICK:
                        await anyio.sleep(0.05)
                    finisher.stop()

            logged = Counter(await whole_log(broker))
            assert set(logged) == set(slow) | set(quick)
            assert set(logged.values()) == {1}
            assert await broker.list_work(WorkQuery(work_type="thumbnail")) == []
            for work_id in slow:
                record = await store.get_record(work_id)
                assert record is not None
                assert record.status is WorkStatus.SUCCEEDED
                assert record.result == f"finished {work_id} on attempt 2"
                terminal = [e for e in await broker.events(work_id) if e.to_status.is_terminal]
                assert len(terminal) == 1
        finally:
            await store.close()


def wait_or_kill(process: subprocess.Popen[bytes]) -> None:
    """Wait for the process to exit; kill it if it does not within the bound."""
    try:
        process.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_the_examples_run_with_one_command_each(tmp_path: Path) -> None:
    """``python examples/web_service.py`` and ``python examples/worker.py`` on their default
    store (a SQLite file in the working directory): POSTed work comes back done."""
    env = process_env("unused")
    del env["WORKQUEUE_DATABASE_URL"]
    port = free_port()
    env["PORT"] = str(port)
    logs = tmp_path / "web.log", tmp_path / "worker.log"
    with logs[0].open("w") as web_log, logs[1].open("w") as worker_log:
        web = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "web_service.py")],
            cwd=tmp_path,
            env=env,
            stdout=web_log,
            stderr=subprocess.STDOUT,
        )
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "worker.py"), "--name", "example-worker"],
            cwd=tmp_path,
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            with anyio.fail_after(60):
                while True:
                    assert web.poll() is None, logs[0].read_text()
                    try:
                        await http.get("/thumbnails/00000000-0000-0000-0000-000000000000")
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.1)
                ids = []
                for image in ("cat.png", "dog.png"):
                    answer = await http.post("/thumbnails", json={"image": image, "seconds": 0})
                    assert answer.status_code == 202, answer.text
                    ids.append(answer.json()["id"])
                refused = await http.post("/thumbnails", json={"image": 5})
                assert refused.status_code == 400
                done: list[dict[str, object]] = []
                for work_id in ids:
                    while True:
                        state = (await http.get(f"/thumbnails/{work_id}")).json()
                        if state["status"] == "SUCCEEDED":
                            done.append(state)
                            break
                        assert state["status"] in ("PENDING", "CLAIMED"), state
                        await anyio.sleep(0.1)
        assert [json.loads(str(d["result"]))["thumbnail"] for d in done] == [
            "cat.png.thumb.png",
            "dog.png.thumb.png",
        ]
        assert (tmp_path / "workqueue-example.db").exists()
    finally:
        for process in (worker, web):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (worker, web):
            await anyio.to_thread.run_sync(wait_or_kill, process)
    assert worker.returncode == 0, logs[1].read_text()
    assert "stopped: 2 succeeded" in logs[1].read_text()
