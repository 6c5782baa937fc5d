"""``workqueue agent`` with the local runner: ``true`` scripts through a real broker (SQLite).

``python -m benchmarks.local_agent [--items 1000] [--concurrency 8] [--quick] [--output F]``

A broker process (``python -m workqueue_cli broker``, SQLite in a temporary
directory) and one agent process (``python -m workqueue_cli agent``, concurrency 8)
run on this machine. Measured:

1. *burst*: ``--items`` scripts ``true`` are submitted at once (``POST /work/batch``,
   with the agent already waiting); items/s is items over the time from the first
   submit to the last log record's ``finished_at``; submit→finished is each record's
   ``finished_at - created_at`` (both stamped by the broker), p50 and p95;
2. *single*: ``--singles`` scripts submitted one at a time, each after the previous
   finished: the latency of one item through an idle agent (p50).

The anchor, run in the same run on the same machine: the *spawn floor*, the same
number of ``/bin/sh -e script`` processes (a temporary directory, the script written
into it, the process started in its own session, output read, the directory
removed) 8 at a time from one asyncio loop, with no broker. agent / floor is the
share of the machine's process-spawning rate the agent reaches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks._env import machine, versions
from benchmarks._stats import percentile, rate
from workqueue_core.domain.models import (
    Cursor,
    ExecutionRecord,
    LogQuery,
    SubmitRequest,
    Targeting,
    WorkStatus,
)
from workqueue_http.client import BrokerClient

TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 600.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the broker exited:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the broker was not ready within {START_TIMEOUT}s")


@contextmanager
def _process(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[Any]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a process itself and of its reaped children (its scripts)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / TICKS
    children = (int(fields[13]) + int(fields[14])) / TICKS
    return own, children


async def _drain(client: BrokerClient, ids: list[uuid.UUID]) -> list[ExecutionRecord]:
    """Wait until every id has its log record (one cheap ``stats`` call per poll, so the
    waiting adds little to the broker's load); then the records, in the ids' order."""
    wanted = set(ids)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        stats = await client.stats()
        queued = sum(
            stats.total(status)
            for status in (WorkStatus.HELD, WorkStatus.PENDING, WorkStatus.CLAIMED)
        )
        if queued == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{queued} items still queued after {DRAIN_TIMEOUT}s")
        await asyncio.sleep(0.05)
    found: dict[uuid.UUID, ExecutionRecord] = {}
    after: Cursor | None = None
    while True:
        page = await client.list_log(LogQuery(limit=1000, after=after))
        found.update((r.id, r) for r in page if r.id in wanted)
        if len(page) < 1000:
            break
        after = Cursor(page[-1].finished_at, page[-1].id)
    missing = wanted - found.keys()
    if missing:
        raise RuntimeError(f"{len(missing)} items are neither queued nor logged")
    return [found[i] for i in ids]


def _request(agent_id: uuid.UUID) -> SubmitRequest:
    return SubmitRequest(work_type="shell", spec="true\n", targeting=Targeting.agents(agent_id))


async def _agent_run(
    url: str,
    admin_token: str,
    broker_pid: int,
    workdir: Path,
    env: dict[str, str],
    items: int,
    singles: int,
    concurrency: int,
) -> dict[str, Any]:
    async with BrokerClient(url, admin_token, timeout=60) as admin:
        issued = await admin.register_agent(f"bench-{uuid.uuid4().hex[:8]}")
        agent_env = {
            **env,
            "WORKQUEUE_URL": url,
            "WORKQUEUE_AGENT_TOKEN": issued.token,
            "WORKQUEUE_CONCURRENCY": str(concurrency),
            "WORKQUEUE_ALLOW_ROOT": "true",
            "WORKQUEUE_LOG_LEVEL": "warning",
        }
        command = [sys.executable, "-m", "workqueue_cli", "agent"]
        with _process(command, workdir, agent_env, workdir / "agent.log") as agent:
            # warm-up: the agent is up and claiming before anything is timed
            warm = await admin.submit(_request(issued.agent.id))
            await _drain(admin, [warm.item.id])
            broker_before, _ = _cpu(broker_pid)
            agent_before, scripts_before = _cpu(agent.pid)
            started = time.perf_counter()
            results = await admin.submit_many([_request(issued.agent.id) for _ in range(items)])
            ids = [r.item.id for r in results if not isinstance(r, Exception)]
            records = await _drain(admin, ids)
            wall = time.perf_counter() - started
            broker_after, _ = _cpu(broker_pid)
            agent_after, scripts_after = _cpu(agent.pid)
            single_latencies = []
            for _ in range(singles):
                one = await admin.submit(_request(issued.agent.id))
                [record] = await _drain(admin, [one.item.id])
                single_latencies.append(
                    (record.finished_at - record.item.created_at).total_seconds()
                )
            if agent.poll() is not None:
                raise RuntimeError((workdir / "agent.log").read_text(errors="replace"))
    failed = [r for r in records if r.status is not WorkStatus.SUCCEEDED]
    if failed or len(records) != items:
        raise RuntimeError(f"{len(failed)} items failed: {failed[:1]}")
    first = min(r.item.created_at for r in records)
    last = max(r.finished_at for r in records)
    latencies = [(r.finished_at - r.item.created_at).total_seconds() for r in records]
    return {
        "items": items,
        "items_per_second": rate(items, (last - first).total_seconds()),
        "wall_seconds": wall,
        "p50_submit_to_finished_s": percentile(latencies, 50),
        "p95_submit_to_finished_s": percentile(latencies, 95),
        "single_p50_s": percentile(single_latencies, 50),
        "cpu_ms_per_item": {
            "broker": (broker_after - broker_before) * 1000 / items,
            "agent": (agent_after - agent_before) * 1000 / items,
            "scripts": (scripts_after - scripts_before) * 1000 / items,
        },
    }


async def _spawn_floor(items: int, concurrency: int) -> float:
    """Scripts per second spawned the way the local runner does, without a broker."""
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            root = Path(tempfile.mkdtemp(prefix="wq-floor-"))
            try:
                script = root / "script"
                (root / "work").mkdir()
                script.write_text("true\n")
                process = await asyncio.create_subprocess_exec(
                    "/bin/sh",
                    "-e",
                    str(script),
                    cwd=root / "work",
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                await process.communicate()
                if process.returncode != 0:
                    raise RuntimeError(f"true exited {process.returncode}")
            finally:
                shutil.rmtree(root, ignore_errors=True)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(items)))
    return rate(items, time.perf_counter() - started)


def run(items: int, singles: int, concurrency: int) -> dict[str, Any]:
    """Start a broker, measure the agent and the spawn floor; the report."""
    workdir = Path(tempfile.mkdtemp(prefix="wq-bench-agent-"))
    try:
        port = _free_port()
        admin_token = "wqadmin_bench_" + secrets.token_urlsafe(24)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKQUEUE_")}
        broker_env = {
            **env,
            "WORKQUEUE_PORT": str(port),
            "WORKQUEUE_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
            "WORKQUEUE_ADMIN_TOKENS": admin_token,
            "WORKQUEUE_LOG_LEVEL": "warning",
            "WORKQUEUE_LOG_FORMAT": "json",
        }
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "workqueue_cli", "broker"]
        with _process(command, workdir, broker_env, workdir / "broker.log") as broker:
            _wait_ready(url, broker, workdir / "broker.log")
            agent = asyncio.run(
                _agent_run(url, admin_token, broker.pid, workdir, env, items, singles, concurrency)
            )
        floor = asyncio.run(_spawn_floor(items, concurrency))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "machine": machine(),
        "versions": versions(),
        "concurrency": concurrency,
        "agent": agent,
        "spawn_floor_per_second": floor,
        "agent_over_floor": agent["items_per_second"] / floor if floor else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="workqueue agent: true scripts via a broker")
    parser.add_argument("--items", type=int, help="scripts in the burst (1000; quick 200)")
    parser.add_argument("--singles", type=int, help="one-at-a-time scripts (20; quick 5)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--output", type=Path, help="write the report as JSON here")
    args = parser.parse_args()
    items = args.items or (200 if args.quick else 1000)
    singles = args.singles if args.singles is not None else (5 if args.quick else 20)
    report = run(items, singles, args.concurrency)
    agent = report["agent"]
    print(
        "| run | items | concurrency | items/s | p50 submit→finished | p95 | single p50 "
        "| spawn floor/s | agent/floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| local agent (SQLite) | {items} | {args.concurrency} | "
        f"{agent['items_per_second']:,.0f} | {agent['p50_submit_to_finished_s']:.2f} s | "
        f"{agent['p95_submit_to_finished_s']:.2f} s | {agent['single_p50_s'] * 1000:.0f} ms | "
        f"{report['spawn_floor_per_second']:,.0f} | {report['agent_over_floor']:.2f} |"
    )
    cpu = agent["cpu_ms_per_item"]
    print(
        f"CPU per item: broker {cpu['broker']:.1f} ms, agent {cpu['agent']:.1f} ms, "
        f"scripts {cpu['scripts']:.1f} ms; load average {report['machine']['load_average']}"
    )
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
